//! A handshake storm (issue 15): N boringtun peers, each on its own source address, all initiate
//! at once against a device whose key is in a virtual SE050 taking 300 ms per ECDH (the real
//! libpkcs11_se050.so, as `wg-pkcs11 up` uses it). Before the handshake queue dropped stale and
//! superseded initiations, half of 40 such peers never got a session: the daemon answered
//! initiations their senders had already replaced. Every peer must get a session, on both sides.
//!
//! Asserts protocol outcomes under generous deadlines, not speed; it prints the figures the
//! benchmark (`bench/run storm`) records. STORM_PEERS and STORM_LATENCY_MS change the size and
//! the chip's latency. Needs root and the module built (`cargo build -p pkcs11-se050`).

mod device_support;
mod virtual_se050_module;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use device_support::*;
use mock_instant::MockClock;
use virtual_se050_module::virtual_se050_module;
use wg_pkcs11::device::{DeviceConfig, DropReason, PeerConfig};
use wg_pkcs11::key::token::{genkey, TokenKey};
use wg_pkcs11::key::StaticKey;
use wg_pkcs11::uri::Pkcs11Uri;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The veth interface that carries `addr` in `ns`.
fn device_of(ns: &Netns, addr: &str) -> String {
    let out = ns.ip(&["-o", "addr", "show"]);
    let line = out
        .lines()
        .find(|l| l.contains(&format!(" {addr}/")))
        .unwrap_or_else(|| panic!("no interface with {addr}: {out}"));
    let dev = line.split_whitespace().nth(1).unwrap();
    dev.split('@').next().unwrap().to_string()
}

/// What the peers' side saw.
struct StormResult {
    /// When each peer had its session (from the start of the storm).
    established: Vec<Option<Duration>>,
    initiations_sent: u64,
    cookie_replies_received: u64,
}

/// Drive every `Tunn` from one thread (boringtun's clock here is mock_instant's, per thread:
/// advanced with the real time) until all have a session or `deadline` passes.
fn run_storm(
    mut peers: Vec<(Tunn, UdpSocket)>,
    device: SocketAddr,
    deadline: Duration,
) -> StormResult {
    let start = Instant::now();
    let mut last = start;
    let mut buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    let mut result = StormResult {
        established: vec![None; peers.len()],
        initiations_sent: 0,
        cookie_replies_received: 0,
    };
    let send = |sock: &UdpSocket, pkt: &[u8], sent: &mut u64| {
        if pkt.first() == Some(&1) {
            *sent += 1;
        }
        sock.send_to(pkt, device).unwrap();
    };
    for (tunn, sock) in peers.iter_mut() {
        if let TunnResult::WriteToNetwork(p) = tunn.format_handshake_initiation(&mut out, false) {
            send(sock, p, &mut result.initiations_sent);
        }
    }
    while start.elapsed() < deadline {
        let now = Instant::now();
        MockClock::advance(now - last);
        last = now;
        for (i, (tunn, sock)) in peers.iter_mut().enumerate() {
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                if buf[0] == 3 {
                    result.cookie_replies_received += 1;
                }
                let mut r = tunn.decapsulate(Some(from.ip()), &buf[..n], &mut out);
                while let TunnResult::WriteToNetwork(p) = r {
                    send(sock, p, &mut result.initiations_sent);
                    r = tunn.decapsulate(None, &[], &mut out);
                }
            }
            if let TunnResult::WriteToNetwork(p) = tunn.update_timers(&mut out) {
                send(sock, p, &mut result.initiations_sent);
            }
            if result.established[i].is_none() && tunn.time_since_last_handshake().is_some() {
                result.established[i] = Some(start.elapsed());
            }
        }
        if result.established.iter().all(Option::is_some) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    result
}

#[test]
fn every_peer_of_a_storm_on_distinct_addresses_gets_a_session_with_a_slow_chip() {
    let n = env_or("STORM_PEERS", 30) as usize;
    let latency_ms = env_or("STORM_LATENCY_MS", 300);
    assert!((1..=200).contains(&n), "STORM_PEERS 1..=200");
    let module = virtual_se050_module(latency_ms);
    let uri = Pkcs11Uri::parse(&format!(
        "pkcs11:token=SE050;object=wg-storm?module-path={}",
        module.display()
    ))
    .unwrap();
    genkey(&uri).unwrap();
    let key: Arc<dyn StaticKey> = Arc::new(TokenKey::open(&uri).unwrap());
    let a_pub = key.public_key();

    let pair = Pair::new();
    let vb = device_of(&pair.b, &pair.b_addr);
    let prefix = pair.b_addr.rsplit_once('.').unwrap().0.to_string();
    let sources: Vec<IpAddr> = (0..n)
        .map(|i| format!("{prefix}.{}", 10 + i).parse().unwrap())
        .collect();
    for s in &sources {
        pair.b.ip(&["addr", "add", &format!("{s}/24"), "dev", &vb]);
    }
    let secrets: Vec<x25519::StaticSecret> = (0..n)
        .map(|_| x25519::StaticSecret::random_from_rng(rand_core::OsRng))
        .collect();
    let port = 44000 + (std::process::id() % 10000) as u16;
    let mut config = DeviceConfig::new(&unique("wgst"), key);
    config.listen_port = port;
    for (i, s) in secrets.iter().enumerate() {
        config.peers.push(PeerConfig {
            public_key: x25519::PublicKey::from(s).to_bytes(),
            preshared_key: None,
            endpoint: None,
            allowed_ips: vec![(
                format!("10.77.{}.{}", i / 200, i % 200 + 2)
                    .parse()
                    .unwrap(),
                32,
            )],
            persistent_keepalive: 0,
        });
    }
    let a = start_device(&pair.a, config, "10.77.0.1/16", "fd77::1/64");
    let device: SocketAddr = format!("{}:{port}", pair.a_addr).parse().unwrap();

    // The per-peer static-static DHs run while the worker is idle (one each); the storm
    // starts after them, as against a daemon that has been up for a moment.
    let chip = Duration::from_millis(latency_ms);
    let precompute = (chip * n as u32) * 3 + Duration::from_secs(30);
    assert!(
        wait_for(precompute.as_secs(), || a.counters().token_operations
            >= n as u64),
        "static-static precompute: {:?}",
        a.counters()
    );
    let before = a.counters();

    let deadline = Duration::from_secs(30) + chip * (n as u32) * 6;
    let result = pair.b.enter(move || {
        let peers: Vec<(Tunn, UdpSocket)> = secrets
            .into_iter()
            .zip(&sources)
            .enumerate()
            .map(|(i, (secret, src))| {
                let sock = UdpSocket::bind((*src, 0)).unwrap();
                sock.set_nonblocking(true).unwrap();
                let tunn = Tunn::new(
                    secret,
                    x25519::PublicKey::from(a_pub),
                    None,
                    None,
                    i as u32 + 1,
                    None,
                );
                (tunn, sock)
            })
            .collect();
        run_storm(peers, device, deadline)
    });
    // The device's side: every session confirmed by the peer's first message.
    let confirmed = wait_for(10, || {
        a.counters().sessions_confirmed - before.sessions_confirmed >= n as u64
    });
    let after = a.counters();
    let up: Vec<Duration> = result.established.iter().flatten().copied().collect();
    let all_up = up.iter().max().copied().unwrap_or_default();
    let chip_ops = after.token_operations - before.token_operations;
    let handshakes = after.handshakes() - before.handshakes();
    let per_handshake = chip_ops as f64 / handshakes.max(1) as f64;
    println!(
        "STORM peers={n} latency_ms={latency_ms} up={}/{n} all_up_s={:.2} chip_ops={chip_ops} \
         handshakes={handshakes} chip_ops_per_handshake={per_handshake:.2} initiations_sent={} \
         cookie_replies={} stale_dropped={} replayed_dropped={} responses_sent={}",
        up.len(),
        all_up.as_secs_f64(),
        result.initiations_sent,
        result.cookie_replies_received,
        after.dropped(DropReason::Stale) - before.dropped(DropReason::Stale),
        after.dropped(DropReason::Replayed) - before.dropped(DropReason::Replayed),
        after.responses_sent - before.responses_sent,
    );
    assert_eq!(
        up.len(),
        n,
        "peers without a session after {deadline:?}: {:?}",
        result
            .established
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_none())
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    );
    assert!(
        confirmed,
        "the device confirmed {} of {n} sessions: {after:?}",
        after.sessions_confirmed - before.sessions_confirmed
    );
    // Every completed handshake cost the responder's one ECDH; none was spent on a replay.
    assert!(
        chip_ops >= handshakes,
        "{chip_ops} chip operations for {handshakes} handshakes"
    );
    assert_eq!(
        after.dropped(DropReason::Replayed),
        before.dropped(DropReason::Replayed)
    );
    assert_eq!(after.loop_restarts, 0);
}
