//! Key rotation without downtime.
//!
//! `set IFNAME private-key-uri URI` switches a running interface to another token key (the
//! daemon handshakes with every peer at once, see `device/key_switch.rs`).
//! `rotate IFNAME` scripts the device side of a whole rotation (see [`rotate`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use wg_pkcs11::device::Device;
use wg_pkcs11::key::{StaticKey, TokenKey};
use wg_pkcs11::uapi::{self, SetRequest, UapiError};
use wg_pkcs11::uri::Pkcs11Uri;
use zeroize::Zeroizing;

fn b64(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Daemon side of `wg_pkcs11_private_key_uri=`: open the key, then switch to it. Nothing
/// changes if either fails.
pub fn switch_device_key(device: &Device, uri: &str) -> Result<(), UapiError> {
    let parsed = Pkcs11Uri::parse(uri)
        .map_err(|e| UapiError::new(libc::EINVAL, format!("private key URI: {e}")))?;
    let key = TokenKey::open(&parsed).map_err(|e| {
        UapiError::new(
            libc::ENOKEY,
            format!("cannot switch to {}: {e}", parsed.redacted()),
        )
    })?;
    let public = key.public_key();
    device
        .replace_static_key(Arc::new(key))
        .map_err(|e| UapiError::new(libc::EINVAL, format!("cannot switch keys: {e}")))?;
    log::info!(
        "{}: now using {} (public key {})",
        device.name(),
        parsed.redacted(),
        b64(&public)
    );
    Ok(())
}

/// `wg-pkcs11 set IFNAME private-key-uri URI`: the key is opened here first, so a mistake in
/// the URI is reported with the token's own words (the daemon only answers an errno).
pub fn set_private_key_uri(ifname: &str, uri: &str) -> Result<(), String> {
    let parsed = Pkcs11Uri::parse(uri).map_err(|e| format!("`{uri}`: {e}"))?;
    let public = TokenKey::open(&parsed)
        .map_err(|e| e.to_string())?
        .public_key();
    send_switch(ifname, &parsed)?;
    println!("{}", b64(&public));
    Ok(())
}

fn send_switch(ifname: &str, uri: &Pkcs11Uri) -> Result<(), String> {
    let request = SetRequest {
        private_key_uri: Some(Zeroizing::new(uri.to_string())),
        ..Default::default()
    };
    uapi::client::set(&uapi::socket_path(ifname), &request).map_err(|e| {
        format!(
            "interface `{ifname}` refused the key {}: {} (the daemon's log says why)",
            uri.redacted(),
            e.message
        )
    })
}

use super::args::RotateArgs;

/// The `PrivateKey = ...` line of the [Interface] section: (line index, value).
fn private_key_line(text: &str) -> Option<(usize, String)> {
    let mut in_interface = false;
    for (n, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("").trim();
        if content.starts_with('[') {
            in_interface = content.eq_ignore_ascii_case("[interface]");
            continue;
        }
        if let Some((key, value)) = content.split_once('=') {
            if in_interface && key.trim().eq_ignore_ascii_case("privatekey") {
                return Some((n, value.trim().to_string()));
            }
        }
    }
    None
}

/// The config with its PrivateKey replaced by `uri`, every other byte as it was.
pub fn with_private_key(text: &str, uri: &str) -> Result<String, String> {
    let (index, _) = private_key_line(text).ok_or("the config has no [Interface] PrivateKey")?;
    let mut out = String::with_capacity(text.len() + uri.len());
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if n == index {
            let newline = if line.ends_with("\r\n") {
                "\r\n"
            } else if line.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            out.push_str(&format!("PrivateKey = {uri}{newline}"));
        } else {
            out.push_str(line);
        }
    }
    Ok(out)
}

/// Replace `path` with `text` atomically: a temporary file in the same directory with the
/// same mode, written and synced, renamed over the original, the directory synced. A crash
/// leaves the old or the new file, never a mix.
pub fn write_atomically(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode()
        & 0o7777;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("conf");
    let tmp = dir.join(format!(".{name}.rotate-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode: set it exactly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Where an interface's key URI lives, and so what `rotate` rewrites: the config's
/// `PrivateKey`, or, for an interface started by stock wg-quick (whose config has no
/// `PrivateKey`), the key file `IFNAME.pkcs11` next to the config (see `keyfile.rs`).
#[derive(Debug, PartialEq, Eq)]
pub enum KeyHome {
    Config { path: PathBuf, text: String },
    KeyFile { path: PathBuf, text: String },
}

impl KeyHome {
    /// The key's home for the config at `config_path`, and the URI it names now.
    pub fn locate(config_path: &Path) -> Result<(KeyHome, Pkcs11Uri), String> {
        let text = std::fs::read_to_string(config_path)
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        if let Some((_, value)) = private_key_line(&text) {
            let uri = Pkcs11Uri::parse(&value).map_err(|e| {
                format!(
                    "{}: PrivateKey is not a pkcs11: URI ({e}): rotate works on token keys",
                    config_path.display()
                )
            })?;
            let home = KeyHome::Config {
                path: config_path.to_path_buf(),
                text,
            };
            return Ok((home, uri));
        }
        let key_file = super::keyfile::key_file_for_config(config_path);
        if !key_file.exists() {
            return Err(format!(
                "{}: no [Interface] PrivateKey, and no key file {} with the key's pkcs11: URI",
                config_path.display(),
                key_file.display()
            ));
        }
        // Refuses a file that group or others may write, as `up` does.
        let uri = super::keyfile::read_key_file(&key_file)?;
        let text = std::fs::read_to_string(&key_file)
            .map_err(|e| format!("{}: {e}", key_file.display()))?;
        Ok((
            KeyHome::KeyFile {
                path: key_file,
                text,
            },
            uri,
        ))
    }

    pub fn path(&self) -> &Path {
        match self {
            KeyHome::Config { path, .. } | KeyHome::KeyFile { path, .. } => path,
        }
    }

    /// Rewrites the file atomically (same mode) to name `uri`; every other byte stays.
    pub fn point_to(&self, uri: &str) -> Result<(), String> {
        let updated = match self {
            KeyHome::Config { text, .. } => with_private_key(text, uri)?,
            KeyHome::KeyFile { text, .. } => with_key_file_uri(text, uri)?,
        };
        write_atomically(self.path(), &updated)
    }
}

/// A key file's text with its one URI line replaced by `uri` (in the same form, bare or
/// `PrivateKey = `, with its comment); comment lines stay.
fn with_key_file_uri(text: &str, uri: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + uri.len());
    let mut replaced = false;
    for line in text.split_inclusive('\n') {
        let (content, comment) = match line.find('#') {
            Some(at) => (&line[..at], line[at..].trim_end_matches(['\r', '\n'])),
            None => (line.trim_end_matches(['\r', '\n']), ""),
        };
        if content.trim().is_empty() {
            out.push_str(line);
            continue;
        }
        if replaced {
            return Err("the key file has more than one line with a URI".into());
        }
        replaced = true;
        let newline = &line[line.trim_end_matches(['\r', '\n']).len()..];
        let form = match content.split_once('=') {
            Some((key, _)) if key.trim().eq_ignore_ascii_case("PrivateKey") => "PrivateKey = ",
            _ => "",
        };
        let comment = if comment.is_empty() {
            String::new()
        } else {
            format!(" {comment}")
        };
        out.push_str(&format!("{form}{uri}{comment}{newline}"));
    }
    if !replaced {
        return Err("the key file has no pkcs11: URI".into());
    }
    Ok(out)
}

fn step(text: &str) {
    eprintln!("rotate: {text}");
}

/// Run `command` with `sh -c` and the rotation's facts in the environment.
fn run_shell(command: &str, env: &[(&str, String)]) -> Result<(), String> {
    use std::os::fd::AsFd;
    // Its output goes to our stderr: stdout carries only the new public key.
    let to_stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::from(to_stderr))
        .status()
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{command}` failed ({status})"))
    }
}

/// Every peer with an endpoint sends with a session that a handshake with `new_public` made,
/// completed since `since`: the peer accepted the new key. A session of the old key does not
/// count however late it was confirmed (an initiation answered just before the switch and
/// confirmed just after it proves nothing about the new key).
fn new_key_in_use(
    ifname: &str,
    since: std::time::Duration,
    new_public: &[u8; 32],
) -> Result<bool, String> {
    let device = uapi::client::get(&uapi::socket_path(ifname))
        .map_err(|e| format!("interface `{ifname}`: {}", e.message))?;
    Ok(every_peer_on(&device, since, new_public))
}

fn every_peer_on(device: &uapi::DeviceInfo, since: std::time::Duration, key: &[u8; 32]) -> bool {
    let peers: Vec<_> = device
        .peers
        .iter()
        .filter(|p| p.endpoint.is_some())
        .collect();
    !peers.is_empty()
        && peers.iter().all(|p| {
            p.session_static_key.as_ref() == Some(key)
                && p.last_handshake.is_some_and(|t| t >= since)
        })
}

/// `rotate IFNAME`: the device side of a rotation, in the order that never leaves the device
/// unreachable:
/// 1. a new key pair in the chip, under a new label (the old key stays);
/// 2. its public key printed for the server;
/// 3. the hook registers it with the server (or the operator presses Enter);
/// 4. the running interface switches to it and handshakes with every peer;
/// 5. a handshake with every peer is verified (and `--check` run through the tunnel);
///    otherwise the interface goes back to the old key, which was never deleted;
/// 6. the config's PrivateKey is rewritten atomically;
/// 7. only then the old key is deleted from the chip.
pub fn rotate(options: &RotateArgs) -> Result<(), String> {
    use std::time::{Duration, Instant, SystemTime};
    let ifname = options.ifname.as_str();
    // Default: /etc/wireguard/IFNAME.conf (or $WG_PKCS11_CONFIG_DIR/IFNAME.conf).
    let config_path = match &options.config {
        Some(path) => PathBuf::from(path),
        None => super::keyfile::config_dir().join(format!("{ifname}.conf")),
    };
    let (home, old_uri) = KeyHome::locate(&config_path)?;
    let old_public = TokenKey::open(&old_uri)
        .map_err(|e| e.to_string())?
        .public_key();
    let running = uapi::client::get(&uapi::socket_path(ifname))
        .map_err(|e| format!("interface `{ifname}` is not running: {}", e.message))?;
    if running.public_key != Some(old_public) {
        return Err(format!(
            "interface `{ifname}` does not run the key of {} ({}): refusing to rotate",
            home.path().display(),
            old_uri.redacted()
        ));
    }

    // 1. The new key: the old URI with a new label and no id (genkey picks one).
    let label = options.label.clone().unwrap_or_else(|| {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        format!("{}-{secs}", old_uri.object.as_deref().unwrap_or("wg"))
    });
    let mut new_uri = old_uri.clone();
    new_uri.object = Some(label.clone());
    new_uri.id = None;
    let new_public = wg_pkcs11::key::token::genkey(&new_uri).map_err(|e| e.to_string())?;
    step(&format!("new key `{label}` generated in the chip"));
    // 2. For the server.
    println!("{}", b64(&new_public));
    let mut env = vec![
        ("WG_ROTATE_IFNAME", ifname.to_string()),
        ("WG_ROTATE_OLD_PUBLIC_KEY", b64(&old_public)),
        ("WG_ROTATE_NEW_PUBLIC_KEY", b64(&new_public)),
        ("WG_ROTATE_NEW_URI", new_uri.redacted()),
    ];
    let discard_new = |why: String| -> String {
        match wg_pkcs11::key::inventory::delete_key(&new_uri) {
            Ok(_) => format!("{why}; the new key `{label}` was deleted, nothing else changed"),
            Err(e) => format!("{why}; the new key `{label}` could not be deleted ({e})"),
        }
    };
    // The new key's attestation for the hook, when WG_ROTATE_ATTEST_NONCE_CMD is set
    // (cli/attest.rs): WG_ROTATE_EVIDENCE, WG_ROTATE_NONCE.
    let _evidence = super::attest::add_rotation_evidence(&new_uri, &mut env)
        .map_err(|e| discard_new(format!("attestation of the new key: {e}")))?;
    // 3. The server learns the new key.
    match &options.hook {
        Some(hook) => {
            step(&format!("running the hook: {hook}"));
            run_shell(hook, &env).map_err(|e| discard_new(format!("hook: {e}")))?;
        }
        None => {
            eprintln!(
                "rotate: give the server the new public key above, then press Enter (Ctrl-D aborts)"
            );
            let mut line = String::new();
            let read = std::io::stdin().read_line(&mut line).unwrap_or(0);
            if read == 0 {
                return Err(discard_new("aborted before the switch".into()));
            }
        }
    }
    // 4. Switch.
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    send_switch(ifname, &new_uri).map_err(discard_new)?;
    step("interface switched to the new key; handshaking with every peer");
    // 5. Verify: handshakes, then the check, within the timeout; else back to the old key.
    let deadline = Instant::now() + Duration::from_secs(options.timeout_secs);
    let roll_back = |why: String| -> String {
        match send_switch(ifname, &old_uri) {
            Ok(()) => format!(
                "{why}: switched back to the old key {}, which is still in the chip; the new key \
                 `{label}` is kept (the server may know it)",
                old_uri.redacted()
            ),
            Err(e) => format!("{why}; switching back to the old key failed too: {e}"),
        }
    };
    loop {
        match new_key_in_use(ifname, since, &new_public) {
            Ok(true) => break,
            Ok(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(false) => {
                return Err(roll_back(format!(
                    "no handshake with every peer within {} s",
                    options.timeout_secs
                )))
            }
            Err(e) => return Err(roll_back(e)),
        }
    }
    step("handshake with every peer done with the new key");
    if options.check.is_none() {
        step(
            "no --check given: the handshakes are the only proof that the new key carries traffic",
        );
    }
    if let Some(check) = &options.check {
        loop {
            match run_shell(check, &env) {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => return Err(roll_back(format!("check: {e}"))),
            }
        }
        step("the check passed through the tunnel with the new key");
    }
    // 6. The config (or its key file) follows.
    home.point_to(&new_uri.to_string())?;
    step(&format!("{} now names the new key", home.path().display()));
    // 7. Only now the old key goes.
    match wg_pkcs11::key::inventory::delete_key(&old_uri) {
        Ok(n) => step(&format!("old key deleted from the chip ({n} object(s))")),
        Err(e) => {
            return Err(format!(
                "rotation done, but the old key {} could not be deleted: {e}",
                old_uri.redacted()
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_interface_private_key_line_changes() {
        let text = "# device\n[Interface]\nAddress = 10.0.0.1/24\nprivatekey = pkcs11:object=old # comment\n\n[Peer]\nPrivateKey = not-this\n";
        let out = with_private_key(text, "pkcs11:object=new").unwrap();
        assert_eq!(
            out,
            "# device\n[Interface]\nAddress = 10.0.0.1/24\nPrivateKey = pkcs11:object=new\n\n[Peer]\nPrivateKey = not-this\n"
        );
        assert_eq!(private_key_line(text).unwrap().1, "pkcs11:object=old");
        assert!(with_private_key("[Peer]\nPrivateKey = x\n", "u").is_err());
    }

    #[test]
    fn atomic_write_keeps_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wg0.conf");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomically(&path, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left"
        );
    }

    /// An interface started by stock wg-quick: no PrivateKey in the config, the URI in
    /// IFNAME.pkcs11. rotate rewrites the key file (mode 0600 kept, comment kept) and leaves the
    /// config alone.
    #[test]
    fn a_wg_quick_interface_rotates_its_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("wg7.conf");
        let conf_text = "[Interface]\nListenPort = 51820\n\n[Peer]\nPublicKey = x\n";
        std::fs::write(&conf, conf_text).unwrap();
        let key_file = dir.path().join("wg7.pkcs11");
        std::fs::write(
            &key_file,
            "# the SE050 key\npkcs11:token=SE050;object=old # 2025\n",
        )
        .unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();

        let (home, uri) = KeyHome::locate(&conf).unwrap();
        assert_eq!(home.path(), key_file.as_path());
        assert_eq!(uri.object.as_deref(), Some("old"));
        home.point_to("pkcs11:token=SE050;object=new").unwrap();
        assert_eq!(
            std::fs::read_to_string(&key_file).unwrap(),
            "# the SE050 key\npkcs11:token=SE050;object=new # 2025\n"
        );
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key file's mode changed");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), conf_text);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "temporary file left"
        );
        // What `up` reads back is the new key.
        let (_, uri) = KeyHome::locate(&conf).unwrap();
        assert_eq!(uri.object.as_deref(), Some("new"));

        // A key file others may write is refused, as `up` refuses it.
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o602)).unwrap();
        assert!(KeyHome::locate(&conf)
            .unwrap_err()
            .contains("group or others"));
        // No PrivateKey and no key file: the error names both.
        std::fs::remove_file(&key_file).unwrap();
        let e = KeyHome::locate(&conf).unwrap_err();
        assert!(
            e.contains("no [Interface] PrivateKey") && e.contains("wg7.pkcs11"),
            "{e}"
        );
    }

    #[test]
    fn a_config_with_private_key_is_rewritten_itself() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("wg8.conf");
        std::fs::write(&conf, "[Interface]\nPrivateKey = pkcs11:object=old\n").unwrap();
        // A stray key file does not win over the config's PrivateKey.
        std::fs::write(dir.path().join("wg8.pkcs11"), "pkcs11:object=other\n").unwrap();
        let (home, uri) = KeyHome::locate(&conf).unwrap();
        assert_eq!(
            (home.path(), uri.object.as_deref()),
            (conf.as_path(), Some("old"))
        );
        home.point_to("pkcs11:object=new").unwrap();
        assert_eq!(
            std::fs::read_to_string(&conf).unwrap(),
            "[Interface]\nPrivateKey = pkcs11:object=new\n"
        );
    }

    #[test]
    fn key_file_forms_are_kept() {
        assert_eq!(
            with_key_file_uri("PrivateKey = pkcs11:object=a\r\n", "pkcs11:object=b").unwrap(),
            "PrivateKey = pkcs11:object=b\r\n"
        );
        assert_eq!(
            with_key_file_uri("pkcs11:object=a", "pkcs11:object=b").unwrap(),
            "pkcs11:object=b"
        );
        assert!(with_key_file_uri("# nothing\n", "u").is_err());
        assert!(with_key_file_uri("pkcs11:object=a\npkcs11:object=c\n", "u").is_err());
    }
}

#[cfg(test)]
mod proof_tests {
    use super::*;
    use std::time::Duration;
    use wg_pkcs11::uapi::{DeviceInfo, PeerInfo};

    fn device(session_key: [u8; 32], handshake_secs: u64) -> DeviceInfo {
        DeviceInfo {
            peers: vec![PeerInfo {
                public_key: [9; 32],
                endpoint: Some("10.0.0.1:51820".parse().unwrap()),
                last_handshake: Some(Duration::from_secs(handshake_secs)),
                session_static_key: Some(session_key),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// An old-key session confirmed after the switch is no proof; a new-key one is.
    #[test]
    fn only_a_session_of_the_new_key_counts() {
        let (old, new) = ([1; 32], [2; 32]);
        let since = Duration::from_secs(100);
        assert!(!every_peer_on(&device(old, 101), since, &new));
        assert!(every_peer_on(&device(new, 101), since, &new));
        assert!(!every_peer_on(&device(new, 99), since, &new));
        let mut no_session = device(new, 101);
        no_session.peers[0].session_static_key = None;
        assert!(!every_peer_on(&no_session, since, &new));
    }
}
