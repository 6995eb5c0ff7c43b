//! The configuration's parsing, its file checks and where it comes from.

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Some(Path::new("/etc/x/p.toml")))
}

#[test]
fn the_environment_chooses_no_configuration_for_a_privileged_process() {
    let named = Some(std::ffi::OsString::from("/home/eve/evil.toml"));
    assert_eq!(
        conf_from_environment(named.clone(), false),
        Some(PathBuf::from("/home/eve/evil.toml"))
    );
    assert_eq!(conf_from_environment(named, true), None);
    assert_eq!(conf_from_environment(None, false), None);
    // The test binary itself is no setuid program.
    assert!(!runs_with_privileges());
}

fn conf_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn a_configuration_others_may_write_or_another_user_owns_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = "transport = \"virtual\"\n";
    Config::from_file(&conf_file(dir.path(), "ok.toml", good, 0o644)).unwrap();
    for mode in [0o664, 0o666, 0o646] {
        let path = conf_file(dir.path(), &format!("m{mode:o}.toml"), good, mode);
        let e = Config::from_file(&path).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string())
                && e.contains(&format!("mode 0{mode:o}"))
                && e.contains("writable by group or others"),
            "{e}"
        );
    }
    let theirs = conf_file(dir.path(), "theirs.toml", good, 0o644);
    std::os::unix::fs::chown(&theirs, Some(4242), None).expect("the tests run as root");
    let e = Config::from_file(&theirs).unwrap_err().to_string();
    assert!(e.contains("owned by uid 4242"), "{e}");
    let link = dir.path().join("link.toml");
    std::os::unix::fs::symlink(dir.path().join("ok.toml"), &link).unwrap();
    let e = Config::from_file(&link).unwrap_err().to_string();
    assert!(e.contains("symbolic link"), "{e}");
    let e = Config::from_file(Path::new("/dev/zero"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn errors_quote_a_private_configuration_never() {
    let dir = tempfile::tempdir().unwrap();
    let text = "transport = \"virtual\"\nroot:$6$hash:19000 = 1\ntoken_label = hunter2\n";
    let private = conf_file(dir.path(), "private.toml", text, 0o600);
    let e = Config::from_file(&private).unwrap_err().to_string();
    assert!(e.contains("line 2"), "{e}");
    assert!(!e.contains("root") && !e.contains("hash"), "{e}");
    let private = conf_file(
        dir.path(),
        "label.toml",
        &text.replace("root:$6$hash:19000 = 1\n", ""),
        0o600,
    );
    let e = Config::from_file(&private).unwrap_err().to_string();
    assert!(e.contains("token_label") && !e.contains("hunter2"), "{e}");
    for text in [
        "transport = \"hunter2\"\n",
        "ec_point = \"hunter2\"\n",
        "transport = \"virtual\"\nvirtual_scp03_keys = \"hunter2\"\n",
    ] {
        let private = conf_file(dir.path(), "value.toml", text, 0o600);
        let e = Config::from_file(&private).unwrap_err().to_string();
        assert!(e.contains("not shown") && !e.contains("hunter2"), "{e}");
    }
    // A world-readable file hides nothing from anybody: its errors say what the parser saw.
    let public = conf_file(
        dir.path(),
        "public.toml",
        "transport = \"virtual\"\nbogus = 1\n",
        0o644,
    );
    let e = Config::from_file(&public).unwrap_err().to_string();
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn virtual_with_relative_state_is_anchored_at_the_file() {
    let c =
        parse("transport = \"virtual\"\nvirtual_state = \"chip.state\"\nvirtual_latency_ms = 50\n")
            .unwrap();
    assert_eq!(
        c.transport,
        TransportConfig::Virtual {
            state: PathBuf::from("/etc/x/chip.state"),
            latency: Duration::from_millis(50)
        }
    );
    assert_eq!(c.token_label, "SE050");
    assert_eq!(c.ec_point, EcPointFormat::Der);
    assert_eq!(c.lock_timeout, crate::device::lock::DEFAULT_LOCK_TIMEOUT);
}

#[test]
fn scp03_settings_and_their_errors() {
    let c = parse("").unwrap();
    assert_eq!(c.scp03, Scp03Config::default());
    assert_eq!(c.scp03.kvn, 0x0B);
    let c = parse(
        "transport = \"virtual\"\nscp03_keys = \"keys/scp.txt\"\nscp03_kvn = 0x21\n\
         virtual_scp03_keys = \"se050e\"\n\
         virtual_scp03_required = true",
    )
    .unwrap();
    assert_eq!(
        c.scp03.keys_file,
        Some(PathBuf::from("/etc/x/keys/scp.txt"))
    );
    assert_eq!(c.scp03.kvn, 0x21);
    assert_eq!(
        c.scp03.virtual_keys,
        VirtualScp03Keys::Published("se050e".into())
    );
    assert!(c.scp03.virtual_required);
    let c = parse("transport = \"virtual\"\nvirtual_scp03_keys = \"chip.keys\"").unwrap();
    assert_eq!(
        c.scp03.virtual_keys,
        VirtualScp03Keys::File("/etc/x/chip.keys".into())
    );
    for (text, key) in [
        ("scp03_kvn = 3", "scp03_kvn"),
        ("scp03_keys = \"k\"\nscp03_kvn = 0x80", "scp03_kvn"),
        ("scp03_keys = \"\"", "scp03_keys"),
        (
            "transport = \"virtual\"\nvirtual_scp03_keys = \"SE999\"",
            "virtual_scp03_keys",
        ),
        (
            "transport = \"i2c\"\nvirtual_scp03_required = true",
            "virtual_scp03_required",
        ),
        (
            "transport = \"virtual\"\nvirtual_scp03_required = \"yes\"",
            "virtual_scp03_required",
        ),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
}

#[test]
fn lock_timeout_is_bounded() {
    let c = parse("transport = \"virtual\"\nlock_timeout_ms = 250").unwrap();
    assert_eq!(c.lock_timeout, Duration::from_millis(250));
    for bad in ["0", "600001", "-5", "\"never\""] {
        let e = parse(&format!("lock_timeout_ms = {bad}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lock_timeout_ms"), "{e}");
    }
}

#[test]
fn pin_max_attempts_defaults_to_ten_and_is_bounded() {
    assert_eq!(
        parse("transport = \"virtual\"").unwrap().pin_max_attempts,
        10
    );
    let c = parse("transport = \"virtual\"\npin_max_attempts = 3").unwrap();
    assert_eq!(c.pin_max_attempts, 3);
    for bad in ["0", "32768", "-1", "\"ten\""] {
        let e = parse(&format!("pin_max_attempts = {bad}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pin_max_attempts"), "{e}");
    }
}

#[test]
fn i2c_defaults_and_values() {
    let c =
        parse("transport = \"i2c\"\ni2c_address = 0x49\ntoken_label = \"wg\"\nec_point = \"raw\"")
            .unwrap();
    assert_eq!(
        c.transport,
        TransportConfig::I2c {
            device: PathBuf::from("/dev/i2c-1"),
            address: 0x49
        }
    );
    assert_eq!(c.token_label, "wg");
    assert_eq!(c.ec_point, EcPointFormat::Raw);
}

#[test]
fn the_virtual_chip_only_when_asked_for() {
    // A file without `transport` means the real chip, as no file does.
    let c = parse("token_label = \"wg\"").unwrap();
    assert_eq!(
        c.transport,
        TransportConfig::I2c {
            device: PathBuf::from(DEFAULT_I2C_DEVICE),
            address: DEFAULT_I2C_ADDRESS
        }
    );
    assert!(!c.is_virtual());
    // Settings of the virtual chip without asking for it are an error, not a fallback.
    let e = parse("virtual_state = \"/x\"").unwrap_err().to_string();
    assert!(
        e.contains("virtual_state") && e.contains("transport = \"virtual\""),
        "{e}"
    );
    let d = Config::embedded_default();
    assert_eq!(d.transport, c.transport);
    assert!(d.origin().contains(SYSTEM_CONF) && d.origin().contains(CONF_ENV));
    assert!(parse("transport = \"virtual\"").unwrap().is_virtual());
}

#[test]
fn errors_name_file_and_key() {
    let e = parse("transport = \"usb\"").unwrap_err().to_string();
    assert!(
        e.contains("/etc/x/p.toml") && e.contains("transport") && e.contains("usb"),
        "{e}"
    );
    let e = parse("i2c_adress = 3").unwrap_err().to_string();
    assert!(e.contains("i2c_adress"), "{e}");
    let e = parse("transport = \"i2c\"\ni2c_address = 300")
        .unwrap_err()
        .to_string();
    assert!(e.contains("i2c_address"), "{e}");
    let e = parse("ec_point = \"pem\"").unwrap_err().to_string();
    assert!(e.contains("ec_point"), "{e}");
    let e = parse("transport = \"virtual\"\nvirtual_latency_ms = \"fast\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("virtual_latency_ms"), "{e}");
    let e = parse("token_label = \"\"").unwrap_err().to_string();
    assert!(e.contains("token_label"), "{e}");
    let e = parse("transport = \"i2c\"\nvirtual_state = \"/x\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("virtual_state"), "{e}");
}
