//! Secrets read from a config file live once, in locked memory (issue 20, finding 8).
//!
//! `wg-pkcs11 up CONF` with a software `PrivateKey` and a `PresharedKey` (the real daemon, in a
//! namespace, against wireguard-go), one handshake, a ping and a few `wg show` (whose reply
//! carries the preshared key, as `wg` expects); then the test reads every
//! readable mapping of the daemon (/proc/PID/maps, /proc/PID/mem) and counts the preshared key
//! and the private key, as 32 binary bytes and as their base64 text (and the preshared key as
//! the hex of a UAPI reply). Each may be there exactly once in binary, in a locked page (the
//! `secret_mem` slot: /proc/PID/smaps says `Locked`), and never as text: the file's contents,
//! its lines and the decoded values are wiped after parsing, a `get` reply once sent.
//! The daemon is started without `wg show`, so that the scan sees what the config left behind
//! before the `wg show` calls are added.

use std::io::{Read, Seek, SeekFrom};
use std::time::Duration;

use base64::Engine;
use e2e_tests::topology::*;
use e2e_tests::traffic::ping_until_reply;
use e2e_tests::wait::poll_until;
use e2e_tests::wireguard::*;
use e2e_tests::*;

/// One mapping of the daemon: its address range and its /proc/PID/maps line.
struct Region {
    start: u64,
    end: u64,
    line: String,
}

fn readable_regions(pid: u32) -> Vec<Region> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some(Region {
                start: u64::from_str_radix(a, 16).ok()?,
                end: u64::from_str_radix(b, 16).ok()?,
                line: line.to_string(),
            })
        })
        .collect()
}

/// Where `needle` occurs in the daemon's readable memory: (address, maps line) per occurrence.
fn find(pid: u32, needle: &[u8]) -> Vec<(u64, String)> {
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut found = Vec::new();
    let overlap = needle.len() - 1;
    for region in readable_regions(pid) {
        let mut at = region.start;
        let mut carry: Vec<u8> = Vec::new();
        while at < region.end {
            let len = ((region.end - at) as usize).min(1 << 20);
            let mut chunk = vec![0u8; len];
            if mem.seek(SeekFrom::Start(at)).is_err() {
                break;
            }
            let n = match mem.read(&mut chunk) {
                Ok(n) if n > 0 => n,
                _ => break,
            };
            chunk.truncate(n);
            let base = at - carry.len() as u64;
            let mut window = std::mem::take(&mut carry);
            window.extend_from_slice(&chunk);
            for (i, w) in window.windows(needle.len()).enumerate() {
                if w == needle {
                    found.push((base + i as u64, region.line.clone()));
                }
            }
            carry = window[window.len().saturating_sub(overlap)..].to_vec();
            at += n as u64;
        }
    }
    found
}

/// Whether the mapping of this /proc/PID/maps line has locked pages (smaps `Locked:`).
fn region_locked(pid: u32, maps_line: &str) -> bool {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut in_region = false;
    for l in smaps.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if !first.ends_with(':') {
            in_region = l.trim_end() == maps_line.trim_end();
        } else if in_region && first == "Locked:" {
            return l.split_whitespace().nth(1) != Some("0");
        }
    }
    false
}

fn key_bytes(text: &str) -> [u8; 32] {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn config_secrets_live_once_in_locked_memory_after_a_handshake() {
    let net = NamespacePair::new("mem");
    let (device_private, device_public) = wg_genkey();
    let (server_private, server_public) = wg_genkey();
    let (psk, _) = wg_genkey();

    let server = UserspacePeer::start(
        UserspaceWireGuard::WireguardGo,
        &net.b,
        &unique_interface_name("srv"),
        net.dir(),
    );
    server.configure(
        &server_private,
        LISTEN_PORT_B,
        &[PeerSpec::new(&device_public, &[&format!("{A_TUNNEL}/32")])],
    );
    let psk_file = net.dir().join("server.psk");
    std::fs::write(&psk_file, format!("{psk}\n")).unwrap();
    server.set(&[
        "peer".into(),
        device_public.clone(),
        "preshared-key".into(),
        psk_file.display().to_string(),
    ]);
    server.address_and_up(&[&format!("{B_TUNNEL}/24")]);

    let ifname = unique_interface_name("mem");
    let conf = net.dir().join(format!("{ifname}.conf"));
    std::fs::write(
        &conf,
        format!(
            "[Interface]\nPrivateKey = {device_private}\nListenPort = {LISTEN_PORT_A}\n\
             Address = {A_TUNNEL}/24\n\n[Peer]\nPublicKey = {server_public}\n\
             PresharedKey = {psk}\nAllowedIPs = {B_TUNNEL}/32\nEndpoint = {}\n",
            net.b_endpoint()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut command = net.a.command(wg_pkcs11_binary());
    command.arg("up").arg("--foreground").arg(&conf);
    command.env("RUST_LOG", "info");
    let mut daemon = Background::spawn(&format!("wg-pkcs11-{ifname}"), command, net.dir());
    let socket = uapi_socket(&ifname);
    let up = poll_until(Duration::from_secs(20), || {
        daemon.assert_running();
        socket.exists()
    });
    assert!(up, "the daemon did not come up:\n{}", daemon.log());
    ping_until_reply(&net.a, B_TUNNEL, Duration::from_secs(30));
    // `wg show` asks the daemon for everything, the preshared key included (`dump` prints it):
    // the reply and what it was made from must not stay behind either.
    for _ in 0..3 {
        net.a.run(["wg", "show", &ifname]);
        net.a.run(["wg", "show", &ifname, "dump"]);
    }

    let pid = daemon.pid();
    let psk_hex: String = key_bytes(&psk).iter().map(|b| format!("{b:02x}")).collect();
    let needles: [(&str, Vec<u8>); 5] = [
        ("preshared key (binary)", key_bytes(&psk).to_vec()),
        ("preshared key (base64)", psk.clone().into_bytes()),
        (
            "preshared key (hex, as UAPI sends it)",
            psk_hex.into_bytes(),
        ),
        ("private key (binary)", key_bytes(&device_private).to_vec()),
        ("private key (base64)", device_private.clone().into_bytes()),
    ];
    let mut report = String::new();
    let mut counts = Vec::new();
    for (name, needle) in &needles {
        let hits = find(pid, needle);
        report.push_str(&format!("{name}: {} copies\n", hits.len()));
        for (addr, line) in &hits {
            let locked = region_locked(pid, line);
            report.push_str(&format!("  {addr:#x} locked={locked} in {line}\n"));
        }
        counts.push(hits);
    }
    eprintln!("{report}");
    let found: Vec<usize> = counts.iter().map(Vec::len).collect();
    assert_eq!(
        found,
        [1, 0, 0, 1, 0],
        "copies of the config's secrets in the daemon's memory:\n{report}"
    );
    for hits in [&counts[0], &counts[3]] {
        let (_, line) = &hits[0];
        assert!(
            region_locked(pid, line),
            "the one copy is not in locked memory:\n{report}"
        );
    }
}
