//! `wg-pkcs11 show` and `show --json` count what the handshake path did (issue 15, "say what
//! happens"): the real daemon (`up --foreground`, its key in a virtual SE050 taking 30 ms per
//! ECDH) in a network namespace, and the test as one of its peers, sending handshake messages
//! from raw UDP sockets with the protocol core (it holds the peer's static key). Each counter
//! must move when, and only when, its event happens: a completed handshake, a replayed
//! initiation, none stale for a burst from one source (the queue is first in, first out and the
//! load limit keeps it short; issue 20), cookie replies under load, and the chip operations
//! spent. Needs root.

mod device_support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use device_support::*;
use wg_pkcs11::cookie::CookieState;
use wg_pkcs11::key::soft::SoftKey;
use wg_pkcs11::key::StaticKey;
use wg_pkcs11::keypair::Keypair;
use wg_pkcs11::noise::handshake::{consume_response, create_initiation, InitiatorPending};
use wg_pkcs11::noise::{Identity, Timestamp, INITIATION_LEN};

const BIN: &str = env!("CARGO_BIN_EXE_wg-pkcs11");

struct Daemon {
    child: Child,
    ns_name: String,
    ifname: String,
    conf_env: std::path::PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn show(&self, json: bool) -> String {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns_name, BIN, "show"]);
        if json {
            c.arg("--json");
        }
        let out = c
            .arg(&self.ifname)
            .env("PKCS11_SE050_CONF", &self.conf_env)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "show: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The counts as `show` prints them, checked against `show --json` (read again when a
    /// count moved between the two calls).
    fn stats(&self) -> Stats {
        for _ in 0..5 {
            let (s, json) = self.stats_and_json();
            let expected = format!(
                "\"handshake_stats\":{{\"handshakes_completed\":{},\"initiations_stale\":{},\
                 \"initiations_replayed\":{},",
                s.handshakes, s.stale, s.replayed
            );
            if json.contains(&expected) && json.contains(&format!("\"chip_operations\":{}", s.chip))
            {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("show and show --json disagree: {:?}", self.stats_and_json());
    }

    fn stats_and_json(&self) -> (Stats, String) {
        let text = self.show(false);
        let line = |prefix: &str| -> String {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
                .to_string()
        };
        let num = |s: &str| -> u64 { s.trim().parse().unwrap_or_else(|_| panic!("{s}")) };
        let dropped = line("initiations dropped: ");
        let parts: Vec<&str> = dropped.split(", ").collect();
        let first = |s: &str| num(s.split_whitespace().next().unwrap());
        let ops = text
            .lines()
            .find_map(|l| {
                let l = l.trim();
                l.strip_prefix("chip operations: ")
                    .or_else(|| l.strip_prefix("key operations: "))
            })
            .unwrap_or_else(|| panic!("no operations line in:\n{text}"))
            .to_string();
        let s = Stats {
            handshakes: num(&line("handshakes completed: ")),
            stale: first(parts[0]),
            replayed: first(parts[1]),
            cookies: num(&line("cookie replies sent under load: ")),
            chip: first(&ops),
        };
        (s, self.show(true))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stats {
    handshakes: u64,
    stale: u64,
    replayed: u64,
    cookies: u64,
    chip: u64,
}

/// A fresh initiation from the test's peer, with its MACs.
fn initiation(peer: &SoftKey, device_pub: &[u8; 32]) -> ([u8; INITIATION_LEN], InitiatorPending) {
    let ss = peer.diffie_hellman(device_pub).unwrap();
    let mut msg = [0u8; INITIATION_LEN];
    let pending = create_initiation(
        &peer.public_key(),
        device_pub,
        &ss,
        0x0101_0101,
        Timestamp::now(),
        &mut msg,
    )
    .unwrap();
    CookieState::new(device_pub).add_macs(&mut msg, Instant::now());
    (msg, pending)
}

fn wait_stats(d: &Daemon, what: &str, f: impl Fn(&Stats) -> bool) -> Stats {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let s = d.stats();
        if f(&s) {
            return s;
        }
        assert!(
            Instant::now() < end,
            "{what}: the counts never moved: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn show_counts_handshakes_stale_and_replayed_initiations_cookies_and_chip_operations() {
    let ns = Netns::new("wgst");
    let dir = tempfile::tempdir().unwrap();
    let module = Path::new(BIN).parent().unwrap().join("libpkcs11_se050.so");
    assert!(module.is_file(), "{} missing", module.display());
    let conf_env = dir.path().join("se050.toml");
    std::fs::write(
        &conf_env,
        format!(
            "transport = \"virtual\"\nvirtual_state = \"{}\"\nvirtual_latency_ms = 30\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let uri = format!(
        "pkcs11:token=SE050;object=wgstats?module-path={}",
        module.display()
    );
    let out = Command::new(BIN)
        .args(["genkey", &uri])
        .env("PKCS11_SE050_CONF", &conf_env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let device_pub_b64 = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let device_pub: [u8; 32] = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&device_pub_b64)
            .unwrap()
            .try_into()
            .unwrap()
    };
    let peer = Arc::new(SoftKey::generate());
    let port = 37000 + (std::process::id() % 10000) as u16;
    let ifname = unique("wgst");
    let conf = dir.path().join(format!("{ifname}.conf"));
    std::fs::write(
        &conf,
        format!(
            "[Interface]\nPrivateKey = {uri}\nListenPort = {port}\nAddress = 10.17.0.1/24\n\n\
             [Peer]\nPublicKey = {}\nAllowedIPs = 10.17.0.2/32\n",
            b64(&peer.public_key())
        ),
    )
    .unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, BIN, "up", "--foreground"])
        .arg(&conf)
        .env("PKCS11_SE050_CONF", &conf_env)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let d = Daemon {
        child,
        ns_name: ns.name.clone(),
        ifname: ifname.clone(),
        conf_env: conf_env.clone(),
    };
    assert!(
        wait_for(20, || wg_pkcs11::uapi::socket_path(&ifname).exists()),
        "the daemon's UAPI socket never appeared"
    );
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let socket = |timeout_ms: u64| {
        let s = ns.enter(|| UdpSocket::bind("127.0.0.1:0").unwrap());
        s.set_read_timeout(Some(Duration::from_millis(timeout_ms)))
            .unwrap();
        s
    };
    // The precomputed static-static DH of the configured peer may or may not have run yet.
    let start = d.stats();
    assert_eq!(
        (start.handshakes, start.stale, start.replayed, start.cookies),
        (0, 0, 0, 0),
        "{start:?}"
    );

    // A completed handshake: our initiation answered, the session confirmed by a keepalive.
    let main = socket(5000);
    let (first, pending) = initiation(&peer, &device_pub);
    main.send_to(&first, to).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = main
        .recv_from(&mut buf)
        .expect("the daemon answers the initiation");
    let keys = consume_response(&Identity::new(peer.clone()), &pending, &[0; 32], &buf[..n])
        .expect("a valid response");
    let keypair = Keypair::new(&keys, Instant::now());
    let mut keepalive = [0u8; 32];
    let len = keypair.encrypt(&mut keepalive, 0, Instant::now()).unwrap();
    main.send_to(&keepalive[..len], to).unwrap();
    let done = wait_stats(&d, "completed handshake", |s| s.handshakes == 1);
    assert!(
        done.chip >= 1,
        "the handshake spent a chip operation: {done:?}"
    );
    assert_eq!(
        (done.stale, done.replayed, done.cookies),
        (0, 0, 0),
        "{done:?}"
    );

    // The same initiation again: replayed, no chip operation.
    std::thread::sleep(Duration::from_millis(100));
    main.send_to(&first, to).unwrap();
    let replayed = wait_stats(&d, "replayed initiation", |s| s.replayed == 1);
    assert_eq!(replayed.chip, done.chip, "a replay costs no chip operation");
    assert_eq!(
        (replayed.handshakes, replayed.stale),
        (1, 0),
        "{replayed:?}"
    );

    // Three fresh initiations from one source at once: the queue is first in, first out (a
    // newer one never replaces a queued one, issue 20), so the first is answered, and none
    // waited long enough to be stale.
    std::thread::sleep(Duration::from_millis(1100));
    let burst = socket(5000);
    let msgs: Vec<[u8; INITIATION_LEN]> =
        (0..3).map(|_| initiation(&peer, &device_pub).0).collect();
    for m in &msgs {
        burst.send_to(m, to).unwrap();
    }
    let (n, _) = burst
        .recv_from(&mut buf)
        .expect("the first of the burst is answered");
    assert_eq!((n, buf[0]), (92, 2), "a handshake response");
    let after_burst = d.stats();
    assert_eq!(
        (after_burst.stale, after_burst.replayed),
        (0, 1),
        "{after_burst:?}"
    );

    // Under load: many sources at once; the later ones get cookie replies, no chip operation.
    std::thread::sleep(Duration::from_millis(1100));
    let flood: Vec<UdpSocket> = (0..12).map(|_| socket(100)).collect();
    let msgs: Vec<[u8; INITIATION_LEN]> = (0..flood.len() * 3)
        .map(|_| initiation(&peer, &device_pub).0)
        .collect();
    for (i, m) in msgs.iter().enumerate() {
        flood[i % flood.len()].send_to(m, to).unwrap();
    }
    let cookies = wait_stats(&d, "cookie replies under load", |s| s.cookies >= 1);
    let mut got_cookie = false;
    for s in &flood {
        let mut b = [0u8; 256];
        while let Ok((n, _)) = s.recv_from(&mut b) {
            got_cookie |= n == 64 && b[0] == 3;
        }
    }
    assert!(
        got_cookie,
        "a flood source received a cookie reply: {cookies:?}"
    );
    eprintln!("counts: start {start:?}, after the flood {cookies:?}");
    drop(d);
}
