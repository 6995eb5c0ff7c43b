//! Issue 23 part 4: the unit under systemd as PID 1. A Debian 12 guest (amd64, KVM when it works)
//! boots systemd from a root file system made with mmdebstrap (tests/support/guests/
//! systemd_vm.rs); the project's .deb (scripts/package, or `WG_PKCS11_DEB`) is installed with
//! dpkg, the virtual SE050 gets a user PIN and a key, the guest kernel's WireGuard in a second
//! namespace is the peer, and `systemctl start wg-pkcs11@wg0` runs the unit as shipped, with a
//! drop-in that adds only `LoadCredential=pin:...` (and a shorter start timeout):
//!
//! - `LoadCredential=` delivers the PIN: the key's URI names no PIN, the unit starts;
//! - `Type=notify`: `systemctl start` returns once the interface is up with its address;
//!   `systemctl reload` applies a config change in the same process, the session kept (no new
//!   handshake, no chip operation);
//! - the journal shows the handshake lines;
//! - `systemctl stop` removes the interface;
//! - a wrong PIN stops the unit with exit status 77 and no restart (the unit is `failed`, not
//!   `auto-restart`; NRestarts=0).
//!
//! Needs root, qemu-system-x86_64 and mmdebstrap; fails when any is missing.

use std::path::PathBuf;
use std::process::Command;

use e2e_tests::guests::{self, systemd_vm, Machine};

const SO_PIN: &str = "87654321";
const USER_PIN: &str = "24681357";
const WRONG_PIN: &str = "97531864";
const STATE: &str = "/var/lib/pkcs11-se050/se050.state";
const UNIT: &str = "wg-pkcs11@wg0";
const MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libpkcs11_se050.so";
const KEY_URI: &str = "pkcs11:token=SE050;object=wg0-key?module-name=pkcs11-se050";

/// The .deb under test: `WG_PKCS11_DEB`, else what scripts/package builds (as
/// tests/debian_package.rs does; after scripts/test's release build it builds nothing).
fn deb() -> PathBuf {
    if let Some(path) = std::env::var_os("WG_PKCS11_DEB") {
        return PathBuf::from(path);
    }
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(workspace.join("scripts/package"))
        .current_dir(workspace)
        .output()
        .expect("cannot run scripts/package");
    assert!(
        out.status.success(),
        "scripts/package failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    workspace.join(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("scripts/package printed no file name")
            .trim(),
    )
}

/// `systemctl show -p NAME` values of the unit.
fn show(vm: &Machine, property: &str) -> String {
    vm.run_ok(&format!("systemctl show -p {property} --value {UNIT}"))
        .trim()
        .to_string()
}

fn journal(vm: &Machine) -> String {
    vm.run_ok(&format!("journalctl -u {UNIT} -o cat --no-pager"))
}

/// The kernel peer's latest handshake with wg-pkcs11 (seconds since the epoch; 0: none).
fn kernel_handshake(vm: &Machine) -> u64 {
    vm.run_ok("ip netns exec peer wg show wgk latest-handshakes")
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn wg0_conf(kernel_public: &str, extra: &str) -> String {
    format!(
        "[Interface]\nPrivateKey = {KEY_URI}\nAddress = 10.98.0.1/24\nListenPort = 51821\n\n\
         [Peer]\nPublicKey = {kernel_public}\nEndpoint = 10.99.0.2:51820\n\
         AllowedIPs = 10.98.0.2/32\n{extra}"
    )
}

/// How long each step took, for the log (where the time goes under emulation).
struct Steps {
    last: std::time::Instant,
    done: Vec<(&'static str, f64)>,
}

impl Steps {
    fn new() -> Steps {
        Steps {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }

    fn done(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((name, (now - self.last).as_secs_f64()));
        self.last = now;
    }

    fn summary(&self) -> String {
        self.done
            .iter()
            .map(|(name, secs)| format!("{name} {secs:.1} s"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[test]
fn the_unit_under_systemd_pin_credential_notify_reload_journal_stop_and_a_wrong_pin() {
    let started = std::time::Instant::now();
    let deb = deb();
    let data = tempfile::tempdir().unwrap();
    std::fs::copy(&deb, data.path().join("wg-pkcs11.deb"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", deb.display()));
    let mut steps = Steps::new();
    let vm = systemd_vm::boot(data.path());
    let pid1 = vm.run_ok("cat /proc/1/comm");
    assert_eq!(pid1.trim(), "systemd", "PID 1 is not systemd");

    steps.done("booted");
    // The package, a virtual SE050 with a user PIN, and a key made with that PIN.
    vm.run_ok("set -e; mkdir -p /mnt/test; mount -o ro /dev/vdb /mnt/test; dpkg -i /mnt/test/wg-pkcs11.deb");
    vm.write_file(
        "/etc/pkcs11-se050/pkcs11-se050.toml",
        &format!(
            "transport = \"virtual\"\nvirtual_state = \"{STATE}\"\nvirtual_latency_ms = 30\n\
             pin_max_attempts = 3\n"
        ),
    );
    vm.run_ok(&format!(
        "set -e; mkdir -p /var/lib/pkcs11-se050
         pkcs11-tool --module {MODULE} --init-token --label SE050 --so-pin {SO_PIN}
         pkcs11-tool --module {MODULE} --init-pin --login --so-pin {SO_PIN} --pin {USER_PIN}"
    ));
    vm.write_file("/root/genkey.pin", &format!("{USER_PIN}\n"));
    let genkey = vm.run_ok(&format!(
        "wg-pkcs11 genkey '{KEY_URI}&pin-source=/root/genkey.pin'"
    ));
    let public = genkey.lines().last().unwrap_or_default().trim().to_string();
    assert_eq!(public.len(), 44, "genkey printed no public key: {genkey}");

    steps.done("dpkg -i, token, key");
    // The peer: the guest kernel's WireGuard in namespace `peer`, over a veth pair.
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
         wg genkey > /root/kernel.key
         ip -n peer link add wgk type wireguard
         ip netns exec peer wg set wgk private-key /root/kernel.key listen-port 51820 \
             peer {public} allowed-ips 10.98.0.1/32
         ip -n peer address add 10.98.0.2/24 dev wgk
         ip -n peer link set wgk up
         wg pubkey < /root/kernel.key"
    ));
    let kernel_public = kernel_public.trim().to_string();

    steps.done("kernel peer");
    // The unit as shipped, plus the PIN as a credential (the URI names none) and a start
    // timeout short enough that a missing READY=1 fails the test quickly.
    vm.write_file("/etc/wireguard/wg0.conf", &wg0_conf(&kernel_public, ""));
    vm.write_file("/etc/wireguard/wg0.pin", &format!("{USER_PIN}\n"));
    vm.write_file(
        &format!("/etc/systemd/system/{UNIT}.service.d/test.conf"),
        "[Service]\nLoadCredential=pin:/etc/wireguard/wg0.pin\nTimeoutStartSec=30\n",
    );
    vm.run_ok("systemctl daemon-reload");

    // Type=notify: when `systemctl start` returns, the interface is up with its address.
    let start = vm.run_with_timeout(
        &format!("systemctl start {UNIT}; rc=$?; ip -brief address show wg0; exit $rc"),
        std::time::Duration::from_secs(120),
    );
    if !start.success() {
        vm.fail(&format!(
            "systemctl start {UNIT} failed ({}):\n{}\n--- its status and journal:\n{}",
            start.status,
            start.output,
            vm.run(&format!(
                "systemctl status --no-pager {UNIT}; journalctl -u {UNIT} --no-pager"
            ))
            .output
        ));
    }
    assert!(
        start.output.contains("10.98.0.1/24"),
        "systemctl start returned before wg0 had its address (READY=1 too early?):\n{}",
        start.output
    );
    assert_eq!(show(&vm, "ActiveState"), "active");
    assert_eq!(show(&vm, "SubState"), "running");
    let main_pid = show(&vm, "MainPID");

    steps.done("systemctl start");
    // The handshake (the PIN came from the credential: the key needs it), pings both ways.
    let before = guests::chip_counters(&vm, STATE);
    let ping = vm.run(
        "for i in $(seq 1 30); do ping -c 1 -W 1 10.98.0.2 >/dev/null 2>&1 && exit 0; done; exit 1",
    );
    if !ping.success() {
        vm.fail(&format!(
            "no ping reply through the tunnel:\n{}\n{}",
            vm.run("wg show all; ip netns exec peer wg show all").output,
            journal(&vm)
        ));
    }
    vm.run_ok("ip netns exec peer ping -c 2 -W 2 10.98.0.1");
    let handshake = kernel_handshake(&vm);
    assert!(handshake > 0, "the kernel peer records no handshake");
    let after_handshake = guests::chip_counters(&vm, STATE);
    assert!(
        (1..=2).contains(&(after_handshake.ecdh - before.ecdh)),
        "{} ECDHs for one handshake",
        after_handshake.ecdh - before.ecdh
    );

    steps.done("handshake, pings");
    // The journal shows the handshake (the daemon's watcher logs it within a second or so).
    let logged = vm.run(&format!(
        "for i in $(seq 1 50); do journalctl -u {UNIT} -o cat --no-pager | \
         grep -q 'handshake completed' && exit 0; sleep 0.2; done; exit 1"
    ));
    assert!(
        logged.success(),
        "the journal has no handshake line:\n{}",
        journal(&vm)
    );

    steps.done("journal");
    // Reload: the peer gets a persistent keepalive; same process, the session kept (no new
    // handshake, no chip operation).
    vm.write_file(
        "/etc/wireguard/wg0.conf",
        &wg0_conf(&kernel_public, "PersistentKeepalive = 25\n"),
    );
    vm.run_ok(&format!("systemctl reload {UNIT}"));
    let applied = vm.run(
        "for i in $(seq 1 50); do wg show wg0 persistent-keepalive | grep -q '\\b25$' && exit 0; \
         sleep 0.2; done; exit 1",
    );
    assert!(
        applied.success(),
        "systemctl reload did not apply the keepalive:\n{}\n{}",
        vm.run("wg show wg0").output,
        journal(&vm)
    );
    assert_eq!(
        show(&vm, "MainPID"),
        main_pid,
        "reload restarted the daemon"
    );
    assert_eq!(show(&vm, "ActiveState"), "active");
    vm.run_ok("ping -c 2 -W 2 10.98.0.2");
    assert_eq!(
        kernel_handshake(&vm),
        handshake,
        "the reload cost a new handshake (the session was not kept)"
    );
    assert_eq!(
        guests::chip_counters(&vm, STATE).ecdh,
        after_handshake.ecdh,
        "the reload cost chip operations"
    );

    steps.done("reload");
    // Stop: the interface goes.
    vm.run_ok(&format!("systemctl stop {UNIT}"));
    assert_eq!(show(&vm, "ActiveState"), "inactive");
    let gone = vm.run("ip link show wg0");
    assert!(
        !gone.success(),
        "systemctl stop left the interface:\n{}",
        gone.output
    );

    steps.done("stop");
    // A wrong PIN: exit status 77 and no restart. systemd decides at the exit: a restart to come
    // shows as SubState=auto-restart, none as failed.
    vm.write_file("/etc/wireguard/wg0.pin", &format!("{WRONG_PIN}\n"));
    let refused = vm.run_with_timeout(
        &format!("systemctl start {UNIT}"),
        std::time::Duration::from_secs(120),
    );
    assert!(!refused.success(), "the unit started with a wrong PIN");
    let state = vm.run_ok(&format!(
        "systemctl show -p ActiveState,SubState,Result,ExecMainStatus,NRestarts {UNIT}"
    ));
    for expected in [
        "ActiveState=failed",
        "SubState=failed",
        "Result=exit-code",
        "ExecMainStatus=77",
        "NRestarts=0",
    ] {
        assert!(
            state.lines().any(|l| l.trim() == expected),
            "after a wrong PIN, expected {expected}:\n{state}\n{}",
            journal(&vm)
        );
    }
    assert!(
        !vm.run("ip link show wg0").success(),
        "a refused start left the interface"
    );
    steps.done("wrong PIN");
    eprintln!(
        "systemd guest: the whole test took {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        steps.summary()
    );
}
