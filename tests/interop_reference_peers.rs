//! The harness proven on the reference implementations alone: wireguard-go in one namespace,
//! boringtun-cli in the other, software keys from `wg genkey`, a ping each way and an iperf3
//! transfer through the tunnel. If this fails, the machine or the harness is at fault, not
//! wg-pkcs11; the interop tests build on exactly these helpers.

use std::time::Duration;

use e2e_tests::topology::*;
use e2e_tests::*;

#[test]
fn wireguard_go_and_boringtun_tunnel_carries_ping_and_iperf3() {
    reference_tunnel(false);
}

#[test]
fn wireguard_go_and_boringtun_tunnel_over_ipv6_carries_ping_and_iperf3() {
    reference_tunnel(true);
}

fn reference_tunnel(ipv6_underlay: bool) {
    let net = NamespacePair::new("ref");
    let (a_endpoint, b_endpoint) = if ipv6_underlay {
        (net.a_endpoint6(), net.b_endpoint6())
    } else {
        (net.a_endpoint(), net.b_endpoint())
    };
    let (go_private, go_public) = wg_genkey();
    let (bt_private, bt_public) = wg_genkey();

    let go = UserspacePeer::start(
        UserspaceWireGuard::WireguardGo,
        &net.a,
        &unique_interface_name("wgo"),
        net.dir(),
    );
    let bt = UserspacePeer::start(
        UserspaceWireGuard::Boringtun,
        &net.b,
        &unique_interface_name("wbt"),
        net.dir(),
    );
    // Only wireguard-go knows where its peer is: it must initiate, boringtun can only answer.
    go.configure(
        &go_private,
        LISTEN_PORT_A,
        &[PeerSpec::new(&bt_public, &["10.10.0.2/32", "fd00:10::2/128"]).endpoint(&b_endpoint)],
    );
    bt.configure(
        &bt_private,
        LISTEN_PORT_B,
        &[PeerSpec::new(
            &go_public,
            &["10.10.0.1/32", "fd00:10::1/128"],
        )],
    );
    go.address_and_up(&["10.10.0.1/24", "fd00:10::1/64"]);
    bt.address_and_up(&["10.10.0.2/24", "fd00:10::2/64"]);

    let first_reply = ping_until_reply(&net.a, B_TUNNEL, Duration::from_secs(20));
    eprintln!("first reply through the tunnel after {first_reply:?}");
    assert!(
        ping(&net.b, A_TUNNEL, 3),
        "boringtun -> wireguard-go ping failed"
    );
    assert!(
        ping(&net.a, B_TUNNEL6, 3),
        "IPv6 ping through the tunnel failed"
    );

    let result = iperf3(&net.b, B_TUNNEL, &net.a, 2, net.dir());
    eprintln!(
        "iperf3 wireguard-go -> boringtun: {:.0} Mbit/s, {} bytes",
        result.bits_per_second / 1e6,
        result.bytes_received
    );
    assert!(
        result.bytes_received > 1_000_000,
        "iperf3 moved almost nothing: {result:?}"
    );

    let go_view = go.dump();
    let peer = go_view
        .peer(&bt_public)
        .expect("wireguard-go lost its peer");
    assert!(
        peer.latest_handshake > 0,
        "wireguard-go reports no handshake: {peer:?}"
    );
    assert!(
        peer.tx_bytes >= result.bytes_received,
        "wireguard-go sent {} bytes, fewer than iperf3 received ({})",
        peer.tx_bytes,
        result.bytes_received
    );
    let bt_view = bt.dump();
    let peer = bt_view.peer(&go_public).expect("boringtun lost its peer");
    assert_eq!(
        peer.endpoint.as_deref(),
        Some(a_endpoint.as_str()),
        "boringtun did not learn wireguard-go's endpoint from the handshake"
    );
}
