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
//!   waits for it while the other tests run;
//! - key rotation without downtime with the kernel as the server (interop_kernel/rotation.rs);
//! - attested admission: the kernel adds a device only after `wg-pkcs11 admit` verified its
//!   evidence (interop_kernel/admission.rs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[path = "interop_kernel/rotation.rs"]
mod rotation;

#[path = "interop_kernel/admission.rs"]
mod admission;

use std::process::Command;

use e2e_tests::interop::Initiator;
use e2e_tests::kernel_vm::tunnel::HOST_PORT;
use e2e_tests::kernel_vm::{iperf3_with_guest, HostKey, KernelTunnel, KernelVm, TunnelOptions};
use e2e_tests::wireguard::WgDump;
use e2e_tests::{ping, poll_until, PeerSpec, PeerStatus};

/// How long the kernel may take to learn wg-pkcs11's new port: the guest is emulated, and reading
/// its `wg show` takes a few hundred ms.
const PORT_MOVE_DEADLINE: Duration = Duration::from_secs(5);

/// REKEY_AFTER_TIME (the WireGuard paper, section 6.1; the kernel's messages.h).
const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);

/// Bytes one side may count beyond the pings of the counter check, or have sent while the other
/// has not counted them yet when both `wg show`s are read: a passive keepalive (32 bytes) each way.
const IN_FLIGHT_SLACK: u64 = 2 * 32;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn peer<'a>(t: &KernelTunnel, dump: &'a WgDump, key: &str, side: &str) -> &'a PeerStatus {
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
    for (direction, result) in [
        ("wg-pkcs11 -> kernel", &outbound),
        ("kernel -> wg-pkcs11", &inbound),
    ] {
        if result.bytes_received < 100_000 {
            t.fail(&format!(
                "iperf3 {direction} moved almost nothing: {result:?}"
            ));
        }
    }
    t.daemon.assert_running();

    let (host_view, guest_view) = t.dumps();
    let host_peer = peer(&t, &host_view, &t.guest_public, "wg-pkcs11");
    let guest_peer = peer(&t, &guest_view, &t.host_public, "the kernel");
    let now = now();
    for (side, p) in [("wg-pkcs11", host_peer), ("the kernel", guest_peer)] {
        if p.latest_handshake == 0 || p.latest_handshake > now + 2 || now - p.latest_handshake > 120
        {
            t.fail(&format!(
                "{side} reports latest handshake {} (now {now})",
                p.latest_handshake
            ));
        }
    }
    if host_peer.tx_bytes < outbound.bytes_received || guest_peer.rx_bytes < outbound.bytes_received
    {
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
        t.fail(&format!(
            "wg-pkcs11 sees the kernel at {:?}",
            host_peer.endpoint
        ));
    }
    let host_endpoint = format!("{}:{HOST_PORT}", t.host.address);
    if guest_peer.endpoint.as_deref() != Some(host_endpoint.as_str()) {
        t.fail(&format!(
            "the kernel sees wg-pkcs11 at {:?}, not {host_endpoint}",
            guest_peer.endpoint
        ));
    }

    if key == HostKey::Token {
        // One handshake: one ECDH on the chip for it, at most one more for static-static.
        let ecdhs = t.token.counters().ecdh - before.ecdh;
        if !(1..=2).contains(&ecdhs) {
            t.fail(&format!(
                "the chip computed {ecdhs} ECDHs for one handshake; expected 1-2"
            ));
        }
    }
}

/// Byte counters of both sides agree: over a burst of pings each way (no other traffic), what
/// one side counts as sent the other counts as received, up to what is in flight.
fn counters_agree(t: &KernelTunnel) {
    const PINGS: u32 = 10;
    const PAYLOAD: u32 = 1000;
    let (h0, g0) = t.dumps();
    let size = PAYLOAD.to_string();
    let count = PINGS.to_string();
    let host_pinged = t
        .host
        .ns
        .output([
            "ping",
            "-n",
            "-q",
            "-c",
            &count,
            "-i",
            "0.2",
            "-W",
            "2",
            "-s",
            &size,
            &t.guest_tunnel_ip(),
        ])
        .status
        .success();
    let guest_pinged =
        t.vm.run(&format!(
            "ping -q -c {PINGS} -i 0.2 -W 2 -s {PAYLOAD} {}",
            t.host_tunnel_ip()
        ))
        .success();
    if !host_pinged || !guest_pinged {
        t.fail("pings for the counter check were lost");
    }
    std::thread::sleep(Duration::from_millis(500));
    let (h1, g1) = t.dumps();
    let delta = |a: &WgDump, b: &WgDump, key: &str| {
        let (a, b) = (a.peer(key).unwrap(), b.peer(key).unwrap());
        (b.tx_bytes - a.tx_bytes, b.rx_bytes - a.rx_bytes)
    };
    let (host_tx, host_rx) = delta(&h0, &h1, &t.guest_public);
    let (guest_tx, guest_rx) = delta(&g0, &g1, &t.host_public);
    eprintln!(
        "counters over {PINGS} pings each way: wg-pkcs11 sent {host_tx}, kernel received \
         {guest_rx}; kernel sent {guest_tx}, wg-pkcs11 received {host_rx}"
    );
    // Each side sends PINGS requests and PINGS replies, each one transport message: the IP
    // packet (20 + 8 + payload) padded to 16, plus the 16-byte header and the 16-byte tag.
    let message = u64::from((20 + 8 + PAYLOAD).div_ceil(16) * 16 + 32);
    let expected = 2 * u64::from(PINGS) * message;
    for (what, bytes) in [
        ("wg-pkcs11 sent", host_tx),
        ("wg-pkcs11 received", host_rx),
        ("the kernel sent", guest_tx),
        ("the kernel received", guest_rx),
    ] {
        if bytes < expected || bytes > expected + IN_FLIGHT_SLACK {
            t.fail(&format!(
                "{what} {bytes} bytes over {PINGS} pings each way; expected {expected} (+ at most \
                 {IN_FLIGHT_SLACK} for keepalives)"
            ));
        }
    }
    if host_tx.abs_diff(guest_rx) > IN_FLIGHT_SLACK || guest_tx.abs_diff(host_rx) > IN_FLIGHT_SLACK
    {
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

fn wg_genpsk() -> String {
    let out = Command::new("wg")
        .arg("genpsk")
        .output()
        .expect("cannot run wg genpsk");
    assert!(out.status.success(), "wg genpsk failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The kernel's endpoint for wg-pkcs11, from its `wg show dump`.
fn kernel_sees(t: &KernelTunnel) -> Option<String> {
    let dump = t.guest.dump();
    peer(t, &dump, &t.host_public, "the kernel")
        .endpoint
        .clone()
}

/// A preshared key on both sides: the tunnel works. With a different key on the kernel's side no
/// handshake completes, which shows that both really mix it in.
#[test]
fn preshared_key() {
    let vm = KernelVm::shared();
    let psk = wg_genpsk();
    let mut options = TunnelOptions::new(HostKey::Token, Initiator::WgPkcs11);
    options.preshared_keys = (Some(psk.clone()), Some(wg_genpsk()));
    let t = KernelTunnel::new(vm, options);

    if ping(&t.host.ns, &t.guest_tunnel_ip(), 3) {
        t.fail("a ping went through although the two sides have different preshared keys");
    }
    let (host_view, guest_view) = t.dumps();
    for (side, view, key) in [
        ("wg-pkcs11", &host_view, &t.guest_public),
        ("the kernel", &guest_view, &t.host_public),
    ] {
        let p = peer(&t, view, key, side);
        if p.latest_handshake != 0 {
            t.fail(&format!(
                "{side} completed a handshake despite a wrong preshared key: {p:?}"
            ));
        }
    }

    t.guest.set_peer(
        &PeerSpec::new(&t.host_public, &[&format!("{}/32", t.host_tunnel_ip())])
            .preshared_key(&psk),
    );
    t.handshake();
    if !ping(&t.host.ns, &t.guest_tunnel_ip(), 3) || !vm.ping(&t.host_tunnel_ip(), 3) {
        t.fail("ping with the same preshared key on both sides failed");
    }
    counters_agree(&t);
}

/// wg-pkcs11 moves to another address (the old one is removed), then to another port: the kernel
/// follows each move from wg-pkcs11's next authenticated packet, and reaches it there.
#[test]
fn kernel_follows_wg_pkcs11_when_it_roams() {
    let vm = KernelVm::shared();
    let t = KernelTunnel::new(vm, TunnelOptions::new(HostKey::Token, Initiator::WgPkcs11));
    t.handshake();
    let old = format!("{}:{HOST_PORT}", t.host.address);
    if kernel_sees(&t).as_deref() != Some(old.as_str()) {
        t.fail(&format!(
            "before roaming the kernel sees wg-pkcs11 at {:?}, not {old}",
            kernel_sees(&t)
        ));
    }

    // A new address; the old one goes (the new one is promoted to primary and becomes the
    // source of everything wg-pkcs11 sends on the link).
    let new_address = vm.next_host_address();
    let ns = &t.host.ns;
    ns.run(["sysctl", "-qw", "net.ipv4.conf.vm0.promote_secondaries=1"]);
    ns.run([
        "ip",
        "address",
        "add",
        &format!("{new_address}/{}", t.host.prefix_len()),
        "dev",
        "vm0",
    ]);
    ns.run([
        "ip",
        "address",
        "del",
        &format!("{}/{}", t.host.address, t.host.prefix_len()),
        "dev",
        "vm0",
    ]);
    if !ping(ns, &t.guest_tunnel_ip(), 3) {
        t.fail("ping wg-pkcs11 -> kernel failed after wg-pkcs11 changed address");
    }
    let moved = format!("{new_address}:{HOST_PORT}");
    if kernel_sees(&t).as_deref() != Some(moved.as_str()) {
        t.fail(&format!(
            "the kernel did not follow wg-pkcs11 to {moved}: it sees {:?}",
            kernel_sees(&t)
        ));
    }
    // The old address no longer exists: the kernel's pings arrive only because it followed.
    if !vm.ping(&t.host_tunnel_ip(), 3) {
        t.fail(&format!(
            "ping kernel -> wg-pkcs11 at its new address {moved} failed"
        ));
    }

    // A new port, at run time: wg-pkcs11 tells its peers with a keepalive from the new port.
    let new_port = HOST_PORT + 1;
    ns.run([
        "wg",
        "set",
        &t.daemon.ifname,
        "listen-port",
        &new_port.to_string(),
    ]);
    let moved = format!("{new_address}:{new_port}");
    // Well under KEEPALIVE_TIMEOUT (10 s): no timer of either side can move the kernel in time,
    // only the keepalive wg-pkcs11 sends from the new port when it moves.
    let mut seen = None;
    let followed = poll_until(PORT_MOVE_DEADLINE, || {
        seen = kernel_sees(&t);
        seen.as_deref() == Some(moved.as_str())
    });
    if !followed {
        t.fail(&format!(
            "the kernel did not follow wg-pkcs11 to port {new_port} within {PORT_MOVE_DEADLINE:?} \
             (wg-pkcs11 sent nothing from it?): it sees {seen:?}"
        ));
    }
    if !vm.ping(&t.host_tunnel_ip(), 3) || !ping(ns, &t.guest_tunnel_ip(), 3) {
        t.fail(&format!("ping failed after wg-pkcs11 moved to {moved}"));
    }
    if t.daemon.dump().listen_port != new_port {
        t.fail("wg-pkcs11 does not report its new listen port");
    }
}

/// How often the kernel's console says `what` about the peer at `endpoint` (its debug messages
/// name the peer's endpoint, which is unique per tunnel).
fn console_count(vm: &KernelVm, what: &str, endpoint: &str) -> usize {
    let endpoint = format!("({endpoint})");
    vm.console()
        .lines()
        .filter(|l| l.contains(what) && l.contains(&endpoint))
        .count()
}

/// REKEY_AFTER_TIME: 120 s after a handshake the side that initiated it starts a new one when it
/// next sends. One tunnel where the kernel initiated (so the kernel rekeys and wg-pkcs11, with
/// its key in the chip, answers) and one where wg-pkcs11 did (wg-pkcs11 rekeys). Named to sort
/// first: libtest starts tests in name order, so its two-minute wait overlaps the other tests.
#[test]
fn after_rekey_after_time_each_side_rekeys() {
    let vm = KernelVm::shared();
    let by_kernel = KernelTunnel::new(vm, TunnelOptions::new(HostKey::Token, Initiator::Reference));
    let by_daemon = KernelTunnel::new(vm, TunnelOptions::new(HostKey::Token, Initiator::WgPkcs11));
    by_kernel.handshake();
    by_daemon.handshake();
    let host_endpoint = |t: &KernelTunnel| format!("{}:{HOST_PORT}", t.host.address);
    let first = |t: &KernelTunnel| {
        let (h, g) = t.dumps();
        (
            peer(t, &h, &t.guest_public, "wg-pkcs11").latest_handshake,
            peer(t, &g, &t.host_public, "the kernel").latest_handshake,
        )
    };
    let firsts = [first(&by_kernel), first(&by_daemon)];
    let ecdhs = [
        by_kernel.token.counters().ecdh,
        by_daemon.token.counters().ecdh,
    ];
    let kernel_initiations = console_count(
        vm,
        "Sending handshake initiation",
        &host_endpoint(&by_kernel),
    );
    let kernel_answers = console_count(
        vm,
        "Receiving handshake initiation",
        &host_endpoint(&by_daemon),
    );

    // Wait out REKEY_AFTER_TIME from the later of the two handshakes, plus a margin.
    let latest = firsts.iter().map(|(h, g)| *h.max(g)).max().unwrap();
    let due = latest + REKEY_AFTER_TIME.as_secs() + 2;
    eprintln!(
        "rekey: waiting {} s for REKEY_AFTER_TIME",
        due.saturating_sub(now())
    );
    while now() < due {
        std::thread::sleep(Duration::from_millis(500));
    }

    // Each initiator sends: that starts its rekey.
    if !vm.ping(&by_kernel.host_tunnel_ip(), 3) {
        by_kernel.fail("ping kernel -> wg-pkcs11 failed after REKEY_AFTER_TIME");
    }
    if !ping(&by_daemon.host.ns, &by_daemon.guest_tunnel_ip(), 3) {
        by_daemon.fail("ping wg-pkcs11 -> kernel failed after REKEY_AFTER_TIME");
    }
    for (t, (h0, g0), ecdh0) in [
        (&by_kernel, firsts[0], ecdhs[0]),
        (&by_daemon, firsts[1], ecdhs[1]),
    ] {
        let rekeyed = poll_until(Duration::from_secs(30), || {
            let (h, g) = first(t);
            h > h0 && g > g0
        });
        if !rekeyed {
            t.fail(&format!(
                "no new handshake on both sides after REKEY_AFTER_TIME ({:?} initiated the first)",
                t.options.initiator
            ));
        }
        // One handshake: one ECDH on the chip (the static-static one is cached per peer).
        let spent = t.token.counters().ecdh - ecdh0;
        if !(1..=2).contains(&spent) {
            t.fail(&format!(
                "the chip computed {spent} ECDHs for one rekey; expected 1"
            ));
        }
        eprintln!(
            "rekey ({:?} initiated): {spent} ECDH on the chip",
            t.options.initiator
        );
        if !ping(&t.host.ns, &t.guest_tunnel_ip(), 3) || !vm.ping(&t.host_tunnel_ip(), 3) {
            t.fail("ping failed after the rekey");
        }
    }
    // Who rekeyed: the kernel sent a second initiation to the first tunnel's wg-pkcs11, and
    // received a second one from the second's.
    let sent = console_count(
        vm,
        "Sending handshake initiation",
        &host_endpoint(&by_kernel),
    );
    if sent <= kernel_initiations {
        by_kernel.fail(&format!(
            "the kernel's console shows no new handshake initiation sent by the kernel \
             ({kernel_initiations} before the wait, {sent} after)"
        ));
    }
    let received = console_count(
        vm,
        "Receiving handshake initiation",
        &host_endpoint(&by_daemon),
    );
    if received <= kernel_answers {
        by_daemon.fail(&format!(
            "the kernel's console shows no new handshake initiation from wg-pkcs11 \
             ({kernel_answers} before the wait, {received} after)"
        ));
    }
}
