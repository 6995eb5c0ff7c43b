//! `wg-pkcs11 rotate` with the Linux kernel's WireGuard as the server (issue 12): the key in a
//! 30 ms virtual SE050, a ping every 10 ms through the tunnel, and the server updated in the
//! order of conf/wg-rotate-server, which runs as shipped in the guest's busybox sh.
//!
//! The hook and the check that rotate runs cannot reach the guest themselves (only this test
//! process holds the VM's channel), so each writes a request file and waits for this test to
//! answer: for the hook, the test runs conf/wg-rotate-server in the guest; for the check, the test
//! reads the kernel's `wg show` and the chip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::interop::Initiator;
use e2e_tests::kernel_vm::{HostKey, KernelTunnel, KernelVm, TunnelOptions};
use e2e_tests::process::Background;
use e2e_tests::{ping, poll_until, wg_pkcs11_binary};

/// The chip of the no-downtime rotation, as the issue measures it.
const ROTATION_CHIP_MS: u32 = 30;
/// Ping interval of the stream through the tunnel.
const PING_INTERVAL_MS: u64 = 10;
/// Length of the stream; the rotation runs in it (the guest is emulated, so it takes seconds).
const STREAM_SECONDS: u64 = 20;
/// One handshake's worth of pings, generously (1 s at 10 ms), as in tests/rotation.rs.
const MAX_LOST_PINGS: usize = 100;
/// How long the hook takes after the server step: 3 s of pings at 10 ms, three times MAX_LOST_PINGS.
const HOOK_TAIL: Duration = Duration::from_secs(3);
/// How long the hook and the check wait for this test to answer them.
const ANSWER_DEADLINE: Duration = Duration::from_secs(60);

/// A shell command that publishes `$WG_ROTATE_*` (and its own name) in `dir/NAME.request`, waits
/// for `dir/NAME.answer`, and exits with the status written there.
fn waiting_command(dir: &Path, name: &str, then: &str) -> String {
    let request = dir.join(format!("{name}.request"));
    let answer = dir.join(format!("{name}.answer"));
    format!(
        "set -eu; printf '%s %s\\n' \"$WG_ROTATE_OLD_PUBLIC_KEY\" \"$WG_ROTATE_NEW_PUBLIC_KEY\" \
         > {r}.tmp; mv {r}.tmp {r}; i=0; while [ ! -s {a} ]; do i=$((i+1)); \
         [ $i -gt {tries} ] && exit 1; sleep 0.05; done; [ \"$(cat {a})\" = ok ]{then}",
        r = request.display(),
        a = answer.display(),
        tries = ANSWER_DEADLINE.as_millis() / 50,
    )
}

/// Waits for `dir/NAME.request` while rotate runs; (old public key, new public key), or None if
/// rotate ended without running NAME.
fn wait_request(
    dir: &Path,
    name: &str,
    rotate: &std::thread::JoinHandle<Output>,
) -> Option<(String, String)> {
    let request = dir.join(format!("{name}.request"));
    poll_until(ANSWER_DEADLINE, || request.exists() || rotate.is_finished());
    let text = std::fs::read_to_string(&request).ok()?;
    let mut keys = text.split_whitespace().map(str::to_string);
    Some((keys.next()?, keys.next()?))
}

/// Fails with rotate's output: it ended without running `what`.
fn rotate_skipped(t: &KernelTunnel, what: &str, rotate: std::thread::JoinHandle<Output>) -> ! {
    let out = rotate.join().expect("the rotate thread panicked");
    t.fail(&format!(
        "rotate never ran its {what} ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn answer(dir: &Path, name: &str, ok: bool) {
    std::fs::write(
        dir.join(format!("{name}.answer")),
        if ok { "ok" } else { "no" },
    )
    .unwrap();
}

/// Whether the chip still holds the key labelled `label` (`wg-pkcs11 pubkey` finds it).
fn chip_has_key(t: &KernelTunnel, label: &str) -> bool {
    let mut command = Command::new(wg_pkcs11_binary());
    command.arg("pubkey").arg(t.token.key_uri(label));
    t.token.apply(&mut command);
    command.stdin(Stdio::null());
    command
        .output()
        .expect("cannot run wg-pkcs11 pubkey")
        .status
        .success()
}

/// Sequence numbers answered by `ping -n` (its log), and how many were sent.
fn answered_pings(log: &str) -> (std::collections::BTreeSet<u64>, u64) {
    let answered = log
        .lines()
        .filter_map(|l| l.split("icmp_seq=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect();
    let sent = log
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| l.split(" packets transmitted").next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ping summary in:\n{log}"));
    (answered, sent)
}

/// Where the interface's key URI is: the config's PrivateKey, or (an interface started by stock
/// wg-quick) the key file IFNAME.pkcs11 next to a config without PrivateKey.
#[derive(Clone, Copy, PartialEq)]
enum KeyUriIn {
    Config,
    KeyFile,
}

#[test]
fn rotate_with_the_kernel_as_server_under_a_ping_stream() {
    rotate_with_the_kernel(KeyUriIn::Config);
}

/// The wg-quick layout: rotate rewrites the key file (mode 0600 kept) and leaves the config.
#[test]
fn rotate_with_the_kernel_and_the_key_uri_in_a_key_file() {
    rotate_with_the_kernel(KeyUriIn::KeyFile);
}

/// The config without its PrivateKey line, and the key file IFNAME.pkcs11 (0600) with the URI.
fn move_key_uri_to_key_file(conf_path: &Path, uri: &str) -> (String, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let conf: String = std::fs::read_to_string(conf_path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("PrivateKey"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(conf_path, &conf).unwrap();
    let key_file = conf_path.with_extension("pkcs11");
    std::fs::write(&key_file, format!("# the device key\n{uri}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    (conf, key_file)
}

fn rotate_with_the_kernel(key_uri_in: KeyUriIn) {
    let vm = KernelVm::shared();
    let mut options = TunnelOptions::new(HostKey::Token, Initiator::WgPkcs11);
    options.token_latency_ms = ROTATION_CHIP_MS;
    let t = KernelTunnel::new(vm, options);
    t.handshake();
    let old_label = format!("wg-kernel-{}", t.k);
    let new_label = format!("wg-kernel-{}-new", t.k);
    let (host_ip, guest_ip) = (t.host_tunnel_ip(), t.guest_tunnel_ip());
    let conf_path: PathBuf = t.conf_path();
    let old_uri = t.token.key_uri(&old_label);
    let key_file =
        (key_uri_in == KeyUriIn::KeyFile).then(|| move_key_uri_to_key_file(&conf_path, &old_uri));
    vm.write_file(
        "/tmp/wg-rotate-server",
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/wg-rotate-server"),
        )
        .unwrap(),
    );

    // A ping every 10 ms from wg-pkcs11's side to the kernel, through the tunnel.
    let mut ping_command = t.host.ns.command("ping");
    ping_command.args([
        "-n",
        "-i",
        &format!("0.{PING_INTERVAL_MS:03}"),
        "-c",
        &(STREAM_SECONDS * 1000 / PING_INTERVAL_MS).to_string(),
        "-W",
        "1",
        &guest_ip,
    ]);
    let mut pings = Background::spawn("kernel-rotation-pings", ping_command, t.dir());
    std::thread::sleep(Duration::from_secs(2));

    // The check also proves, on the host, that the old key is still in the chip and the tunnel
    // carries traffic with the new one.
    let check = waiting_command(
        t.dir(),
        "check",
        &format!(
            "; {} pubkey '{old_uri}' >/dev/null; ping -n -c 1 -W 2 {guest_ip} >/dev/null",
            wg_pkcs11_binary().display()
        ),
    );
    let hook = waiting_command(t.dir(), "hook", "");
    let mut rotate = t.host.ns.command(wg_pkcs11_binary());
    rotate
        .arg("rotate")
        .arg(&t.daemon.ifname)
        .arg("--config")
        .arg(&conf_path)
        .args(["--label", &new_label, "--hook", &hook, "--check", &check])
        .args(["--timeout", "60"])
        .stdin(Stdio::null());
    t.token.apply(&mut rotate);
    let started = Instant::now();
    let rotate = std::thread::spawn(move || rotate.output().expect("cannot run wg-pkcs11 rotate"));

    // The hook: the server learns the new key the way conf/wg-rotate-server does it (a peer
    // without AllowedIPs now; the addresses move at its first handshake; then the old peer goes).
    let Some((old_public, new_public)) = wait_request(t.dir(), "hook", &rotate) else {
        rotate_skipped(&t, "hook", rotate)
    };
    assert_eq!(
        old_public, t.host_public,
        "the hook was given another old key"
    );
    // As sshd runs it: the forced command names the interface and the device's AllowedIPs, the
    // device's words (its new key) come in SSH_ORIGINAL_COMMAND.
    let server = vm.run(&format!(
        "SSH_ORIGINAL_COMMAND={new_public} sh /tmp/wg-rotate-server {} {host_ip}/32 60",
        t.guest.ifname
    ));
    eprintln!("wg-rotate-server in the guest: {}", server.output.trim());
    // A real hook returns some time after the server took the new key (its ssh session closes);
    // the order of wg-rotate-server keeps the device reachable meanwhile, and this wait makes a
    // hook that takes the addresses from the old key at once lose far more than the bound.
    std::thread::sleep(HOOK_TAIL);
    answer(t.dir(), "hook", server.success());

    // The check: rotate has switched and handshaked; the old key must still be in the chip while
    // the kernel has handshaked with the new key and given it the device's address.
    if wait_request(t.dir(), "check", &rotate).is_none() {
        rotate_skipped(&t, "check", rotate)
    }
    let mut handshaked = false;
    let moved = poll_until(Duration::from_secs(30), || {
        let dump = t.guest.dump();
        let new = dump.peer(&new_public);
        handshaked = new.is_some_and(|p| p.latest_handshake > 0);
        handshaked
            && dump.peer(&old_public).is_none()
            && new.is_some_and(|p| p.allowed_ips == [format!("{host_ip}/32")])
    });
    let old_key_kept = chip_has_key(&t, &old_label);
    answer(t.dir(), "check", moved && old_key_kept);
    let out = rotate.join().expect("the rotate thread panicked");
    let took = started.elapsed();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if !out.status.success() {
        t.fail(&format!(
            "rotate failed after {took:?}:\n{stdout}\n{stderr}"
        ));
    }
    eprintln!("rotate took {took:?}:\n{stderr}");
    if !handshaked || !moved {
        t.fail("the kernel never handshaked with the new key, or kept the old peer");
    }
    assert!(
        old_key_kept,
        "the old key was deleted before the kernel handshaked with the new one"
    );
    assert_eq!(
        stdout.trim(),
        new_public,
        "rotate printed another public key"
    );
    let mut at = 0;
    for step in [
        "running the hook",
        "interface switched to the new key",
        "handshake with every peer done",
        "the check passed",
        "old key deleted",
    ] {
        at += stderr[at..]
            .find(step)
            .unwrap_or_else(|| panic!("step `{step}` missing or out of order:\n{stderr}"));
    }

    // Afterwards: the old key is gone from the chip, the kernel knows only the new one, and
    // the tunnel carries traffic both ways.
    assert!(
        !chip_has_key(&t, &old_label),
        "the old key is still in the chip"
    );
    assert!(
        chip_has_key(&t, &new_label),
        "the new key is not in the chip"
    );
    let dump = t.guest.dump();
    let keys: Vec<&str> = dump.peers.iter().map(|p| p.public_key.as_str()).collect();
    if keys != [new_public.as_str()] {
        t.fail(&format!("the kernel's peers after the rotation: {keys:?}"));
    }
    if !pings.is_running() {
        t.fail("the ping stream ended before the rotation did: lengthen STREAM_SECONDS");
    }
    assert!(
        poll_until(Duration::from_secs(STREAM_SECONDS + 10), || !pings
            .is_running()),
        "the ping stream did not end"
    );
    let log = pings.log();
    let (answered, sent) = answered_pings(&log);
    let lost: Vec<u64> = (1..=sent).filter(|seq| !answered.contains(seq)).collect();
    eprintln!(
        "kernel server, {ROTATION_CHIP_MS} ms chip: {sent} pings every {PING_INTERVAL_MS} ms, {} \
         lost: {lost:?}",
        lost.len()
    );
    if lost.len() > MAX_LOST_PINGS {
        t.fail(&format!(
            "the rotation lost {} pings (more than one handshake's worth, {MAX_LOST_PINGS})",
            lost.len()
        ));
    }
    if !ping(&t.host.ns, &guest_ip, 3) || !vm.ping(&host_ip, 3) {
        t.fail("the tunnel does not carry pings both ways after the rotation");
    }
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    match key_file {
        None => assert!(conf.contains(&format!("object={new_label}")), "{conf}"),
        Some((conf_before, key_file)) => {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                conf, conf_before,
                "rotate changed a config without PrivateKey"
            );
            let text = std::fs::read_to_string(&key_file).unwrap();
            assert!(
                text.starts_with("# the device key\npkcs11:")
                    && text.contains(&format!("object={new_label}")),
                "the key file does not name the new key:\n{text}"
            );
            let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the key file's mode changed");
        }
    }
}
