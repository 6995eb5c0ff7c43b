//! Fail closed: without a configuration file the module means the real SE050 on /dev/i2c-1 at
//! 0x48. On a machine without that chip (this one) every tool fails with an error naming the
//! configuration file looked for and the device, and no key is ever written to a file: the
//! virtual chip, whose keys are a copyable file, is used only when a file asks for it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e_tests::{module_path, wg_pkcs11_binary};

const SYSTEM_CONF: &str = "/etc/pkcs11-se050/pkcs11-se050.toml";
const DEFAULT_DEVICE: &str = "/dev/i2c-1";
/// Where the virtual chip kept its state by default for root (before this fix, the fallback).
const ROOT_STATE_DIR: &str = "/var/lib/pkcs11-se050";

/// The tests are about a machine without an SE050: say so loudly if this one has one, instead
/// of passing for the wrong reason.
fn require_no_chip() {
    assert!(
        !Path::new(DEFAULT_DEVICE).exists(),
        "{DEFAULT_DEVICE} exists on this machine: this test needs a machine without an SE050"
    );
}

/// Every file under `dir` (recursively), or nothing if it does not exist.
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        }
        found.insert(path);
    }
    found
}

/// `program args` with no configuration in sight: PKCS11_SE050_CONF unset, HOME, XDG_STATE_HOME
/// and the working directory in an empty temporary directory.
///
/// Where the system configuration exists (the Debian package installs it), the program runs in
/// a mount namespace of its own with an empty tmpfs over its directory: the module then sees no
/// file at all, as on a device whose config went missing, and the machine's file is untouched.
fn without_config(program: &Path, args: &[&str], home: &Path) -> Output {
    let mut command = if Path::new(SYSTEM_CONF).exists() {
        let conf_dir = Path::new(SYSTEM_CONF).parent().unwrap();
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs none {} && exec \"$0\" \"$@\"",
                conf_dir.display()
            ))
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .env_remove("PKCS11_SE050_CONF")
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("PKCS11_SE050_LOG", "error")
        .current_dir(home)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn assert_names_config_and_device(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{what} succeeded without a chip:\n{stderr}"
    );
    assert!(
        stderr.contains(SYSTEM_CONF) && stderr.contains(DEFAULT_DEVICE) && stderr.contains("0x48"),
        "{what}: the error should name {SYSTEM_CONF} and {DEFAULT_DEVICE} 0x48:\n{stderr}"
    );
}

#[test]
fn without_a_config_file_no_key_is_written_anywhere() {
    require_no_chip();
    let home = tempfile::tempdir().unwrap();
    let root_state_before = files_under(Path::new(ROOT_STATE_DIR));
    let module = module_path();

    // pkcs11-tool (Debian 12's OpenSC) generating a key pair.
    let out = without_config(
        Path::new("pkcs11-tool"),
        &[
            "--module",
            module.to_str().unwrap(),
            "--keypairgen",
            "--key-type",
            "EC:curve25519",
            "--usage-derive",
            "--label",
            "stray",
        ],
        home.path(),
    );
    assert_names_config_and_device(&out, "pkcs11-tool --keypairgen");

    // wg-pkcs11 genkey, the way a device whose config went missing would run it.
    let uri = format!("pkcs11:object=stray?module-path={}", module.display());
    let out = without_config(&wg_pkcs11_binary(), &["genkey", &uri], home.path());
    assert_names_config_and_device(&out, "wg-pkcs11 genkey");
    assert!(out.stdout.is_empty(), "genkey printed a key without a chip");

    let written = files_under(home.path());
    assert!(
        written.is_empty(),
        "files written without a config: {written:?}"
    );
    assert_eq!(
        files_under(Path::new(ROOT_STATE_DIR)),
        root_state_before,
        "{ROOT_STATE_DIR} changed without a config"
    );
}

#[test]
fn a_config_without_transport_means_the_real_chip() {
    require_no_chip();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("pkcs11-se050.toml");
    std::fs::write(&conf, "token_label = \"wg\"\n").unwrap();
    let module = module_path();
    let out = Command::new("pkcs11-tool")
        .args(["--module", module.to_str().unwrap(), "-L"])
        .env("PKCS11_SE050_CONF", &conf)
        .env("PKCS11_SE050_LOG", "error")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(conf.to_str().unwrap()) && stderr.contains(DEFAULT_DEVICE),
        "the error should name {} and {DEFAULT_DEVICE}:\n{stderr}",
        conf.display()
    );
    let written: Vec<_> = files_under(dir.path())
        .into_iter()
        .filter(|p| *p != conf)
        .collect();
    assert!(written.is_empty(), "files written: {written:?}");
}
