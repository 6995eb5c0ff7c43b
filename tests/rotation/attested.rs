//! Rotation with evidence (issue 21): with `WG_ROTATE_ATTEST_NONCE_CMD` (here the server's
//! `wg-pkcs11 nonce`), `rotate` attests the new key and its hook gets `WG_ROTATE_EVIDENCE` and
//! `WG_ROTATE_NONCE`. The hook verifies them with `verify-attestation` against the virtual chip's
//! test root before it registers the key (the shipped hook, as in the other rotation tests); a
//! verification that fails makes the hook fail and the rotation roll back.

use std::path::PathBuf;

use e2e_tests::interop::HANDSHAKE_TIMEOUT;
use e2e_tests::topology::B_TUNNEL;
use e2e_tests::*;

use super::{hook_command, rotation_setup, RotationSetup, ROTATION_CHIP_MS};

/// The test root the virtual chip made for its attestation key (se050-sim).
fn chip_root(token: &VirtualToken) -> PathBuf {
    let mut name = token.state_path().as_os_str().to_owned();
    name.push(".attestation-root.pem");
    PathBuf::from(name)
}

/// A hook that verifies the new key's evidence (answering `nonce`, the server's nonce store
/// `nonces`) and that it attests the new public key, then runs the shipped hook.
fn verifying_hook(s: &RotationSetup, nonces: &std::path::Path, nonce: &str) -> String {
    format!(
        "v=$({bin} verify-attestation \"$WG_ROTATE_EVIDENCE\" --nonce {nonce} --root {root} \
         --nonce-dir {dir}) && [ \"$(printf '%s\\n' \"$v\" | head -n 1)\" = \
         \"$WG_ROTATE_NEW_PUBLIC_KEY\" ] && echo \"hook verified: $v\" >&2 && {hook}",
        bin = wg_pkcs11_binary().display(),
        root = chip_root(&s.token).display(),
        dir = nonces.display(),
        hook = hook_command(s),
    )
}

/// `rotate --hook HOOK` with the server's `wg-pkcs11 nonce` as WG_ROTATE_ATTEST_NONCE_CMD;
/// (success, stderr).
fn rotate_attested(
    s: &RotationSetup,
    nonces: &std::path::Path,
    label: &str,
    hook: &str,
) -> (bool, String) {
    let mut command = s.net.a.command(wg_pkcs11_binary());
    command
        .args(["rotate", &s.client.ifname, "--config"])
        .arg(&s.conf_path)
        .args(["--label", label, "--hook", hook, "--timeout", "10"])
        .env(
            "WG_ROTATE_ATTEST_NONCE_CMD",
            format!(
                "{} nonce --nonce-dir {}",
                wg_pkcs11_binary().display(),
                nonces.display()
            ),
        );
    s.token.apply(&mut command);
    command.stdin(std::process::Stdio::null());
    let out = command.output().expect("cannot run wg-pkcs11 rotate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_hook_verifies_the_new_keys_evidence_and_the_rotation_succeeds() {
    let s = rotation_setup("ratt", ROTATION_CHIP_MS, 1);
    let nonces = tempfile::tempdir().unwrap();
    let hook = verifying_hook(&s, nonces.path(), "\"$WG_ROTATE_NONCE\"");
    let (ok, stderr) = rotate_attested(&s, nonces.path(), "wg-attested", &hook);
    assert!(ok, "rotate failed:\n{stderr}");
    let new_public = wg_pkcs11_pubkey(&s.token, "wg-attested");
    assert!(
        stderr.contains(&format!("hook verified: {new_public}")) && stderr.contains("origin ok"),
        "{stderr}"
    );
    assert!(
        std::fs::read_to_string(&s.conf_path)
            .unwrap()
            .contains("wg-attested"),
        "the config does not name the new key"
    );
    ping_until_reply(&s.net.a, B_TUNNEL, HANDSHAKE_TIMEOUT);
    assert!(
        s.servers[0].peer.dump().peer(&new_public).is_some(),
        "the server does not know the new key"
    );
}

#[test]
fn a_hook_whose_verification_fails_rolls_the_rotation_back() {
    let s = rotation_setup("ratf", ROTATION_CHIP_MS, 1);
    let before = std::fs::read_to_string(&s.conf_path).unwrap();
    let nonces = tempfile::tempdir().unwrap();
    // Another nonce of the same server than the one the chip answered.
    let out = std::process::Command::new(wg_pkcs11_binary())
        .args(["nonce", "--nonce-dir"])
        .arg(nonces.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let wrong = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let hook = verifying_hook(&s, nonces.path(), &wrong);
    let (ok, stderr) = rotate_attested(&s, nonces.path(), "wg-unverified", &hook);
    assert!(
        !ok,
        "rotate succeeded with evidence the hook could not verify:\n{stderr}"
    );
    assert!(stderr.contains("refused: freshness"), "{stderr}");
    assert!(
        stderr.contains("the new key `wg-unverified` was deleted"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&s.conf_path).unwrap(), before);
    assert_eq!(wg_pkcs11_pubkey(&s.token, "wg-2025"), s.old_public);
    assert!(
        s.servers[0].peer.dump().peer(&s.old_public).is_some(),
        "the server lost the old key"
    );
    assert!(
        ping(&s.net.a, B_TUNNEL, 2),
        "the tunnel broke after the refused rotation"
    );
}
