//! PlatformSCP03 through the built module (cryptoki) and `pkcs11-se050-tool`, on a virtual
//! SE050 provisioned with "Platform SCP required". Each case runs in its own process
//! (see pkcs11_harness.rs), as a PKCS#11 application would.

#[path = "pkcs11_harness.rs"]
mod harness;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use harness::{module_path, role, run_role, TestChip};
use pkcs11_se050::scp03::StaticKeys;
use pkcs11_se050::virtual_se050::counters::read_counters;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use x25519_dalek::{PublicKey, StaticSecret};

const OID_X25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x6E];
const LABEL: &str = "scp03-key";

fn init() -> Pkcs11 {
    let pkcs11 = Pkcs11::new(module_path()).expect("load the module");
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    pkcs11
}

fn session(pkcs11: &Pkcs11) -> Session {
    let slot = pkcs11.get_slots_with_token().unwrap()[0];
    pkcs11.open_rw_session(slot).unwrap()
}

fn generate(session: &Session) {
    let public = [
        Attribute::Token(true),
        Attribute::EcParams(OID_X25519.to_vec()),
        Attribute::Label(LABEL.as_bytes().to_vec()),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Derive(true),
        Attribute::Sensitive(true),
        Attribute::Label(LABEL.as_bytes().to_vec()),
    ];
    session
        .generate_key_pair(&Mechanism::EccMontgomeryKeyPairGen, &public, &private)
        .expect("generate X25519 pair");
}

fn find(session: &Session, class: ObjectClass) -> ObjectHandle {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(LABEL.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1, "{class:?} {LABEL}");
    found[0]
}

/// One C_DeriveKey, checked against x25519-dalek with the chip's public key.
fn derive_checked(session: &Session) {
    let public = find(session, ObjectClass::PUBLIC_KEY);
    let private = find(session, ObjectClass::PRIVATE_KEY);
    let attrs = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .unwrap();
    let Attribute::EcPoint(point) = &attrs[0] else {
        panic!("no EC point")
    };
    let chip_public: [u8; 32] = point[point.len() - 32..].try_into().unwrap();
    let peer = StaticSecret::random_from_rng(rand_core::OsRng);
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    let peer_public = PublicKey::from(&peer);
    let mechanism = Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(
        EcKdf::null(),
        peer_public.as_bytes(),
    ));
    let secret = session
        .derive_key(&mechanism, private, &template)
        .expect("C_DeriveKey");
    let value = session
        .get_attributes(secret, &[AttributeType::Value])
        .unwrap();
    let Attribute::Value(value) = &value[0] else {
        panic!()
    };
    assert_eq!(
        value[..],
        peer.diffie_hellman(&PublicKey::from(chip_public))
            .to_bytes()
    );
}

/// The roles a child process plays (named by PKCS11_E2E_ROLE, see the harness).
fn child(name: &str) -> bool {
    let Some(role) = role(name) else { return false };
    match role.as_str() {
        "keygen_and_derive" => {
            let pkcs11 = init();
            let s = session(&pkcs11);
            generate(&s);
            derive_checked(&s);
        }
        "derive" => derive_checked(&session(&init())),
        "derive_loop" => {
            // Many derives while another process does the same on the chip: each process's
            // channel is taken over by the other's in between, and must be re-opened, never wrong.
            let pkcs11 = init();
            let s = session(&pkcs11);
            for _ in 0..150 {
                derive_checked(&s);
            }
        }
        "init_fails" => {
            let pkcs11 = Pkcs11::new(module_path()).unwrap();
            let result = pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
            let opened = result.is_ok() && {
                // Some errors may only show at the first chip command.
                pkcs11
                    .get_slots_with_token()
                    .map(|s| !s.is_empty())
                    .unwrap_or(false)
                    && session(&pkcs11).generate_random_vec(8).is_ok()
            };
            assert!(!opened, "the module worked without a secure channel");
        }
        other => panic!("unknown role {other}"),
    }
    true
}

fn write_keys(path: &Path, keys: &StaticKeys, mode: u32) {
    std::fs::write(path, keys.to_file_text().as_bytes()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn dev_keys() -> StaticKeys {
    StaticKeys::published("SE050C2").unwrap()
}

/// A virtual chip requiring Platform SCP, with NXP's SE050C2 development keys; the module's key
/// file (`scp.keys` next to the config) holds `host_keys` when given.
fn required_chip(host_keys: Option<(&StaticKeys, u32)>, extra: &str) -> TestChip {
    let mut conf = String::from("virtual_scp03_required = true\n");
    if host_keys.is_some() {
        conf.push_str("scp03_keys = \"scp.keys\"\n");
    }
    conf.push_str(extra);
    let chip = TestChip::new(&conf);
    if let Some((keys, mode)) = host_keys {
        write_keys(&chip.dir.path().join("scp.keys"), keys, mode);
    }
    chip
}

/// Runs `role` in a child; returns its stderr (the module logs there).
fn run_capturing(name: &str, role: &str, chip: &TestChip) -> String {
    let output = harness::role_command(name, role, chip, &[("PKCS11_SE050_LOG", "info")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    harness::check_child(name, output);
    stderr
}

#[test]
fn scp03_module_works_on_a_chip_that_requires_platform_scp() {
    const NAME: &str = "scp03_module_works_on_a_chip_that_requires_platform_scp";
    if child(NAME) {
        return;
    }
    let chip = required_chip(Some((&dev_keys(), 0o600)), "");
    run_role(NAME, "keygen_and_derive", &chip, &[]);
    let counters = read_counters(&chip.state);
    assert_eq!((counters.keygen, counters.ecdh), (1, 1));
}

#[test]
fn scp03_two_processes_share_the_chip_each_with_its_own_channel() {
    const NAME: &str = "scp03_two_processes_share_the_chip_each_with_its_own_channel";
    if child(NAME) {
        return;
    }
    let chip = required_chip(Some((&dev_keys(), 0o600)), "");
    run_role(NAME, "keygen_and_derive", &chip, &[]);
    let children: Vec<_> = (0..2)
        .map(|_| {
            harness::role_command(NAME, "derive_loop", &chip, &[("PKCS11_SE050_LOG", "debug")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut channels_opened = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        channels_opened += String::from_utf8_lossy(&output.stderr)
            .matches("SCP03 secure channel opened")
            .count();
        harness::check_child(NAME, output);
    }
    // Each opened one at least; more means they took the chip's session from each other and
    // re-opened (the interleaving depends on the scheduler, so only reported).
    assert!(channels_opened >= 2, "{channels_opened} channels opened");
    println!("secure channels opened by the two processes: {channels_opened}");
    assert_eq!(read_counters(&chip.state).ecdh, 301);
}

#[test]
fn scp03_slow_chips_30_and_300_ms() {
    const NAME: &str = "scp03_slow_chips_30_and_300_ms";
    if child(NAME) {
        return;
    }
    for latency in [30, 300] {
        let chip = required_chip(
            Some((&dev_keys(), 0o600)),
            &format!("virtual_latency_ms = {latency}\n"),
        );
        run_role(NAME, "keygen_and_derive", &chip, &[]);
    }
}

#[test]
fn scp03_wrong_missing_or_exposed_keys_fail_clearly_and_never_in_plain() {
    const NAME: &str = "scp03_wrong_missing_or_exposed_keys_fail_clearly_and_never_in_plain";
    if child(NAME) {
        return;
    }
    let wrong = StaticKeys::published("SE050C1").unwrap();
    let cases: [(&str, TestChip, &[&str]); 5] = [
        (
            "wrong keys",
            required_chip(Some((&wrong, 0o600)), ""),
            &["SCP03 secure channel", "wrong card cryptogram"],
        ),
        (
            // Even when the chip would take plain commands, configured keys mean no plain link.
            "wrong keys, chip not requiring SCP",
            {
                let c = TestChip::new("scp03_keys = \"scp.keys\"\n");
                write_keys(&c.dir.path().join("scp.keys"), &wrong, 0o600);
                c
            },
            &["SCP03 secure channel", "wrong card cryptogram"],
        ),
        (
            "no keys configured",
            required_chip(None, ""),
            &["6982", "Platform SCP required", "scp03_keys"],
        ),
        (
            "key file missing",
            required_chip(None, "scp03_keys = \"absent.keys\"\n"),
            &[
                "SCP03 secure channel",
                "the key file",
                "absent.keys: cannot open",
            ],
        ),
        (
            "key file readable by others",
            required_chip(Some((&dev_keys(), 0o644)), ""),
            &[
                "SCP03 secure channel",
                "readable or writable by group or others",
            ],
        ),
    ];
    for (what, chip, expected) in cases {
        let stderr = run_capturing(NAME, "init_fails", &chip);
        for text in expected {
            assert!(stderr.contains(text), "{what}: `{text}` not in:\n{stderr}");
        }
        // No applet command but SELECT ever ran on the chip.
        let counters = read_counters(&chip.state);
        assert!(
            counters.apdus <= 2 && counters.keygen + counters.random == 0,
            "{what}: {counters:?}"
        );
    }
}

#[test]
fn scp03_rotation_end_to_end_with_the_tool() {
    const NAME: &str = "scp03_rotation_end_to_end_with_the_tool";
    if child(NAME) {
        return;
    }
    let chip = required_chip(Some((&dev_keys(), 0o600)), "");
    let key_file = chip.dir.path().join("scp.keys");
    run_role(NAME, "keygen_and_derive", &chip, &[]);

    let tool = e2e_tests::artifacts::target_profile_dir().join("pkcs11-se050-tool");
    let output = std::process::Command::new(&tool)
        .arg("scp03-rotate")
        .env("PKCS11_SE050_CONF", &chip.conf)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", tool.display()));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "rotation failed:\n{stdout}\n{stderr}"
    );
    let new = StaticKeys::load(&key_file).expect("the new key file, private");
    assert_ne!(new, dev_keys(), "the key file was not replaced");
    assert!(!Path::new(&format!("{}.new", key_file.display())).exists());

    // A new process with the new file: the same key, a correct derive.
    run_role(NAME, "derive", &chip, &[]);

    // The old keys are refused.
    write_keys(&key_file, &dev_keys(), 0o600);
    let stderr = run_capturing(NAME, "init_fails", &chip);
    assert!(stderr.contains("wrong card cryptogram"), "{stderr}");

    // The tool refuses to run without the current keys, and says why.
    let output = std::process::Command::new(&tool)
        .arg("scp03-rotate")
        .env("PKCS11_SE050_CONF", &chip.conf)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("wrong card cryptogram") && stderr.contains("unchanged"),
        "{stderr}"
    );
    assert_eq!(
        StaticKeys::load(&key_file).unwrap(),
        dev_keys(),
        "key file changed on failure"
    );
}
