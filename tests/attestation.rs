//! Attestation end to end (issue 21): a key generated in the (virtual) chip through the module,
//! its evidence through PKCS#11 (`wg-pkcs11 attest`, the vendor mechanism CKM_SE050_ATTEST,
//! directly and through p11-kit's proxy), verified by `wg-pkcs11 verify-attestation` against
//! the virtual chip's own test root (given explicitly), with single-use nonces; refused
//! against NXP's roots, on a reused or wrong nonce; `admit` adds the peer with `wg set` only
//! after verifying. Needs the virtual chip's attested read (se050-sim, helper "ecchip").

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e_tests::*;

const P11_KIT_PROXY: &str = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";

fn wg(token: &VirtualToken, args: &[&str]) -> Output {
    let mut command = Command::new(wg_pkcs11_binary());
    command.args(args);
    token.apply(&mut command);
    command.output().expect("cannot run wg-pkcs11")
}

fn ok(token: &VirtualToken, args: &[&str]) -> String {
    let out = wg(token, args);
    assert!(
        out.status.success(),
        "wg-pkcs11 {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(token: &VirtualToken, args: &[&str]) -> String {
    let out = wg(token, args);
    assert!(!out.status.success(), "wg-pkcs11 {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The test root the virtual chip made with its attestation key (se050-sim: `<state>.attestation-root.pem`).
fn chip_root(token: &VirtualToken) -> PathBuf {
    let mut name = token.state_path().as_os_str().to_owned();
    name.push(".attestation-root.pem");
    PathBuf::from(name)
}

struct Server {
    nonces: tempfile::TempDir,
}

impl Server {
    fn new() -> Server {
        Server {
            nonces: tempfile::tempdir().unwrap(),
        }
    }
    fn dir(&self) -> &str {
        self.nonces.path().to_str().unwrap()
    }
    fn nonce(&self, token: &VirtualToken) -> String {
        ok(token, &["nonce", "--nonce-dir", self.dir()])
            .trim()
            .to_string()
    }
    /// `wg-pkcs11 verify-attestation`'s arguments for `evidence` answered to `nonce`, against
    /// this server's nonces, trusting `root` (None: NXP's roots only).
    fn verify_args<'a>(
        &'a self,
        evidence: &'a Path,
        nonce: &'a str,
        root: Option<&'a Path>,
    ) -> Vec<&'a str> {
        let mut args = vec![
            "verify-attestation",
            evidence.to_str().unwrap(),
            "--nonce",
            nonce,
        ];
        if let Some(root) = root {
            args.extend(["--root", root.to_str().unwrap()]);
        }
        args.extend(["--nonce-dir", self.dir()]);
        args
    }
}

fn attest(token: &VirtualToken, uri: &str, nonce: &str, dir: &Path) -> PathBuf {
    let evidence = ok(token, &["attest", uri, "--nonce", nonce]);
    let path = dir.join(format!("evidence-{nonce}.json"));
    std::fs::write(&path, evidence).unwrap();
    path
}

#[test]
fn a_generated_key_is_attested_verified_once_and_only_under_its_root() {
    let token = VirtualToken::new(0);
    let server = Server::new();
    let public = wg_pkcs11_genkey(&token, "wg-attested");
    let uri = token.key_uri("wg-attested");
    let root = chip_root(&token);

    let nonce = server.nonce(&token);
    let evidence = attest(&token, &uri, &nonce, token.dir());
    let verified = ok(&token, &server.verify_args(&evidence, &nonce, Some(&root)));
    let mut lines = verified.lines();
    assert_eq!(lines.next(), Some(public.as_str()), "{verified}");
    assert!(verified.contains("chip-id "), "{verified}");
    assert!(verified.contains("origin ok"), "{verified}");

    // The same nonce again: used up.
    let again = refused(&token, &server.verify_args(&evidence, &nonce, Some(&root)));
    assert!(again.contains("already used"), "{again}");

    // Another issued nonce than the one the chip answered.
    let other = server.nonce(&token);
    let wrong = refused(&token, &server.verify_args(&evidence, &other, Some(&root)));
    assert!(wrong.contains("freshness"), "{wrong}");

    // Without --root only NXP's root is trusted: the virtual chip's is not.
    let nonce = server.nonce(&token);
    let evidence = attest(&token, &uri, &nonce, token.dir());
    let nxp = refused(&token, &server.verify_args(&evidence, &nonce, None));
    assert!(nxp.contains("untrusted chain"), "{nxp}");
}

#[test]
fn a_pin_protected_key_is_attested_with_key_agreement_only_in_the_pin_session() {
    let token = VirtualToken::new(0);
    let server = Server::new();
    let init = Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module_path())
        .args(["--init-token", "--label", "SE050", "--so-pin", "87654321"])
        .args(["--init-pin", "--pin", "123456"])
        .env("PKCS11_SE050_CONF", token.conf_path())
        .output()
        .expect("pkcs11-tool (opensc)");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let uri = format!("{}&pin-value=123456", token.key_uri("wg-pin"));
    let public = ok(&token, &["genkey", &uri]).trim().to_string();
    let nonce = server.nonce(&token);
    let evidence = attest(&token, &uri, &nonce, token.dir());
    let root = chip_root(&token);
    let verified = ok(&token, &server.verify_args(&evidence, &nonce, Some(&root)));
    assert!(verified.starts_with(&public), "{verified}");
    assert!(
        verified.contains("key agreement only in the session of 7AFF0001"),
        "{verified}"
    );
}

#[test]
fn attestation_through_p11_kit_proxy_and_admission_with_wg_set() {
    let token = VirtualToken::new(0);
    let server = Server::new();
    let registered = RegisteredModule::install();
    let public = wg_pkcs11_genkey(&token, "wg-proxy");
    let uri = token.key_uri_via("wg-proxy", Path::new(P11_KIT_PROXY));
    let nonce = server.nonce(&token);
    let evidence = attest(&token, &uri, &nonce, token.dir());
    drop(registered);

    // `admit` with a stand-in `wg` that records its arguments (the kernel test runs the real
    // one): called only after the evidence verified.
    let log = token.dir().join("wg-calls");
    let fake_wg = token.dir().join("fake-wg");
    std::fs::write(
        &fake_wg,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &fake_wg,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let admit = |nonce: &str| {
        let mut command = Command::new(wg_pkcs11_binary());
        command
            .args(["admit", "wg0", evidence.to_str().unwrap(), "--nonce", nonce])
            .args(["--allowed-ips", "10.9.0.2/32", "--root"])
            .arg(chip_root(&token))
            .args(["--nonce-dir", server.dir()])
            .env("WG_PKCS11_WG", &fake_wg);
        command.output().unwrap()
    };
    let out = admit(&nonce);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.trim(),
        format!("set wg0 peer {public} allowed-ips 10.9.0.2/32")
    );
    // Replayed: refused, and `wg` is not called again.
    let out = admit(&nonce);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&log).unwrap(), calls);
}

/// Installs a p11-kit module file for the built .so and removes it when dropped (as in
/// pkcs11_tool.rs).
struct RegisteredModule {
    path: PathBuf,
}

impl RegisteredModule {
    fn install() -> RegisteredModule {
        let dir = Path::new("/etc/pkcs11/modules");
        std::fs::create_dir_all(dir).expect("this test writes /etc/pkcs11/modules: run as root");
        let path = dir.join(format!("pkcs11-se050-attest-{}.module", std::process::id()));
        std::fs::write(&path, format!("module: {}\n", module_path().display())).unwrap();
        RegisteredModule { path }
    }
}

impl Drop for RegisteredModule {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn attestation_under_platform_scp03() {
    use std::os::unix::fs::PermissionsExt;
    let token = VirtualToken::new(0);
    let server = Server::new();
    // A chip that requires Platform SCP03 with NXP's SE050C2 development keys, and the
    // module's key file with the same keys (as tests/pkcs11_scp03.rs).
    let keys = pkcs11_se050::scp03::StaticKeys::published("SE050C2").unwrap();
    let key_file = token.dir().join("scp.keys");
    std::fs::write(&key_file, keys.to_file_text().as_bytes()).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut conf = std::fs::read_to_string(token.conf_path()).unwrap();
    conf.push_str("virtual_scp03_required = true\nscp03_keys = \"scp.keys\"\n");
    std::fs::write(token.conf_path(), conf).unwrap();

    let public = wg_pkcs11_genkey(&token, "wg-scp");
    let nonce = server.nonce(&token);
    let evidence = attest(&token, &token.key_uri("wg-scp"), &nonce, token.dir());
    let verified = ok(
        &token,
        &server.verify_args(&evidence, &nonce, Some(&chip_root(&token))),
    );
    assert!(verified.starts_with(&public), "{verified}");
}

/// Keys that cannot prove they live in the configured chip, each refused with its own reason:
/// a software key (a config's base64 PrivateKey) gets no evidence at all, and a key of another
/// chip, whose attestation chain ends at that chip's root, not the configured one, is refused
/// as an untrusted chain naming that chip's attestation certificate. (SoftHSM, the other token
/// at hand, cannot hold an X25519 key, so "a token without CKM_SE050_ATTEST" has no key to try.)
#[test]
fn keys_that_cannot_prove_where_they_live_are_refused_with_their_reason() {
    let token = VirtualToken::new(0);
    let other = VirtualToken::new(0);
    let server = Server::new();
    wg_pkcs11_genkey(&other, "wg-elsewhere");
    wg_pkcs11_genkey(&token, "wg-here"); // the configured chip, with its test root

    let nonce = server.nonce(&token);
    let (software_private, _) = wg_genkey();
    let software = refused(&token, &["attest", &software_private, "--nonce", &nonce]);
    assert!(
        software.contains("a software key") && software.contains("cannot be attested"),
        "{software}"
    );

    let evidence = attest(&other, &other.key_uri("wg-elsewhere"), &nonce, other.dir());
    let foreign = refused(
        &token,
        &server.verify_args(&evidence, &nonce, Some(&chip_root(&token))),
    );
    assert!(
        foreign.contains("refused: untrusted chain")
            && foreign.contains("leads to no configured root"),
        "{foreign}"
    );
    // The same evidence is sound under its own chip's root: what failed is only where it leads.
    let nonce = server.nonce(&token);
    let evidence = attest(&other, &other.key_uri("wg-elsewhere"), &nonce, other.dir());
    ok(
        &token,
        &server.verify_args(&evidence, &nonce, Some(&chip_root(&other))),
    );
}
