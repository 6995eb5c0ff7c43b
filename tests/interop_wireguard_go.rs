//! wg-pkcs11, its key in the virtual SE050 behind the PKCS#11 module, against Debian 12's
//! wireguard-go: each side initiates in turn; ping and iperf3 through the tunnel; `wg show`;
//! once more with the tunnel's UDP over IPv6.

use e2e_tests::interop::{run, run_over, Initiator, Underlay};
use e2e_tests::UserspaceWireGuard::WireguardGo;

#[test]
fn wg_pkcs11_initiates_to_wireguard_go() {
    run(WireguardGo, Initiator::WgPkcs11);
}

#[test]
fn wireguard_go_initiates_to_wg_pkcs11() {
    run(WireguardGo, Initiator::Reference);
}

#[test]
fn wg_pkcs11_initiates_to_wireguard_go_over_ipv6() {
    run_over(WireguardGo, Initiator::WgPkcs11, Underlay::Ipv6);
}
