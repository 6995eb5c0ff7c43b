//! Traffic through a tunnel: ping and iperf3.

use std::time::{Duration, Instant};

use crate::netns::Netns;
use crate::process::Background;
use crate::wait::poll_until;

/// Sends `count` pings from `ns` to `addr` (IPv4 or IPv6); true if every one was answered.
pub fn ping(ns: &Netns, addr: &str, count: u32) -> bool {
    let count = count.to_string();
    ns.output([
        "ping", "-n", "-q", "-c", &count, "-i", "0.2", "-W", "2", addr,
    ])
    .status
    .success()
}

/// Pings `addr` from `ns` once per try until a reply comes; returns how long that took. The
/// first packet into a tunnel triggers its handshake, so this measures handshake plus round trip.
/// Panics after `timeout`.
pub fn ping_until_reply(ns: &Netns, addr: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    let answered = poll_until(timeout, || {
        ns.output(["ping", "-n", "-q", "-c", "1", "-W", "1", addr])
            .status
            .success()
    });
    if !answered {
        panic!(
            "no ping reply from {addr} in namespace {} within {timeout:?}",
            ns.name()
        );
    }
    start.elapsed()
}

/// The outcome of one iperf3 TCP run.
#[derive(Clone, Debug)]
pub struct IperfResult {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Receiver-side throughput.
    pub bits_per_second: f64,
}

/// Runs a single-stream TCP iperf3 transfer of `seconds` from `client_ns` to an iperf3 server in
/// `server_ns` bound to `server_addr`.
pub fn iperf3(
    server_ns: &Netns,
    server_addr: &str,
    client_ns: &Netns,
    seconds: u32,
    log_dir: &std::path::Path,
) -> IperfResult {
    const PORT: &str = "5201";
    let mut server_cmd = server_ns.command("iperf3");
    server_cmd.args(["-s", "-1", "-B", server_addr, "-p", PORT]);
    let mut server = Background::spawn(
        &format!("iperf3-server-{}", server_ns.name()),
        server_cmd,
        log_dir,
    );
    let listening = poll_until(Duration::from_secs(10), || {
        server.assert_running();
        let out = server_ns.output(["ss", "-Hltn", "sport", "=", &format!(":{PORT}")]);
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    assert!(
        listening,
        "iperf3 server in {} never listened",
        server_ns.name()
    );

    let seconds = seconds.to_string();
    let output = client_ns.output([
        "iperf3",
        "-c",
        server_addr,
        "-p",
        PORT,
        "-t",
        &seconds,
        "-J",
        "--connect-timeout",
        "5000",
    ]);
    let text = String::from_utf8_lossy(&output.stdout);
    parse_iperf3_json(&text).unwrap_or_else(|e| {
        panic!(
            "iperf3 to {server_addr} failed: {e}\nstderr:\n{}\nserver said:\n{}",
            String::from_utf8_lossy(&output.stderr),
            server.log()
        )
    })
}

/// The figures of an iperf3 client's JSON report (`-J`), or what went wrong.
pub fn parse_iperf3_json(text: &str) -> Result<IperfResult, String> {
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("iperf3 client printed no JSON ({e}); stdout:\n{text}"))?;
    if let Some(error) = json.get("error") {
        return Err(format!("iperf3 reports: {error}"));
    }
    let end = &json["end"];
    let number = |path: &[&str]| -> Result<f64, String> {
        let mut v = end;
        for key in path {
            v = &v[*key];
        }
        v.as_f64()
            .ok_or_else(|| format!("iperf3 JSON has no end.{}:\n{text}", path.join(".")))
    };
    Ok(IperfResult {
        bytes_sent: number(&["sum_sent", "bytes"])? as u64,
        bytes_received: number(&["sum_received", "bytes"])? as u64,
        bits_per_second: number(&["sum_received", "bits_per_second"])?,
    })
}
