//! The interop scenario shared by tests/interop_*.rs: wg-pkcs11 with its key in the virtual
//! SE050 against one reference implementation, one side initiating.
//!
//! ```text
//!   namespace a: wg-pkcs11 (key pair generated in the chip, addressed by a pkcs11: URI)
//!   namespace b: wireguard-go or boringtun-cli (software key from `wg genkey`)
//! ```
//! Only the initiator is given its peer's endpoint, so the other side can only answer: that
//! proves who initiated. Then ping both ways (IPv4 and IPv6), iperf3 both ways, and `wg show` on
//! wg-pkcs11's interface must report the handshake and at least the bytes iperf3 moved.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::topology::*;
use crate::traffic::{iperf3, ping, ping_until_reply};
use crate::virtual_token::VirtualToken;
use crate::wg_pkcs11::{wg_pkcs11_genkey, wg_pkcs11_pubkey, WgPkcs11, WgPkcs11Conf};
use crate::wireguard::{
    unique_interface_name, wg_genkey, PeerSpec, UserspacePeer, UserspaceWireGuard,
};

/// Latency of every virtual SE050 operation in these tests: slow enough that a token call on the
/// packet path would show, fast enough to keep the suite short.
pub const TOKEN_LATENCY_MS: u32 = 20;

/// How long the first handshake may take (both daemons just started; the token is slow).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Initiator {
    WgPkcs11,
    Reference,
}

/// Which network carries the tunnel's UDP packets between the namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Underlay {
    Ipv4,
    Ipv6,
}

/// The scenario over the IPv4 underlay.
pub fn run(kind: UserspaceWireGuard, initiator: Initiator) {
    run_over(kind, initiator, Underlay::Ipv4);
}

pub fn run_over(kind: UserspaceWireGuard, initiator: Initiator, underlay: Underlay) {
    let tag = match kind {
        UserspaceWireGuard::WireguardGo => "go",
        UserspaceWireGuard::Boringtun => "bt",
    };
    let net = NamespacePair::new(tag);
    let (a_endpoint, b_endpoint) = match underlay {
        Underlay::Ipv4 => (net.a_endpoint(), net.b_endpoint()),
        Underlay::Ipv6 => (net.a_endpoint6(), net.b_endpoint6()),
    };
    let token = VirtualToken::new(TOKEN_LATENCY_MS);

    let label = "wg-interop";
    let token_public = wg_pkcs11_genkey(&token, label);
    assert_eq!(
        wg_pkcs11_pubkey(&token, label),
        token_public,
        "`wg-pkcs11 pubkey` disagrees with what `genkey` printed"
    );

    let (ref_private, ref_public) = wg_genkey();
    let reference = UserspacePeer::start(kind, &net.b, &unique_interface_name("ref"), net.dir());
    let mut reference_sees = PeerSpec::new(&token_public, &["10.10.0.1/32", "fd00:10::1/128"]);
    if initiator == Initiator::Reference {
        reference_sees = reference_sees.endpoint(&a_endpoint);
    }
    reference.configure(&ref_private, LISTEN_PORT_B, &[reference_sees]);
    reference.address_and_up(&["10.10.0.2/24", "fd00:10::2/64"]);

    let mut daemon_sees = PeerSpec::new(&ref_public, &["10.10.0.2/32", "fd00:10::2/128"]);
    if initiator == Initiator::WgPkcs11 {
        daemon_sees = daemon_sees.endpoint(&b_endpoint);
    }
    let conf = WgPkcs11Conf {
        private_key: token.key_uri(label),
        listen_port: Some(LISTEN_PORT_A),
        addresses: vec!["10.10.0.1/24".into(), "fd00:10::1/64".into()],
        mtu: Some(1420),
        peers: vec![daemon_sees],
    };
    let ifname = unique_interface_name("wgp");
    let conf_path = conf.write(net.dir(), &ifname);
    let before_up = token.counters();
    assert_eq!(
        before_up.keygen, 1,
        "genkey should have generated exactly one pair: {before_up:?}"
    );
    let mut daemon = WgPkcs11::up(&net.a, &token, &conf_path, net.dir());

    let (first_ns, first_target) = match initiator {
        Initiator::WgPkcs11 => (&net.a, B_TUNNEL),
        Initiator::Reference => (&net.b, A_TUNNEL),
    };
    let answered_in =
        std::panic::catch_unwind(|| ping_until_reply(first_ns, first_target, HANDSHAKE_TIMEOUT))
            .unwrap_or_else(|_| {
                panic!(
                    "no handshake between wg-pkcs11 and {} ({initiator:?} initiating, {underlay:?}) within \
             {HANDSHAKE_TIMEOUT:?}\n--- wg-pkcs11 log:\n{}\n--- {} log:\n{}",
                    kind.program(),
                    daemon.log(),
                    kind.program(),
                    reference.log()
                )
            });
    eprintln!("{initiator:?} initiated over {underlay:?}; first reply after {answered_in:?}");
    daemon.assert_running();

    assert!(
        ping(&net.a, B_TUNNEL, 3),
        "ping wg-pkcs11 -> {} failed",
        kind.program()
    );
    assert!(
        ping(&net.b, A_TUNNEL, 3),
        "ping {} -> wg-pkcs11 failed",
        kind.program()
    );
    assert!(
        ping(&net.a, B_TUNNEL6, 3),
        "IPv6 ping wg-pkcs11 -> {} failed",
        kind.program()
    );
    assert!(
        ping(&net.b, A_TUNNEL6, 3),
        "IPv6 ping {} -> wg-pkcs11 failed",
        kind.program()
    );

    let outbound = iperf3(&net.b, B_TUNNEL, &net.a, 2, net.dir());
    let inbound = iperf3(&net.a, A_TUNNEL, &net.b, 2, net.dir());
    eprintln!(
        "iperf3 wg-pkcs11 -> {0}: {1:.0} Mbit/s; {0} -> wg-pkcs11: {2:.0} Mbit/s",
        kind.program(),
        outbound.bits_per_second / 1e6,
        inbound.bits_per_second / 1e6
    );
    for (direction, result) in [("outbound", &outbound), ("inbound", &inbound)] {
        assert!(
            result.bytes_received > 1_000_000,
            "{direction} iperf3 through wg-pkcs11 moved almost nothing: {result:?}"
        );
    }
    daemon.assert_running();

    let show = daemon.show();
    eprintln!("wg show {}:\n{show}", daemon.ifname);
    assert!(
        show.contains("latest handshake"),
        "`wg show` reports no handshake:\n{show}"
    );
    assert!(
        show.contains("transfer"),
        "`wg show` reports no transfer:\n{show}"
    );
    let dump = daemon.dump();
    assert_eq!(
        dump.listen_port, LISTEN_PORT_A,
        "wg show reports the wrong listen port"
    );
    let peer = dump
        .peer(&ref_public)
        .unwrap_or_else(|| panic!("wg show on wg-pkcs11 does not list the peer: {dump:?}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        peer.latest_handshake > 0
            && peer.latest_handshake <= now + 1
            && now - peer.latest_handshake < 120,
        "wg show reports latest handshake {} (now {now})",
        peer.latest_handshake
    );
    assert!(
        peer.tx_bytes >= outbound.bytes_received,
        "wg show says {} bytes sent, fewer than iperf3 received through it ({})",
        peer.tx_bytes,
        outbound.bytes_received
    );
    assert!(
        peer.rx_bytes >= inbound.bytes_received,
        "wg show says {} bytes received, fewer than iperf3 sent through it ({})",
        peer.rx_bytes,
        inbound.bytes_received
    );
    assert_eq!(
        peer.endpoint.as_deref(),
        Some(b_endpoint.as_str()),
        "wg-pkcs11 does not report the peer's endpoint"
    );

    let reference_view = reference.dump();
    let seen = reference_view
        .peer(&token_public)
        .expect("the reference peer lost wg-pkcs11's public key");
    assert!(
        seen.latest_handshake > 0,
        "{} reports no handshake",
        kind.program()
    );
    assert_eq!(
        seen.endpoint.as_deref(),
        Some(a_endpoint.as_str()),
        "{} does not know wg-pkcs11's endpoint",
        kind.program()
    );

    // One handshake happened (REKEY_AFTER_TIME is far away): the chip computed one ECDH for
    // that handshake and at most one more for the per-peer static-static DH, which is cached.
    let ecdhs = token.counters().ecdh - before_up.ecdh;
    eprintln!("ECDHs computed by the chip for wg-pkcs11: {ecdhs}");
    assert!(
        (1..=2).contains(&ecdhs),
        "the chip computed {ecdhs} ECDHs for one handshake; expected 1 (the handshake) plus at \
         most 1 (static-static, cached per peer)"
    );

    daemon.down();
}
