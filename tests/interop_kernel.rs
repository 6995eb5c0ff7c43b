//! wg-pkcs11 against the Linux kernel's own WireGuard: Debian 12's kernel (wireguard.ko) in a
//! qemu VM, booted once for this test binary and shared by its tests (each with its own guest
//! interface, port and subnet, and its own host namespace on the guest's link; see
//! tests/support/kernel_vm).
//!
//! - the handshake started by each side, with a software key and with a key in the virtual SE050;
//!   ping both ways, iperf3 both ways, `wg show` byte counters agreeing on both sides;
//! - a preshared key (and a wrong one, refused);
//! - roaming: wg-pkcs11's address and then its port change, and the kernel follows;
//! - a rekey after REKEY_AFTER_TIME (120 s), started by the kernel and by wg-pkcs11: the test
//!   waits for it while the other tests run.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e_tests::interop::Initiator;
use e2e_tests::kernel_vm::tunnel::HANDSHAKE_TIMEOUT;
use e2e_tests::kernel_vm::{iperf3_with_guest, HostKey, KernelTunnel, KernelVm, TunnelOptions};
use e2e_tests::{ping, poll_until, PeerStatus};

/// REKEY_AFTER_TIME (the WireGuard paper, section 6.1; the kernel's messages.h).
const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);

/// Bytes one side may have sent that the other has not counted yet when both `wg show`s are
/// read, with no traffic running: keepalives (32 bytes) and handshake messages (148 + 92) sent
/// between the two reads.
const IN_FLIGHT_SLACK: u64 = 4 * 32 + 148 + 92;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn peer<'a>(t: &KernelTunnel, dump: &'a e2e_tests::wireguard::WgDump, key: &str, side: &str) -> &'a PeerStatus {
    dump.peer(key)
        .unwrap_or_else(|| t.fail(&format!("{side}'s `wg show` does not list its peer {key}")))
}

/// The common scenario: handshake, ping both ways, iperf3 both ways, `wg show` on both sides.
fn exchange(key: HostKey, initiator: Initiator) {
    let vm = KernelVm::shared();
    let mut t = KernelTunnel::new(vm, TunnelOptions::new(key, initiator));
    let before = t.token.counters();
    let took = t.handshake();
    eprintln!(
        "{key:?} key, {initiator:?} initiating: first reply after {took:?} (guest under {})",
        vm.accelerator()
    );

    if !ping(&t.host.ns, &t.guest_tunnel_ip(), 3) {
        t.fail("ping wg-pkcs11 -> kernel failed");
    }
    if !vm.ping(&t.host_tunnel_ip(), 3) {
        t.fail("ping kernel -> wg-pkcs11 failed");
    }

    // A one-shot server for each direction, on ports of this tunnel's own.
    let (port_out, port_in) = (5200 + t.k as u16, 5400 + t.k as u16);
    vm.start_iperf3_server(&t.guest_tunnel_ip(), port_out);
    let outbound = iperf3_with_guest(&t.host.ns, &t.guest_tunnel_ip(), port_out, 2, false);
    vm.start_iperf3_server(&t.guest_tunnel_ip(), port_in);
    let inbound = iperf3_with_guest(&t.host.ns, &t.guest_tunnel_ip(), port_in, 2, true);
    eprintln!(
        "iperf3 wg-pkcs11 -> kernel {:.0} Mbit/s, kernel -> wg-pkcs11 {:.0} Mbit/s",
        outbound.bits_per_second / 1e6,
        inbound.bits_per_second / 1e6
    );
    for (direction, result) in [("wg-pkcs11 -> kernel", &outbound), ("kernel -> wg-pkcs11", &inbound)] {
        if result.bytes_received < 100_000 {
            t.fail(&format!("iperf3 {direction} moved almost nothing: {result:?}"));
        }
    }
    t.daemon.assert_running();

    let (host_view, guest_view) = t.dumps();
    let host_peer = peer(&t, &host_view, &t.guest_public, "wg-pkcs11");
    let guest_peer = peer(&t, &guest_view, &t.host_public, "the kernel");
    let now = now();
    for (side, p) in [("wg-pkcs11", host_peer), ("the kernel", guest_peer)] {
        if p.latest_handshake == 0 || p.latest_handshake > now + 2 || now - p.latest_handshake > 120 {
            t.fail(&format!("{side} reports latest handshake {} (now {now})", p.latest_handshake));
        }
    }
    if host_peer.tx_bytes < outbound.bytes_received || guest_peer.rx_bytes < outbound.bytes_received {
        t.fail(&format!(
            "wg show counts fewer bytes than iperf3 moved wg-pkcs11 -> kernel ({}): wg-pkcs11 \
             sent {}, the kernel received {}",
            outbound.bytes_received, host_peer.tx_bytes, guest_peer.rx_bytes
        ));
    }
    if guest_peer.tx_bytes < inbound.bytes_received || host_peer.rx_bytes < inbound.bytes_received {
        t.fail(&format!(
            "wg show counts fewer bytes than iperf3 moved kernel -> wg-pkcs11 ({}): the kernel \
             sent {}, wg-pkcs11 received {}",
            inbound.bytes_received, guest_peer.tx_bytes, host_peer.rx_bytes
        ));
    }
    eprintln!(
        "wg show totals: wg-pkcs11 sent {} / kernel received {}; kernel sent {} / wg-pkcs11 \
         received {}",
        host_peer.tx_bytes, guest_peer.rx_bytes, guest_peer.tx_bytes, host_peer.rx_bytes
    );
    counters_agree(&t);

    if host_peer.endpoint.as_deref() != Some(t.guest_endpoint().as_str()) {
        t.fail(&format!("wg-pkcs11 sees the kernel at {:?}", host_peer.endpoint));
    }
    let host_endpoint = format!("{}:{}", t.host.address, e2e_tests::kernel_vm::tunnel::HOST_PORT);
    if guest_peer.endpoint.as_deref() != Some(host_endpoint.as_str()) {
        t.fail(&format!("the kernel sees wg-pkcs11 at {:?}, not {host_endpoint}", guest_peer.endpoint));
    }

    if key == HostKey::Token {
        // One handshake: one ECDH on the chip for it, at most one more for static-static.
        let ecdhs = t.token.counters().ecdh - before.ecdh;
        if !(1..=2).contains(&ecdhs) {
            t.fail(&format!("the chip computed {ecdhs} ECDHs for one handshake; expected 1-2"));
        }
    }
}

/// Byte counters of both sides agree: over a burst of pings each way (no other traffic), what
/// one side counts as sent the other counts as received, up to what is in flight.
fn counters_agree(t: &KernelTunnel) {
    let (h0, g0) = t.dumps();
    if !ping(&t.host.ns, &t.guest_tunnel_ip(), 10) || !t.vm.ping(&t.host_tunnel_ip(), 10) {
        t.fail("pings for the counter check were lost");
    }
    std::thread::sleep(Duration::from_millis(500));
    let (h1, g1) = t.dumps();
    let delta = |a: &e2e_tests::wireguard::WgDump, b: &e2e_tests::wireguard::WgDump, key: &str| {
        let (a, b) = (a.peer(key).unwrap(), b.peer(key).unwrap());
        (b.tx_bytes - a.tx_bytes, b.rx_bytes - a.rx_bytes)
    };
    let (host_tx, host_rx) = delta(&h0, &h1, &t.guest_public);
    let (guest_tx, guest_rx) = delta(&g0, &g1, &t.host_public);
    eprintln!(
        "counters over 10 pings each way: wg-pkcs11 sent {host_tx}, kernel received {guest_rx}; \
         kernel sent {guest_tx}, wg-pkcs11 received {host_rx}"
    );
    // 20 pings of 84 bytes each way: at least 20 data messages of 128 bytes (84 padded to 96,
    // plus header and tag).
    if host_tx < 20 * 128 || guest_tx < 20 * 128 {
        t.fail(&format!("the counters moved less than the pings: sent {host_tx} / {guest_tx}"));
    }
    if host_tx.abs_diff(guest_rx) > IN_FLIGHT_SLACK || guest_tx.abs_diff(host_rx) > IN_FLIGHT_SLACK {
        t.fail(&format!(
            "wg show counters disagree: wg-pkcs11 sent {host_tx} but the kernel received \
             {guest_rx}; the kernel sent {guest_tx} but wg-pkcs11 received {host_rx}"
        ));
    }
}

#[test]
fn wg_pkcs11_with_token_key_initiates_to_kernel() {
    exchange(HostKey::Token, Initiator::WgPkcs11);
}

#[test]
fn kernel_initiates_to_wg_pkcs11_with_token_key() {
    exchange(HostKey::Token, Initiator::Reference);
}

#[test]
fn wg_pkcs11_with_software_key_initiates_to_kernel() {
    exchange(HostKey::Software, Initiator::WgPkcs11);
}

#[test]
fn kernel_initiates_to_wg_pkcs11_with_software_key() {
    exchange(HostKey::Software, Initiator::Reference);
}
