//! wg-pkcs11, its key in the virtual SE050 behind the PKCS#11 module, against boringtun-cli:
//! each side initiates in turn; ping and iperf3 through the tunnel; `wg show`; once more with the
//! tunnel's UDP over IPv6.

use e2e_tests::interop::{run, run_over, Initiator, Underlay};
use e2e_tests::UserspaceWireGuard::Boringtun;

#[test]
fn wg_pkcs11_initiates_to_boringtun() {
    run(Boringtun, Initiator::WgPkcs11);
}

#[test]
fn boringtun_initiates_to_wg_pkcs11() {
    run(Boringtun, Initiator::Reference);
}

#[test]
fn wg_pkcs11_initiates_to_boringtun_over_ipv6() {
    run_over(Boringtun, Initiator::WgPkcs11, Underlay::Ipv6);
}
