//! Reconfiguring a running device as `wg set` does: moving its UDP port under a running TCP
//! stream (the sessions stay, the peer follows by roaming), a port in use refused with the old
//! one still working, and the fwmark kept across a move. Our device (software key) in one
//! network namespace, wireguard-go, unmodified, as its peer in the other: what the peer sees
//! (its endpoint for us, its last handshake) is read from `wg show dump`. The moves are asked
//! from the test's own thread, outside both namespaces, so they also show the new socket lands
//! in the device's namespace. Needs root and wireguard-go.

mod device_support;

use std::net::SocketAddr;
use std::sync::Arc;

use device_support::*;
use wg_pkcs11::device::{CounterSnapshot, Device, DeviceConfig};
use wg_pkcs11::key::soft::SoftKey;
use wg_pkcs11::key::StaticKey;

struct Tunnel {
    pair: Pair,
    ours: Device,
    go: WireguardGo,
    ours_port: u16,
}

/// Ours at 10.9.0.1 and wireguard-go at 10.9.0.2; each knows the other's endpoint.
fn tunnel() -> Tunnel {
    require_root();
    let pair = Pair::new();
    let ours_key = Arc::new(SoftKey::generate());
    let go_key = SoftKey::generate();
    let ours_pub = ours_key.public_key();
    let ours_port = 30000 + (std::process::id() % 10000) as u16;
    let go_port = ours_port + 1;
    let ours_ep = format!("{}:{ours_port}", pair.a_addr);
    let go_ep: SocketAddr = format!("{}:{go_port}", pair.b_addr).parse().unwrap();
    let mut c = DeviceConfig::new(&unique("wga"), ours_key);
    c.listen_port = ours_port;
    c.peers
        .push(peer(go_key.public_key(), Some(go_ep), &[("10.9.0.2", 32)]));
    let ours = start_device(&pair.a, c, "10.9.0.1/24", "fd09::1/64");
    let go = WireguardGo::start(
        &pair.b,
        &go_key.private_bytes(),
        go_port,
        &ours_pub,
        Some(SocketAddrLike(ours_ep)),
        "10.9.0.0/24",
        "10.9.0.2/24",
        "fd09::2/64",
    );
    assert!(
        ping_until(&pair.a, "10.9.0.2", 10),
        "no tunnel to start with"
    );
    Tunnel {
        pair,
        ours,
        go,
        ours_port,
    }
}

/// wireguard-go's view of us: the port of its endpoint for us, and its latest handshake (s).
fn go_sees(t: &Tunnel) -> (u16, u64) {
    let (fields, dump) = t.go.first_peer();
    let port = fields[2]
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no endpoint in wireguard-go's dump: {dump}"));
    (port, fields[4].parse().unwrap())
}

/// Handshakes our device took part in, either role.
fn handshakes(c: &CounterSnapshot) -> (u64, u64) {
    (c.handshakes_completed, c.responses_sent)
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
    let ours_before = handshakes(&t.ours.counters());
    let (_, go_handshake) = go_sees(&t);
    assert_ne!(go_handshake, 0, "wireguard-go saw no handshake");
    let moves = std::thread::scope(|s| {
        let stream = s.spawn(|| iperf3_stream(&t.pair.b, &t.pair.a, "10.9.0.2", 4));
        let mut ports = Vec::new();
        for ask in [t.ours_port + 10, 0, t.ours_port + 11] {
            std::thread::sleep(std::time::Duration::from_millis(900));
            let got = t.ours.set_listen_port(ask).expect("rebind");
            assert!(ask == 0 || got == ask, "asked {ask}, got {got}");
            assert_eq!(t.ours.listen_port(), got);
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
    assert!(moves[1] != 0 && !moves.contains(&t.ours_port), "{moves:?}");
    // Only the last socket is open, in our namespace (not the test's).
    assert!(bound_in(&t.pair.a, moves[2]), "{moves:?}");
    for old in [t.ours_port, moves[0], moves[1]] {
        assert!(!bound_in(&t.pair.a, old), "port {old} still bound");
    }
    // wireguard-go follows us to our last port by roaming; nobody needed a new handshake.
    assert_eq!(go_sees(&t).0, moves[2], "{}", t.go.dump());
    assert!(
        ping(&t.pair.b, "10.9.0.1", 2),
        "wireguard-go reaches us on our new port"
    );
    assert_eq!(handshakes(&t.ours.counters()), ours_before);
    assert_eq!(
        go_sees(&t).1,
        go_handshake,
        "wireguard-go made a new handshake"
    );
}

/// After a move each peer hears from the new port at once (a keepalive), so a peer that sends
/// first does not aim at the closed old port until we happen to have data for it.
#[test]
fn peers_learn_the_new_port_without_waiting_for_data() {
    let t = tunnel();
    let keepalives = t.ours.counters().keepalives_sent;
    let moved = t.ours.set_listen_port(t.ours_port + 30).expect("rebind");
    assert!(
        t.ours.counters().keepalives_sent > keepalives,
        "no keepalive after the move"
    );
    assert!(
        wait_for(5, || go_sees(&t).0 == moved),
        "wireguard-go still sends to our old port: {}",
        t.go.dump()
    );
    // wireguard-go speaks first after the move and reaches us.
    assert!(
        ping(&t.pair.b, "10.9.0.1", 2),
        "wireguard-go does not reach us on our new port"
    );
}

#[test]
fn a_port_in_use_is_refused_and_the_old_one_keeps_working() {
    let t = tunnel();
    // Holders in our namespace: an IPv6 (dual-stack) and an IPv4 socket.
    let (p6, p4) = (t.ours_port + 20, t.ours_port + 21);
    let holders = t.pair.a.enter(move || {
        (
            std::net::UdpSocket::bind(("::", p6)).unwrap(),
            std::net::UdpSocket::bind(("0.0.0.0", p4)).unwrap(),
        )
    });
    for port in [p6, p4] {
        let err = t.ours.set_listen_port(port).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains(&port.to_string()), "{err}");
        assert_eq!(t.ours.listen_port(), t.ours_port);
    }
    assert!(
        ping(&t.pair.a, "10.9.0.2", 2),
        "the old port stopped working"
    );
    assert!(ping(&t.pair.b, "10.9.0.1", 2), "wireguard-go lost us");
    // Asking for the port it has changes nothing.
    assert_eq!(t.ours.set_listen_port(t.ours_port).unwrap(), t.ours_port);
    assert!(bound_in(&t.pair.a, t.ours_port));
    drop(holders);
    // Once free, the port is taken; the fwmark set before comes along.
    t.ours.set_fwmark(0x5a).unwrap();
    assert_eq!(t.ours.set_listen_port(p6).unwrap(), p6);
    assert_eq!(t.ours.fwmark(), 0x5a);
    assert!(ping_until(&t.pair.a, "10.9.0.2", 5));
    assert!(
        wait_for(5, || go_sees(&t).0 == p6),
        "wireguard-go did not follow us to {p6}: {}",
        t.go.dump()
    );
}
