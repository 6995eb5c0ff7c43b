//! Issue 23 part 2: the arm64 build on an arm64 machine. Debian 12's arm64 kernel in
//! qemu-system-aarch64 (`-M virt`, TCG) with an initramfs of Debian's arm64 busybox, wg and ip
//! (tests/support/guests/arm64.rs); inside it, the project's arm64 `wg-pkcs11` and
//! `libpkcs11_se050.so` (target/aarch64-unknown-linux-gnu/release, or `WG_PKCS11_ARM64_DIR`):
//!
//! - a key generated in the virtual SE050 (the module's `transport = "virtual"`, its state in the
//!   guest) through the module, with `wg-pkcs11 genkey`;
//! - `wg-pkcs11 up` with that key, the guest kernel's own WireGuard as its peer in a second
//!   namespace inside the guest (a veth pair between them); a handshake, pings both ways, `wg
//!   show` through the daemon's UAPI socket, `wg-pkcs11 down`;
//! - the chip's operations counted (the virtual chip's counters, read back from the guest): one
//!   key generation, 1-2 ECDHs for the handshake, none for the pings after it.
//!
//! Needs root, qemu-system-aarch64 (qemu-system-arm) and mmdebstrap; fails when any is missing.
//! Cost: see docs/testing.md, "Platform tests".

use std::time::Instant;

use e2e_tests::guests::{self, arm64, Machine};
use pkcs11_se050::virtual_se050::counters::Counters;

const STATE_DIR: &str = "/var/lib/pkcs11-se050";
const MODULE_CONF: &str = "/etc/pkcs11-se050/pkcs11-se050.toml";

fn chip_counters(vm: &Machine) -> Counters {
    guests::chip_counters(vm, &format!("{STATE_DIR}/se050.state"))
}

#[test]
fn arm64_build_handshakes_with_the_guest_kernel_through_the_virtual_se050() {
    let started = Instant::now();
    let vm = arm64::boot();
    let arch = vm.run_ok("uname -m");
    assert_eq!(arch.trim(), "aarch64", "the guest is not an arm64 machine");

    vm.write_file(
        MODULE_CONF,
        &format!(
            "transport = \"virtual\"\nvirtual_state = \"{STATE_DIR}/se050.state\"\n\
             virtual_latency_ms = 30\n"
        ),
    );
    vm.run_ok(&format!("mkdir -p {STATE_DIR}"));
    let env = format!("PKCS11_SE050_CONF={MODULE_CONF} RUST_LOG=info");
    let uri = format!(
        "pkcs11:token=SE050;object=wg-arm64?module-path={}/libpkcs11_se050.so",
        arm64::GUEST_DIR
    );
    let genkey = vm.run_ok(&format!(
        "{env} {}/wg-pkcs11 genkey '{uri}'",
        arm64::GUEST_DIR
    ));
    let public = genkey.lines().last().unwrap_or_default().trim().to_string();
    assert_eq!(public.len(), 44, "genkey printed no public key: {genkey}");
    let after_genkey = chip_counters(&vm);
    assert_eq!(
        after_genkey.keygen, 1,
        "the chip made {} keys for one genkey",
        after_genkey.keygen
    );

    // The kernel's WireGuard in namespace `peer`, reached over a veth pair.
    let kernel_public = vm.run_ok(&format!(
        "set -e
         ip netns add peer
         ip link add v0 type veth peer name v1 netns peer
         ip address add 10.99.0.1/24 dev v0
         ip link set v0 up
         ip -n peer link set lo up
         ip -n peer address add 10.99.0.2/24 dev v1
         ip -n peer link set v1 up
         umask 077
         wg genkey > /tmp/kernel.key
         ip -n peer link add wgk type wireguard
         ip netns exec peer wg set wgk private-key /tmp/kernel.key listen-port 51820 \
             peer {public} allowed-ips 10.98.0.1/32
         ip -n peer address add 10.98.0.2/24 dev wgk
         ip -n peer link set wgk up
         wg pubkey < /tmp/kernel.key"
    ));
    let kernel_public = kernel_public.trim();
    vm.write_file(
        "/etc/wireguard/wga.conf",
        &format!(
            "[Interface]\nPrivateKey = {uri}\nAddress = 10.98.0.1/24\nListenPort = 51821\n\n\
             [Peer]\nPublicKey = {kernel_public}\nEndpoint = 10.99.0.2:51820\n\
             AllowedIPs = 10.98.0.2/32\n"
        ),
    );
    let up = vm.run(&format!(
        "{env} {}/wg-pkcs11 up /etc/wireguard/wga.conf",
        arm64::GUEST_DIR
    ));
    if !up.success() {
        vm.fail(&format!(
            "wg-pkcs11 up failed ({}):\n{}",
            up.status, up.output
        ));
    }
    let before = chip_counters(&vm);

    // The first ping starts the handshake; the guest is emulated, so it may take a few tries.
    let handshake = vm.run(
        "for i in $(seq 1 60); do ping -c 1 -W 1 10.98.0.2 >/dev/null 2>&1 && exit 0; done; exit 1",
    );
    if !handshake.success() {
        let state = vm.run("wg show all; ip netns exec peer wg show all; ip address");
        vm.fail(&format!(
            "no ping reply through the tunnel within 60 tries:\n{}",
            state.output
        ));
    }
    let after_handshake = chip_counters(&vm);
    let ecdhs = after_handshake.ecdh - before.ecdh;
    assert!(
        (1..=2).contains(&ecdhs),
        "the chip computed {ecdhs} ECDHs for one handshake; expected 1-2"
    );

    // Both ways, over the session the handshake made: no more chip operations.
    vm.run_ok("ping -c 3 -W 2 10.98.0.2");
    vm.run_ok("ip netns exec peer ping -c 3 -W 2 10.98.0.1");
    let kernel_side = vm.run_ok("ip netns exec peer wg show wgk latest-handshakes");
    let stamp: u64 = kernel_side
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(stamp > 0, "the kernel records no handshake: {kernel_side}");
    let daemon_side = vm.run_ok("wg show wga");
    assert!(
        daemon_side.contains(kernel_public) && daemon_side.contains("latest handshake"),
        "`wg show wga` (the daemon's UAPI) does not show the handshake:\n{daemon_side}"
    );
    let after_pings = chip_counters(&vm);
    assert_eq!(
        after_pings.ecdh, after_handshake.ecdh,
        "pings over an established session cost ECDHs"
    );

    vm.run_ok(&format!(
        "{env} {}/wg-pkcs11 down /etc/wireguard/wga.conf",
        arm64::GUEST_DIR
    ));
    let gone = vm.run("for i in $(seq 1 50); do ip link show wga >/dev/null 2>&1 || exit 0; sleep 0.2; done; exit 1");
    assert!(gone.success(), "wg-pkcs11 down left the interface wga");
    eprintln!(
        "arm64 guest: chip operations: {} key generation, {ecdhs} ECDH(s) for the handshake, \
         {} APDUs in all; the whole test took {:.1} s",
        after_genkey.keygen,
        after_pings.apdus,
        started.elapsed().as_secs_f64()
    );
}
