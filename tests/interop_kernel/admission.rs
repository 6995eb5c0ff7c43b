//! Attested admission (issue 21) with the Linux kernel's WireGuard as the server: the device's
//! key in a virtual SE050, its evidence from `wg-pkcs11 attest` answering a nonce of the
//! server's `wg-pkcs11 nonce`, and `wg-pkcs11 admit` adding the device to the guest kernel's
//! interface only after verifying it (against the virtual chip's test root, `--root`).
//!
//! `admit` runs on the host with the server's nonce store, and its `wg` is a stand-in that hands
//! its arguments to this test, which runs the real `wg` with them in the guest (only this test
//! process holds the VM's channel) and returns its exit status: the `wg set` is the kernel's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use e2e_tests::interop::Initiator;
use e2e_tests::kernel_vm::{HostKey, KernelTunnel, KernelVm, TunnelOptions};
use e2e_tests::{ping, poll_until, wg_genkey, wg_pkcs11_binary, wg_pkcs11_genkey, VirtualToken};

/// How long `admit` may take, `wg` in the guest included.
const ADMIT_DEADLINE: Duration = Duration::from_secs(60);

/// The test root the virtual chip made for its attestation key (se050-sim).
fn chip_root(token: &VirtualToken) -> PathBuf {
    let mut name = token.state_path().as_os_str().to_owned();
    name.push(".attestation-root.pem");
    PathBuf::from(name)
}

fn wg_pkcs11(token: &VirtualToken, args: &[&str]) -> Output {
    let mut command = Command::new(wg_pkcs11_binary());
    command.args(args);
    token.apply(&mut command);
    command.output().expect("cannot run wg-pkcs11")
}

fn stdout_ok(token: &VirtualToken, args: &[&str]) -> String {
    let out = wg_pkcs11(token, args);
    assert!(
        out.status.success(),
        "wg-pkcs11 {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The server's side on the host: its nonce store and the stand-in for `wg`.
struct Server<'t> {
    t: &'t KernelTunnel,
    dir: tempfile::TempDir,
    /// Every `wg` command line admit ran (forwarded to the guest).
    wg_calls: std::cell::RefCell<Vec<String>>,
}

impl<'t> Server<'t> {
    fn new(t: &'t KernelTunnel) -> Server<'t> {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("wg");
        let (request, answer) = (dir.path().join("wg.request"), dir.path().join("wg.answer"));
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" > {r}.tmp; mv {r}.tmp {r}\n\
                 i=0; while [ ! -s {a} ]; do i=$((i+1)); [ $i -gt 1200 ] && exit 99; \
                 sleep 0.05; done\ncode=$(cat {a}); rm -f {a}; exit $code\n",
                r = request.display(),
                a = answer.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::create_dir(dir.path().join("nonces")).unwrap();
        Server {
            t,
            dir,
            wg_calls: Default::default(),
        }
    }

    fn nonce_dir(&self) -> String {
        self.dir.path().join("nonces").display().to_string()
    }

    /// `wg-pkcs11 nonce` on the server.
    fn nonce(&self) -> String {
        stdout_ok(&self.t.token, &["nonce", "--nonce-dir", &self.nonce_dir()])
            .trim()
            .to_string()
    }

    /// `wg-pkcs11 admit` on the server's interface; each `wg` it runs is run in the guest.
    fn admit(&self, evidence: &Path, nonce: &str, root: &Path) -> Output {
        let mut command = Command::new(wg_pkcs11_binary());
        command
            .args(["admit", &self.t.guest.ifname])
            .arg(evidence)
            .args(["--nonce", nonce, "--allowed-ips"])
            .arg(format!("{}/32", self.t.host_tunnel_ip()))
            .arg("--root")
            .arg(root)
            .args(["--nonce-dir", &self.nonce_dir()])
            .env("WG_PKCS11_WG", self.dir.path().join("wg"));
        let admit = std::thread::spawn(move || command.output().expect("cannot run admit"));
        let request = self.dir.path().join("wg.request");
        loop {
            poll_until(ADMIT_DEADLINE, || request.exists() || admit.is_finished());
            if !request.exists() {
                break;
            }
            let args = std::fs::read_to_string(&request)
                .unwrap()
                .trim()
                .to_string();
            std::fs::remove_file(&request).unwrap();
            let quoted: Vec<String> = args.split(' ').map(|w| format!("'{w}'")).collect();
            let ran = self.t.vm.run(&format!("wg {}", quoted.join(" ")));
            self.wg_calls.borrow_mut().push(args);
            std::fs::write(self.dir.path().join("wg.answer"), ran.status.to_string()).unwrap();
        }
        admit.join().expect("the admit thread panicked")
    }
}

/// The device's evidence for the key at `uri` answering `nonce`, in a file.
fn attest(token: &VirtualToken, uri: &str, nonce: &str) -> PathBuf {
    let evidence = stdout_ok(token, &["attest", uri, "--nonce", nonce]);
    let path = token.dir().join(format!("evidence-{nonce}.json"));
    std::fs::write(&path, evidence).unwrap();
    path
}

fn guest_peers(t: &KernelTunnel) -> Vec<String> {
    t.guest
        .dump()
        .peers
        .iter()
        .map(|p| p.public_key.clone())
        .collect()
}

fn refused(t: &KernelTunnel, out: &Output, what: &str, reason: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        t.fail(&format!(
            "admit accepted {what}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    if !stderr.contains(reason) {
        t.fail(&format!(
            "admit refused {what} without naming `{reason}`: {stderr}"
        ));
    }
    eprintln!("{what}: {}", stderr.trim());
}

/// The kernel admits the device only after its evidence verifies, and the tunnel then works;
/// evidence from another chip, a replayed nonce and a software key are refused, with the
/// kernel's peer list unchanged.
#[test]
fn the_kernel_admits_a_device_only_with_verified_evidence() {
    let vm = KernelVm::shared();
    let t = KernelTunnel::new(vm, TunnelOptions::new(HostKey::Token, Initiator::WgPkcs11));
    // The server starts without the device: admit adds it.
    t.guest.set(&format!("peer {} remove", t.host_public));
    if !guest_peers(&t).is_empty() {
        t.fail("the guest's interface still has a peer");
    }
    let server = Server::new(&t);
    let root = chip_root(&t.token);
    let label = format!("wg-kernel-{}", t.k);
    let uri = t.token.key_uri(&label);

    // A key of another chip (its own test root, not the configured one): refused.
    let other = VirtualToken::new(0);
    wg_pkcs11_genkey(&other, "wg-other");
    let nonce = server.nonce();
    let foreign = attest(&other, &other.key_uri("wg-other"), &nonce);
    refused(
        &t,
        &server.admit(&foreign, &nonce, &root),
        "another chip's evidence",
        "untrusted chain",
    );

    // A software key (base64 in the config) has no chip to attest it: no evidence at all.
    let (software_private, _) = wg_genkey();
    let nonce = server.nonce();
    let out = wg_pkcs11(&t.token, &["attest", &software_private, "--nonce", &nonce]);
    if out.status.success() {
        t.fail("`attest` produced evidence for a software key");
    }
    let why = String::from_utf8_lossy(&out.stderr);
    if !why.contains("a software key") {
        t.fail(&format!(
            "`attest` refused a software key without saying so: {why}"
        ));
    }
    eprintln!("software key: {}", why.trim());
    if !server.wg_calls.borrow().is_empty() || !guest_peers(&t).is_empty() {
        t.fail(&format!(
            "refused evidence changed the kernel's peers ({:?})",
            server.wg_calls.borrow()
        ));
    }

    // The device's own evidence: admitted, and the tunnel comes up.
    let nonce = server.nonce();
    let evidence = attest(&t.token, &uri, &nonce);
    let out = server.admit(&evidence, &nonce, &root);
    if !out.status.success() {
        t.fail(&format!(
            "admit refused the device: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let report = String::from_utf8_lossy(&out.stdout);
    if report.lines().next() != Some(t.host_public.as_str()) || !report.contains("origin ok") {
        t.fail(&format!("admit's report:\n{report}"));
    }
    if guest_peers(&t) != [t.host_public.clone()] {
        t.fail(&format!(
            "after admit the kernel lists {:?}",
            guest_peers(&t)
        ));
    }
    t.handshake();
    if !ping(&t.host.ns, &t.guest_tunnel_ip(), 3) || !vm.ping(&t.host_tunnel_ip(), 3) {
        t.fail("ping through the admitted tunnel failed");
    }

    // The same evidence and nonce again: refused, `wg` not run again.
    t.guest.set(&format!("peer {} remove", t.host_public));
    refused(
        &t,
        &server.admit(&evidence, &nonce, &root),
        "a replayed nonce",
        "already used",
    );
    if server.wg_calls.borrow().len() != 1 || !guest_peers(&t).is_empty() {
        t.fail(&format!(
            "a replay reached the kernel ({:?})",
            server.wg_calls.borrow()
        ));
    }
}
