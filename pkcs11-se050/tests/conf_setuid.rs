//! A setuid program does not take its configuration from its caller's environment.
//!
//! The module's tool, copied setuid-root and run as `nobody` with `$PKCS11_SE050_CONF` naming a
//! file of the caller's: the kernel sets AT_SECURE, the module ignores the variable (saying so)
//! and so neither trusts that file nor quotes it in an error. Needs root (chown, setuid): it
//! fails, never skips, without it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

const NOBODY: u32 = 65534;

#[test]
fn a_setuid_program_ignores_pkcs11_se050_conf() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The caller's file: a line whose words would show up in a parse error.
    let theirs = dir.path().join("callers.toml");
    std::fs::write(&theirs, "first-word-of-a-secret = 1\n").unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).expect("the tests run as root");

    let tool = dir.path().join("pkcs11-se050-tool");
    std::fs::copy(env!("CARGO_BIN_EXE_pkcs11-se050-tool"), &tool).unwrap();
    std::os::unix::fs::chown(&tool, Some(0), Some(0)).unwrap();
    let run = |mode: u32| {
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = Command::new(&tool)
            .arg("scp03-rotate")
            .env("PKCS11_SE050_CONF", &theirs)
            .env("PKCS11_SE050_LOG", "warn")
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    // Not setuid: the caller's configuration is the caller's business, and is used.
    let plain = run(0o755);
    assert!(plain.contains("callers.toml"), "{plain}");
    // Setuid root: ignored, with the reason; the system configuration (or none) instead.
    let setuid = run(0o4755);
    assert!(
        setuid.contains("PKCS11_SE050_CONF") && setuid.contains("AT_SECURE"),
        "{setuid}"
    );
    assert!(
        !setuid.contains("callers.toml") && !setuid.contains("first-word"),
        "{setuid}"
    );
}
