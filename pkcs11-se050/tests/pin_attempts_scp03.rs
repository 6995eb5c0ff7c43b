//! One wrong PIN costs one attempt, under PlatformSCP03 as without it (issue 20, finding 1):
//! Debian 12's pkcs11-tool with the built module on a virtual chip with `pin_max_attempts = 4`.
//! Before the retry rule, the transport read the chip's 6982 ("wrong PIN") as a lost channel
//! and sent VerifySessionUserID again: two runs locked the PIN under SCP03.

use std::path::PathBuf;
use std::process::{Command, Output};

const SO_PIN: &str = "87654321";

/// `target/<profile>/libpkcs11_se050.so`, next to `deps/` where this test runs from.
fn module_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("libpkcs11_se050.so");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

struct Chip {
    _dir: tempfile::TempDir,
    conf: PathBuf,
}

impl Chip {
    fn new(scp03: bool) -> Chip {
        let dir = tempfile::Builder::new()
            .prefix("pin-attempts-")
            .tempdir()
            .unwrap();
        let mut extra = String::from("pin_max_attempts = 4\n");
        if scp03 {
            let key_file = dir.path().join("scp.keys");
            pkcs11_se050::scp03::StaticKeys::published("SE050C2")
                .unwrap()
                .write_atomically(&key_file)
                .unwrap();
            extra.push_str(&format!(
                "virtual_scp03_required = true\nscp03_keys = \"{}\"\n",
                key_file.display()
            ));
        }
        let conf = dir.path().join("pkcs11-se050.toml");
        std::fs::write(
            &conf,
            format!(
                "transport = \"virtual\"\nvirtual_state = \"{}\"\n{extra}",
                dir.path().join("se050.state").display()
            ),
        )
        .unwrap();
        Chip { _dir: dir, conf }
    }

    fn tool(&self, args: &[&str]) -> (Output, String) {
        let out = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(module_path())
            .args(args)
            .env("PKCS11_SE050_CONF", &self.conf)
            .output()
            .expect("run pkcs11-tool (Debian package opensc)");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out, all)
    }

    fn ok(&self, args: &[&str]) -> String {
        let (out, all) = self.tool(args);
        assert!(out.status.success(), "pkcs11-tool {args:?}:\n{all}");
        all
    }

    fn login_fails(&self, pin: &str, expected: &str, what: &str) {
        let (out, all) = self.tool(&["--login", "--pin", pin, "--test"]);
        assert!(
            !out.status.success(),
            "{what}: login with {pin} succeeded:\n{all}"
        );
        assert!(all.contains(expected), "{what}: no {expected}:\n{all}");
    }
}

#[test]
fn pkcs11_tool_wrong_pins_cost_one_attempt_each_with_and_without_scp03() {
    for scp03 in [false, true] {
        let what = if scp03 { "SCP03" } else { "plain" };
        let chip = Chip::new(scp03);
        chip.ok(&["--init-token", "--so-pin", SO_PIN, "--label", "attempts"]);
        chip.ok(&[
            "--login",
            "--login-type",
            "so",
            "--so-pin",
            SO_PIN,
            "--init-pin",
            "--pin",
            "1234",
        ]);
        for run in 1..=3 {
            chip.login_fails("0000", "CKR_PIN_INCORRECT", &format!("{what}, run {run}"));
            let slots = chip.ok(&["-L"]);
            assert!(
                !slots.contains("user PIN locked"),
                "{what}: locked after {run} wrong PINs of 4:\n{slots}"
            );
        }
        let slots = chip.ok(&["-L"]);
        assert!(slots.contains("final user PIN try"), "{what}:\n{slots}");
        // The last attempt is still there; the right PIN resets the count.
        chip.ok(&["--login", "--pin", "1234", "-O"]);
        // Four wrong ones lock it.
        for run in 1..=3 {
            chip.login_fails("0000", "CKR_PIN_INCORRECT", &format!("{what}, again {run}"));
        }
        chip.login_fails("0000", "CKR_PIN_LOCKED", &format!("{what}, the fourth"));
    }
}
