//! One wg-pkcs11 device against wireguard-go (`wireguard-go -f IF`,
//! configured with `wg set`) in the other namespace: handshakes started by
//! either side, transport both ways over IPv4 and IPv6, rekey from our side,
//! a bulk TCP transfer through TSO/GRO, persistent keepalive, run-time peer
//! removal, roaming (we move), and AllowedIPs (source filtering both ways,
//! routing to two wireguard-go peers by longest prefix). Needs root and
//! wireguard-go.

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
    let (fields, _) = t.go.first_peer();
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

/// Persistent keepalive against wireguard-go: with an interval of 1 s our device starts a
/// handshake by itself and keeps sending empty packets, which wireguard-go authenticates and
/// counts.
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
/// a fresh handshake once added again: with wireguard-go as that peer.
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

/// Roaming against wireguard-go (device_tunnel.rs has the peer that moves, with ours on both
/// sides): here our device moves. Once its address is gone it sends from
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

/// Wait (bounded) until `dev` has dropped more than `before` packets for `reason`.
fn dropped_more(dev: &Device, reason: DropReason, before: u64, more: u64) -> bool {
    wait_for(10, || dev.counters().dropped(reason) >= before + more)
}

/// A ping of `dst` from `src` inside `ns`: whether all `count` replies came.
fn ping_from(ns: &Netns, src: &str, dst: &str, count: u32) -> bool {
    let c = count.to_string();
    ns.exec(
        "ping",
        &["-c", &c, "-i", "0.2", "-W", "1", "-q", "-I", src, dst],
    )
    .status
    .success()
}

/// AllowedIPs as the source filter, both ways, with wireguard-go as the peer. Our device allows
/// wireguard-go only 10.11.0.2: what it sends through the tunnel from 10.11.0.77 authenticates
/// and is dropped (AllowedIps) unanswered, until we allow that address at run time (and then our
/// replies route to it). The other way, wireguard-go allows us only 10.11.0.1: we do route and
/// send what leaves us from 10.11.0.78 (routing looks at the destination only), wireguard-go
/// authenticates it and drops it, until it allows that source too.
#[test]
fn sources_outside_the_allowed_ips_are_dropped_both_ways_with_wireguard_go() {
    let t = interop(true, true);
    assert!(ping_until(&t.pair.b, "10.11.0.1", 10), "tunnel up");
    // wireguard-go's side claims another source inside the tunnel.
    t.pair
        .b
        .ip(&["addr", "add", "10.11.0.77/24", "dev", &t.go.ifname]);
    let before = t.ours.counters().dropped(DropReason::AllowedIps);
    let rx_before = t.ours.peer_info(&t.go_pub).unwrap().rx_bytes;
    assert!(
        !ping_from(&t.pair.b, "10.11.0.77", "10.11.0.1", 3),
        "we answered a source wireguard-go is not allowed"
    );
    assert!(
        dropped_more(&t.ours, DropReason::AllowedIps, before, 3),
        "{:?}",
        t.ours.counters()
    );
    assert!(
        t.ours.peer_info(&t.go_pub).unwrap().rx_bytes > rx_before,
        "the dropped packets came through wireguard-go's session"
    );
    // Allowed at run time, it passes, and our replies to it route to wireguard-go.
    t.ours.replace_allowed_ips(
        &t.go_pub,
        &[
            ("10.11.0.2".parse().unwrap(), 32),
            ("fd11::2".parse().unwrap(), 128),
            ("10.11.0.77".parse().unwrap(), 32),
        ],
    );
    assert!(
        ping_from(&t.pair.b, "10.11.0.77", "10.11.0.1", 2),
        "an allowed source is still refused"
    );

    // The other way: our side sends from a source wireguard-go does not allow us.
    let ours_if = t.ours.name().to_string();
    t.pair
        .a
        .ip(&["addr", "add", "10.11.0.78/24", "dev", &ours_if]);
    let (_, go_rx_before) = go_sees(&t);
    let tx_before = t.ours.peer_info(&t.go_pub).unwrap().tx_bytes;
    assert!(
        !ping_from(&t.pair.a, "10.11.0.78", "10.11.0.2", 3),
        "wireguard-go answered a source it does not allow us"
    );
    assert!(
        t.ours.peer_info(&t.go_pub).unwrap().tx_bytes > tx_before,
        "we did not send them"
    );
    // wireguard-go counts what it authenticated before its own source check.
    assert!(
        wait_for(10, || go_sees(&t).1 >= go_rx_before + 3 * 84),
        "wireguard-go authenticated none of them: {}",
        t.go.dump()
    );
    let ours_pub = b64(&t.ours.public_key());
    t.pair.b.must(
        "wg",
        &[
            "set",
            &t.go.ifname,
            "peer",
            &ours_pub,
            "allowed-ips",
            "10.11.0.1/32,fd11::1/128,10.11.0.78/32",
        ],
    );
    assert!(
        ping_from(&t.pair.a, "10.11.0.78", "10.11.0.2", 2),
        "allowed at wireguard-go, it passes"
    );
}

/// Cryptokey routing with two wireguard-go peers in one namespace: B allowed 10.11.0.0/16 and
/// fd11:1::/64, C the more specific 10.11.2.0/24 and fd11:2::/64. Each destination goes to the
/// peer with the longest matching prefix, over IPv4 and IPv6; a destination no peer has is
/// dropped (NoRoute); each peer reaches us from its own addresses, and C sending from an address
/// of B's range is dropped (AllowedIps: the source must map to the very peer it came from).
#[test]
fn one_device_routes_to_two_wireguard_go_peers_by_allowed_ips() {
    let pair = Pair::new();
    let ours_key = Arc::new(SoftKey::generate());
    let ours_pub = ours_key.public_key();
    let (kb, kc) = (SoftKey::generate(), SoftKey::generate());
    let port = 46000 + (std::process::id() % 10000) as u16;
    let our_ep = SocketAddrLike(format!("{}:{port}", pair.a_addr));
    let b_ep: SocketAddr = format!("{}:{}", pair.b_addr, port + 1).parse().unwrap();
    let c_ep: SocketAddr = format!("{}:{}", pair.b_addr, port + 2).parse().unwrap();
    let mut c = DeviceConfig::new(&unique("wgr"), ours_key);
    c.listen_port = port;
    c.peers.push(peer(
        kb.public_key(),
        Some(b_ep),
        &[("10.11.0.0", 16), ("fd11:1::", 64)],
    ));
    c.peers.push(peer(
        kc.public_key(),
        Some(c_ep),
        &[("10.11.2.0", 24), ("fd11:2::", 64)],
    ));
    let ours = start_device(&pair.a, c, "10.11.0.1/16", "fd11::1/16");
    let go = |key: &SoftKey, port: u16, a4: &str, a6: &str| {
        WireguardGo::start(
            &pair.b,
            &key.private_bytes(),
            port,
            &ours_pub,
            Some(SocketAddrLike(our_ep.0.clone())),
            "10.11.0.1/32,fd11::1/128",
            a4,
            a6,
        )
    };
    let go_b = go(&kb, port + 1, "10.11.1.2/24", "fd11:1::2/64");
    let go_c = go(&kc, port + 2, "10.11.2.2/24", "fd11:2::2/64");
    // C also holds an address of B's range, to send from.
    pair.b
        .ip(&["addr", "add", "10.11.1.99/32", "dev", &go_c.ifname]);
    // Replies in B's namespace go back to us through the interface that owns their source.
    for (table, dev, srcs) in [
        ("201", &go_b.ifname, vec!["10.11.1.2", "fd11:1::2"]),
        (
            "202",
            &go_c.ifname,
            vec!["10.11.2.2", "fd11:2::2", "10.11.1.99"],
        ),
    ] {
        for src in srcs {
            let (family, ours) = if src.contains(':') {
                ("-6", "fd11::1/128")
            } else {
                ("-4", "10.11.0.1/32")
            };
            pair.b
                .ip(&[family, "rule", "add", "from", src, "table", table]);
            pair.b
                .ip(&[family, "route", "replace", ours, "dev", dev, "table", table]);
        }
    }
    assert!(ping_until(&pair.a, "10.11.1.2", 10), "we reach B");
    assert!(ping_until(&pair.a, "10.11.2.2", 10), "we reach C");
    assert!(ping_until(&pair.a, "fd11:2::2", 10), "we reach C over IPv6");
    assert!(ping(&pair.a, "fd11:1::2", 2), "we reach B over IPv6");
    // Each peer got what was meant for it: its own address answered through its own session.
    let peer_rx = |k: &SoftKey| ours.peer_info(&k.public_key()).unwrap().rx_bytes;
    let (b_rx, c_rx) = (peer_rx(&kb), peer_rx(&kc));
    assert!(b_rx > 0 && c_rx > 0, "{b_rx} {c_rx}");
    let (ib, ic) = (
        ours.peer_info(&kb.public_key()).unwrap(),
        ours.peer_info(&kc.public_key()).unwrap(),
    );
    assert_ne!(ib.endpoint, ic.endpoint);
    // And back: each reaches us from its own addresses.
    assert!(
        ping_from(&pair.b, "10.11.1.2", "10.11.0.1", 2),
        "B reaches us"
    );
    assert!(
        ping_from(&pair.b, "10.11.2.2", "10.11.0.1", 2),
        "C reaches us"
    );
    assert!(
        ping_from(&pair.b, "fd11:2::2", "fd11::1", 2),
        "C reaches us over IPv6"
    );
    assert_eq!(ours.counters().dropped(DropReason::AllowedIps), 0);
    // A destination no peer has: dropped by us, never sent.
    let no_route = ours.counters().dropped(DropReason::NoRoute);
    assert!(!ping(&pair.a, "fd11:3::2", 1));
    assert!(dropped_more(&ours, DropReason::NoRoute, no_route, 1));
    // C sending from B's range: authenticated, but the source belongs to B.
    let c_rx = peer_rx(&kc);
    assert!(
        !ping_from(&pair.b, "10.11.1.99", "10.11.0.1", 3),
        "we answered C for an address that routes to B"
    );
    assert!(dropped_more(&ours, DropReason::AllowedIps, 0, 3));
    assert!(peer_rx(&kc) > c_rx, "it came through C's session");
}
