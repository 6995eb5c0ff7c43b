//! One wg-pkcs11 device against wireguard-go (`wireguard-go -f IF`,
//! configured with `wg set`) in the other namespace: handshakes started by
//! either side, transport both ways over IPv4 and IPv6, rekey from our side,
//! and a bulk TCP transfer through TSO/GRO. Needs root and wireguard-go.

mod device_support;

use std::net::SocketAddr;
use std::sync::Arc;

use device_support::*;
use wg_pkcs11::device::{Device, DeviceConfig, DropReason, PeerConfig};
use wg_pkcs11::key::soft::SoftKey;
use wg_pkcs11::key::StaticKey;

struct Interop {
    pair: Pair,
    ours: Device,
    go: WireguardGo,
    go_pub: [u8; 32],
    /// Our device's configuration of wireguard-go, to add it again after a removal.
    go_peer: PeerConfig,
}

/// Ours in A (10.11.0.1), wireguard-go in B (10.11.0.2). `we_know_go`: whether
/// our device has wireguard-go's endpoint (else only wireguard-go can start).
fn interop(we_know_go: bool, go_knows_us: bool) -> Interop {
    interop_with(we_know_go, go_knows_us, |_| {})
}

/// `interop`, with our device's configuration changed by `configure` before it starts.
fn interop_with(
    we_know_go: bool,
    go_knows_us: bool,
    configure: impl FnOnce(&mut DeviceConfig),
) -> Interop {
    let pair = Pair::new();
    let ours_key = Arc::new(SoftKey::generate());
    let go_key = SoftKey::generate();
    let go_pub = go_key.public_key();
    let port = 44000 + (std::process::id() % 10000) as u16;
    let our_ep: SocketAddr = format!("{}:{port}", pair.a_addr).parse().unwrap();
    let go_ep: SocketAddr = format!("{}:{}", pair.b_addr, port + 1).parse().unwrap();
    let mut c = DeviceConfig::new(&unique("wgi"), ours_key.clone());
    c.listen_port = port;
    c.peers.push(PeerConfig {
        public_key: go_pub,
        preshared_key: Some([7; 32]),
        endpoint: we_know_go.then_some(go_ep),
        allowed_ips: vec![
            ("10.11.0.2".parse().unwrap(), 32),
            ("fd11::2".parse().unwrap(), 128),
        ],
        persistent_keepalive: 0,
    });
    configure(&mut c);
    let go_peer = c.peers[0].clone();
    let ours = start_device(&pair.a, c, "10.11.0.1/24", "fd11::1/64");
    let go = WireguardGo::start(
        &pair.b,
        &go_key.private_bytes(),
        port + 1,
        &ours_key.public_key(),
        go_knows_us.then(|| SocketAddrLike(our_ep.to_string())),
        "10.11.0.1/32,fd11::1/128",
        "10.11.0.2/24",
        "fd11::2/64",
    );
    // Both sides share the preshared key.
    let psk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(psk.path(), b64(&[7; 32])).unwrap();
    must(
        "ip",
        &[
            "netns",
            "exec",
            &pair.b.name,
            "wg",
            "set",
            &go.ifname,
            "peer",
            &b64(&ours_key.public_key()),
            "preshared-key",
            psk.path().to_str().unwrap(),
        ],
    );
    Interop {
        pair,
        ours,
        go,
        go_pub,
        go_peer,
    }
}

/// wireguard-go's view of its one peer (us): latest handshake (seconds) and bytes received.
fn go_sees(t: &Interop) -> (u64, u64) {
    let dump = t.go.dump();
    let fields: Vec<&str> = dump
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("no peer in wireguard-go's dump: {dump}"))
        .split('\t')
        .collect();
    (fields[4].parse().unwrap(), fields[5].parse().unwrap())
}

#[test]
fn we_initiate_to_wireguard_go() {
    let t = interop(true, false);
    assert!(
        ping_until(&t.pair.a, "10.11.0.2", 10),
        "ping through the tunnel to wireguard-go"
    );
    assert!(ping(&t.pair.b, "10.11.0.1", 2), "and back");
    assert!(ping(&t.pair.a, "fd11::2", 2), "IPv6 inside");
    let c = t.ours.counters();
    assert!(c.handshakes_completed >= 1, "{c:?}");
    let dump = t.go.dump();
    assert!(
        dump.lines()
            .nth(1)
            .is_some_and(|l| l.split('\t').nth(4) != Some("0")),
        "wireguard-go saw a handshake: {dump}"
    );
}

#[test]
fn wireguard_go_initiates_to_us() {
    let t = interop(false, true);
    assert!(
        ping_until(&t.pair.b, "10.11.0.1", 10),
        "wireguard-go reaches us"
    );
    assert!(
        ping(&t.pair.a, "10.11.0.2", 2),
        "we answer on the session it started"
    );
    let c = t.ours.counters();
    assert!(c.responses_sent >= 1 && c.initiations_sent == 0, "{c:?}");
    let info = t.ours.peer_info(&t.go_pub).unwrap();
    assert_eq!(
        info.endpoint.map(|e| e.ip().to_string()),
        Some(t.pair.b_addr.clone()),
        "endpoint learned"
    );
    assert!(info.rx_bytes > 0 && info.tx_bytes > 0);
}

#[test]
fn bulk_tcp_to_and_from_wireguard_go() {
    let t = interop(true, true);
    assert!(ping_until(&t.pair.a, "10.11.0.2", 10));
    // Every byte arrives, both ways (how fast is bench/run's business).
    tcp_both_ways(&t.pair.a, "10.11.0.1", &t.pair.b, "10.11.0.2", 16 << 20);
    let c = t.ours.counters();
    assert_eq!(
        c.dropped_total(),
        c.dropped(wg_pkcs11::device::DropReason::NoRoute),
        "{c:?}"
    );
}

/// Persistent keepalive against wireguard-go (the two-device test in device_tunnel.rs checks
/// the same of ours on both sides): with an interval of 1 s our device starts a handshake by
/// itself and keeps sending empty packets, which wireguard-go authenticates and counts.
#[test]
fn persistent_keepalive_to_wireguard_go_keeps_sending_empty_packets() {
    let t = interop_with(true, false, |c| c.peers[0].persistent_keepalive = 1);
    assert!(
        wait_for(10, || t.ours.counters().keepalives_sent >= 3),
        "{:?}",
        t.ours.counters()
    );
    let c = t.ours.counters();
    assert!(
        c.initiations_sent >= 1 && c.handshakes_completed >= 1 && c.responses_sent == 0,
        "we started the session ourselves: {c:?}"
    );
    assert!(t
        .ours
        .peer_info(&t.go_pub)
        .unwrap()
        .last_handshake
        .is_some());
    let (handshake, received) = go_sees(&t);
    assert!(handshake > 0, "wireguard-go saw our handshake");
    // Two more keepalives (32 bytes each on the wire) reach it and authenticate.
    assert!(
        wait_for(10, || go_sees(&t).1 >= received + 64),
        "wireguard-go received no keepalives: {:?} after {received}",
        go_sees(&t)
    );
}

/// A peer removed at run time gets no traffic, its packets are dropped, and it comes back with
/// a fresh handshake once added again: with wireguard-go as that peer (the two-device test in
/// device_tunnel.rs checks the same of ours on both sides).
#[test]
fn wireguard_go_removed_at_run_time_gets_no_traffic_and_can_come_back() {
    let t = interop(true, false);
    assert!(ping_until(&t.pair.a, "10.11.0.2", 10));
    let before = t.ours.counters();
    assert!(t.ours.remove_peer(&t.go_pub));
    assert!(t.ours.peer_info(&t.go_pub).is_none());
    assert!(
        !ping(&t.pair.a, "10.11.0.2", 1),
        "no route to a removed peer"
    );
    assert!(t.ours.counters().dropped(DropReason::NoRoute) > before.dropped(DropReason::NoRoute));
    // wireguard-go still has the session: what it sends under it is dropped unanswered.
    assert!(
        !ping(&t.pair.b, "10.11.0.1", 1),
        "the removed peer's packets got through"
    );
    let c = t.ours.counters();
    assert!(
        c.dropped(DropReason::UnknownIndex) > before.dropped(DropReason::UnknownIndex),
        "{c:?}"
    );
    let handshakes = c.handshakes_completed;
    t.ours.set_peer(&t.go_peer);
    assert!(
        ping_until(&t.pair.a, "10.11.0.2", 10),
        "a fresh handshake after re-adding"
    );
    assert!(t.ours.counters().handshakes_completed > handshakes);
}

/// Roaming against wireguard-go (the two-device test in device_tunnel.rs checks the peer that
/// moves with ours on both sides): here our device moves. Once its address is gone it sends from
/// the new one (its sticky source is forgotten, not reused), and wireguard-go follows it there.
/// (wireguard-go as the one that moves cannot be tested: this version keeps sending from its
/// deleted source address and never reaches us again.)
#[test]
fn we_move_and_wireguard_go_follows_us_to_our_new_address() {
    let t = interop(true, true);
    assert!(ping_until(&t.pair.a, "10.11.0.2", 10));
    let endpoint_at_go = |t: &Interop| {
        let dump = t.go.dump();
        dump.lines()
            .nth(1)
            .and_then(|l| l.split('\t').nth(2))
            .unwrap_or_default()
            .to_string()
    };
    assert!(endpoint_at_go(&t).starts_with(&format!("{}:", t.pair.a_addr)));
    // A moves: a new address on its veth becomes the source of its packets.
    let prefix = &t.pair.a_addr[..t.pair.a_addr.len() - 1]; // "192.168.X."
    let moved = format!("{prefix}3");
    let dev = t.pair.a.ip(&["-o", "link", "show", "type", "veth"]);
    let va = dev
        .split(':')
        .nth(1)
        .unwrap()
        .trim()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    t.pair
        .a
        .ip(&["addr", "add", &format!("{moved}/24"), "dev", &va]);
    t.pair.a.exec(
        "sysctl",
        &["-qw", &format!("net.ipv4.conf.{va}.promote_secondaries=1")],
    );
    let subnet = format!("{prefix}0/24");
    t.pair
        .a
        .ip(&["route", "replace", &subnet, "dev", &va, "src", &moved]);
    t.pair
        .a
        .ip(&["addr", "del", &format!("{}/24", t.pair.a_addr), "dev", &va]);
    assert!(
        ping_until(&t.pair.a, "10.11.0.2", 10),
        "we reach wireguard-go from our new address: {:?}",
        t.ours.counters()
    );
    assert!(
        endpoint_at_go(&t).starts_with(&format!("{moved}:")),
        "wireguard-go follows us: {}",
        t.go.dump()
    );
    // And wireguard-go's own traffic reaches us there.
    assert!(ping(&t.pair.b, "10.11.0.1", 2));
}
