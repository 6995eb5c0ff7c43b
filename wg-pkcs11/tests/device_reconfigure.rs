//! Reconfiguring a running device as `wg set` does: moving its UDP port under a running TCP
//! stream (the sessions stay, the peer follows by roaming), a port in use refused with the old
//! one still working, and the fwmark kept across a move. Two wg-pkcs11 devices (software keys)
//! in two network namespaces; the moves are asked from the test's own thread, outside both
//! namespaces, so they also show the new socket lands in the device's namespace. Needs root.

mod device_support;

use std::net::SocketAddr;
use std::sync::Arc;

use device_support::*;
use wg_pkcs11::device::{Device, DeviceConfig};
use wg_pkcs11::key::soft::SoftKey;
use wg_pkcs11::key::StaticKey;

struct Tunnel {
    pair: Pair,
    a: Device,
    b: Device,
    a_key: [u8; 32],
    a_port: u16,
}

/// A at 10.9.0.1 and B at 10.9.0.2; each knows the other's endpoint.
fn tunnel() -> Tunnel {
    require_root();
    let pair = Pair::new();
    let (a_key, b_key): (Arc<dyn StaticKey>, Arc<dyn StaticKey>) =
        (Arc::new(SoftKey::generate()), Arc::new(SoftKey::generate()));
    let (ak, bk) = (a_key.public_key(), b_key.public_key());
    let a_port = 30000 + (std::process::id() % 10000) as u16;
    let b_port = a_port + 1;
    let a_ep: SocketAddr = format!("{}:{a_port}", pair.a_addr).parse().unwrap();
    let b_ep: SocketAddr = format!("{}:{b_port}", pair.b_addr).parse().unwrap();
    let mut ca = DeviceConfig::new(&unique("wga"), a_key);
    ca.listen_port = a_port;
    ca.peers.push(peer(bk, Some(b_ep), &[("10.9.0.2", 32)]));
    let mut cb = DeviceConfig::new(&unique("wgb"), b_key);
    cb.listen_port = b_port;
    cb.peers.push(peer(ak, Some(a_ep), &[("10.9.0.0", 24)]));
    let a = start_device(&pair.a, ca, "10.9.0.1/24", "fd09::1/64");
    let b = start_device(&pair.b, cb, "10.9.0.2/24", "fd09::2/64");
    assert!(
        ping_until(&pair.a, "10.9.0.2", 10),
        "no tunnel to start with"
    );
    Tunnel {
        pair,
        a,
        b,
        a_key: ak,
        a_port,
    }
}

/// Whether a UDP socket in `ns` is bound to `port`.
fn bound_in(ns: &Netns, port: u16) -> bool {
    let out = ns.exec("ss", &["-Huan", &format!("sport = :{port}")]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| !l.trim().is_empty())
}

#[test]
fn listen_port_moves_under_a_running_tcp_stream_without_a_new_handshake() {
    let _quiet = heavy_lock();
    let t = tunnel();
    let (ha, hb) = (
        t.a.counters().handshakes_completed,
        t.b.counters().handshakes_completed,
    );
    let moves = std::thread::scope(|s| {
        let stream = s.spawn(|| iperf3_stream(&t.pair.b, &t.pair.a, "10.9.0.2", 4));
        let mut ports = Vec::new();
        for ask in [t.a_port + 10, 0, t.a_port + 11] {
            std::thread::sleep(std::time::Duration::from_millis(900));
            let got = t.a.set_listen_port(ask).expect("rebind");
            assert!(ask == 0 || got == ask, "asked {ask}, got {got}");
            assert_eq!(t.a.listen_port(), got);
            ports.push(got);
        }
        // The moves came at 0.9, 1.8 and 2.7 s: the stream still carries data in its last
        // second, after the last one (alive, however fast: speed is bench/run's business).
        let stream = stream.join().expect("iperf3");
        assert!(
            stream.per_interval.len() >= 4 && stream.per_interval.last() > Some(&0),
            "the stream stopped across the moves: {stream:?}"
        );
        ports
    });
    assert!(moves[1] != 0 && !moves.contains(&t.a_port), "{moves:?}");
    // Only the last socket is open, in A's namespace (not the test's).
    assert!(bound_in(&t.pair.a, moves[2]), "{moves:?}");
    for old in [t.a_port, moves[0], moves[1]] {
        assert!(!bound_in(&t.pair.a, old), "port {old} still bound");
    }
    // B follows A to its last port by roaming; nobody needed a new handshake.
    let endpoint = t.b.peer_info(&t.a_key).unwrap().endpoint.unwrap();
    assert_eq!(endpoint.port(), moves[2]);
    assert!(
        ping(&t.pair.b, "10.9.0.1", 2),
        "B reaches A on its new port"
    );
    assert_eq!(t.a.counters().handshakes_completed, ha);
    assert_eq!(t.b.counters().handshakes_completed, hb);
}

/// After a move each peer hears from the new port at once (a keepalive), so a peer that sends
/// first does not aim at the closed old port until we happen to have data for it.
#[test]
fn peers_learn_the_new_port_without_waiting_for_data() {
    let t = tunnel();
    let keepalives = t.a.counters().keepalives_sent;
    let moved = t.a.set_listen_port(t.a_port + 30).expect("rebind");
    assert!(
        t.a.counters().keepalives_sent > keepalives,
        "no keepalive after the move"
    );
    let start = std::time::Instant::now();
    let port = loop {
        let port = t.b.peer_info(&t.a_key).unwrap().endpoint.unwrap().port();
        if port == moved || start.elapsed() > std::time::Duration::from_secs(5) {
            break port;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(port, moved, "B still sends to A's old port");
    // B speaks first after the move and reaches A.
    assert!(
        ping(&t.pair.b, "10.9.0.1", 2),
        "B does not reach A on its new port"
    );
}

#[test]
fn a_port_in_use_is_refused_and_the_old_one_keeps_working() {
    let t = tunnel();
    // Holders in A's namespace: an IPv6 (dual-stack) and an IPv4 socket.
    let (p6, p4) = (t.a_port + 20, t.a_port + 21);
    let holders = t.pair.a.enter(move || {
        (
            std::net::UdpSocket::bind(("::", p6)).unwrap(),
            std::net::UdpSocket::bind(("0.0.0.0", p4)).unwrap(),
        )
    });
    for port in [p6, p4] {
        let err = t.a.set_listen_port(port).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains(&port.to_string()), "{err}");
        assert_eq!(t.a.listen_port(), t.a_port);
    }
    assert!(
        ping(&t.pair.a, "10.9.0.2", 2),
        "the old port stopped working"
    );
    assert!(ping(&t.pair.b, "10.9.0.1", 2), "B lost A");
    // Asking for the port it has changes nothing.
    assert_eq!(t.a.set_listen_port(t.a_port).unwrap(), t.a_port);
    assert!(bound_in(&t.pair.a, t.a_port));
    drop(holders);
    // Once free, the port is taken; the fwmark set before comes along.
    t.a.set_fwmark(0x5a).unwrap();
    assert_eq!(t.a.set_listen_port(p6).unwrap(), p6);
    assert_eq!(t.a.fwmark(), 0x5a);
    assert!(ping_until(&t.pair.a, "10.9.0.2", 5));
    assert_eq!(
        t.b.peer_info(&t.a_key).unwrap().endpoint.unwrap().port(),
        p6
    );
}
