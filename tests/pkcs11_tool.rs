//! The built module with the tools Debian 12 users have: OpenSC 0.23's pkcs11-tool, and p11-kit
//! (module registration, list-modules, p11-kit-proxy.so). Each test has its own virtual chip,
//! handed to the module through PKCS11_SE050_CONF in the tool's environment.

#[path = "pkcs11_harness.rs"]
mod harness;

use harness::{module_path, TestChip};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const P11_KIT_PROXY: &str = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so";

fn tool(chip: &TestChip, module: &Path, args: &[&str]) -> Output {
    Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module)
        .args(args)
        .env("PKCS11_SE050_CONF", &chip.conf)
        .output()
        .expect("run pkcs11-tool (Debian package opensc)")
}

/// Runs pkcs11-tool with the built module and asserts success; returns stdout.
fn ok(chip: &TestChip, args: &[&str]) -> String {
    let out = tool(chip, &module_path(), args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "pkcs11-tool {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn tool_shows_info_slots_and_mechanisms() {
    let chip = TestChip::new("");
    let info = ok(&chip, &["-I"]);
    assert!(
        info.contains("Cryptoki version 3.0") && info.contains("pkcs11-se050"),
        "{info}"
    );
    let slots = ok(&chip, &["-L"]);
    assert!(slots.contains("token label        : e2e"), "{slots}");
    // The virtual chip says what it is: not NXP hardware.
    assert!(
        slots.contains("token manufacturer : pkcs11-se050 virtual (software)"),
        "{slots}"
    );
    assert!(
        slots.contains("token model        : VIRTUAL SE050"),
        "{slots}"
    );
    let mechs = ok(&chip, &["-M"]);
    assert!(
        mechs.contains("EC-MONTGOMERY-KEY-PAIR-GEN, keySize={255,255}, generate_key_pair"),
        "{mechs}"
    );
    assert!(
        mechs.contains("ECDH1-DERIVE, keySize={255,256}, derive"),
        "{mechs}"
    );
}

#[test]
fn tool_generates_lists_and_deletes_an_x25519_pair() {
    let chip = TestChip::new("");
    let out = ok(
        &chip,
        &[
            "--keypairgen",
            "--key-type",
            "EC:curve25519",
            "--label",
            "wg0",
            "--usage-derive",
        ],
    );
    assert!(out.contains("Key pair generated"), "{out}");
    let listed = ok(&chip, &["-O"]);
    assert!(
        listed.contains("Private Key Object; EC_MONTGOMERY"),
        "{listed}"
    );
    assert!(
        listed.contains("Public Key Object; EC_MONTGOMERY"),
        "{listed}"
    );
    assert_eq!(listed.matches("label:      wg0").count(), 2, "{listed}");
    assert!(listed.contains("Usage:      derive"), "{listed}");
    assert!(
        listed.contains("EC_PARAMS:  06032b656e (OID 1.3.101.110)"),
        "{listed}"
    );
    assert!(
        listed.contains("Access:     sensitive, always sensitive, never extractable, local"),
        "{listed}"
    );
    let point = listed
        .lines()
        .find(|l| l.trim_start().starts_with("EC_POINT:"))
        .expect("EC_POINT line");
    let hex = point.split(':').nth(1).unwrap().trim();
    assert!(
        hex.starts_with("0420") && hex.len() == 68,
        "DER OCTET STRING of 32 bytes: {hex}"
    );

    let with_id = ok(
        &chip,
        &[
            "--keypairgen",
            "--key-type",
            "EC:curve25519",
            "--label",
            "wg1",
            "--id",
            "10000001",
            "--usage-derive",
        ],
    );
    assert!(with_id.contains("ID:         10000001"), "{with_id}");

    ok(
        &chip,
        &["--delete-object", "--type", "privkey", "--label", "wg0"],
    );
    // The private half is gone from the chip; the public half is its own object and stays
    // (kept in the pair's metadata record) until it is deleted too.
    let after = ok(&chip, &["-O"]);
    assert_eq!(after.matches("label:      wg0").count(), 1, "{after}");
    assert!(
        !after.contains("Private Key Object; EC_MONTGOMERY\n  label:      wg0"),
        "{after}"
    );
    ok(
        &chip,
        &["--delete-object", "--type", "pubkey", "--label", "wg0"],
    );
    let after = ok(&chip, &["-O"]);
    assert!(
        !after.contains("wg0"),
        "the pair is gone from the chip:\n{after}"
    );
    assert_eq!(after.matches("label:      wg1").count(), 2, "{after}");
    // Deleting the public half leaves the private half; deleting that too removes the pair.
    ok(
        &chip,
        &["--delete-object", "--type", "pubkey", "--id", "10000001"],
    );
    assert_eq!(ok(&chip, &["-O"]).matches("label:      wg1").count(), 1);
    ok(
        &chip,
        &["--delete-object", "--type", "privkey", "--id", "10000001"],
    );
    assert!(!ok(&chip, &["-O"]).contains("wg1"));
}

#[test]
fn tool_keypairgen_without_usage_derive_is_refused_with_the_reason() {
    let chip = TestChip::new("");
    let out = tool(
        &chip,
        &module_path(),
        &[
            "--keypairgen",
            "--key-type",
            "EC:curve25519",
            "--label",
            "wg0",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("CKR_ATTRIBUTE_VALUE_INVALID"), "{stderr}");
    assert!(
        stderr.contains("cannot sign") && stderr.contains("--usage-derive"),
        "the module says why: {stderr}"
    );
    assert!(!ok(&chip, &["-O"]).contains("wg0"), "nothing was created");
}

#[test]
fn tool_generates_random_bytes_and_refuses_a_login_without_a_user_pin() {
    let chip = TestChip::new("");
    let a = chip.dir.path().join("a.bin");
    let b = chip.dir.path().join("b.bin");
    ok(
        &chip,
        &[
            "--generate-random",
            "64",
            "--output-file",
            a.to_str().unwrap(),
        ],
    );
    ok(
        &chip,
        &[
            "--generate-random",
            "64",
            "--output-file",
            b.to_str().unwrap(),
        ],
    );
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!((a.len(), b.len()), (64, 64));
    assert_ne!(a, b);
    // There is no user PIN yet: no login needed, and a login is refused as PKCS#11 says.
    ok(&chip, &["-O"]);
    let out = tool(&chip, &module_path(), &["--login", "--pin", "123456", "-O"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("CKR_USER_PIN_NOT_INITIALIZED"), "{stderr}");
}

/// Installs a p11-kit module file for the built .so and removes it when dropped.
struct RegisteredModule {
    path: PathBuf,
}

impl RegisteredModule {
    fn install() -> RegisteredModule {
        // p11-kit reads /etc/pkcs11/modules (run as root it ignores ~/.config/pkcs11/modules).
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap();
        assert_eq!(
            uid, 0,
            "this test installs a module file in /etc/pkcs11/modules and must run as root"
        );
        let dir = Path::new("/etc/pkcs11/modules");
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("pkcs11-se050-e2e-{}.module", std::process::id()));
        // The shipped file, pointed at the freshly built .so.
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/pkcs11-se050.module"),
        )
        .unwrap();
        let text = shipped.replace(
            "module: libpkcs11_se050.so",
            &format!("module: {}", module_path().display()),
        );
        assert_ne!(
            text, shipped,
            "conf/pkcs11-se050.module names libpkcs11_se050.so"
        );
        std::fs::write(&path, text).unwrap();
        RegisteredModule { path }
    }
}

impl Drop for RegisteredModule {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[test]
fn p11_kit_lists_the_module_and_the_proxy_exposes_the_token() {
    let chip = TestChip::new("");
    let registered = RegisteredModule::install();
    let name = registered
        .path
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let out = Command::new("p11-kit")
        .arg("list-modules")
        .env("PKCS11_SE050_CONF", &chip.conf)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    let ours = listed
        .split(&format!("{name}:"))
        .nth(1)
        .unwrap_or_else(|| panic!("module {name} not listed:\n{listed}"));
    assert!(
        ours.contains("library-manufacturer: pkcs11-se050"),
        "{ours}"
    );
    assert!(ours.contains("token: e2e"), "{ours}");
    assert!(
        ours.contains("manufacturer: pkcs11-se050 virtual (software)"),
        "{ours}"
    );
    assert!(ours.contains("model: VIRTUAL SE050"), "{ours}");

    // Through p11-kit-proxy.so: the token, its mechanisms, and a key generated through it.
    let proxy = Path::new(P11_KIT_PROXY);
    let run = |args: &[&str]| {
        let out = tool(&chip, proxy, args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "proxy {args:?}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let slots = run(&["-L"]);
    assert!(slots.contains("token label        : e2e"), "{slots}");
    let mechs = run(&["--token-label", "e2e", "-M"]);
    assert!(
        mechs.contains("ECDH1-DERIVE, keySize={255,256}, derive"),
        "{mechs}"
    );
    assert!(mechs.contains("EC-MONTGOMERY-KEY-PAIR-GEN"), "{mechs}");
    run(&[
        "--token-label",
        "e2e",
        "--keypairgen",
        "--key-type",
        "EC:curve25519",
        "--label",
        "via-proxy",
        "--usage-derive",
    ]);
    assert!(
        ok(&chip, &["-O"]).contains("via-proxy"),
        "the key is on the chip"
    );
    drop(registered);
}
