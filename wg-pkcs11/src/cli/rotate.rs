//! Key rotation without downtime.
//!
//! `set IFNAME private-key-uri URI` switches a running interface to another token key (the
//! daemon handshakes with every peer at once, see `device/key_switch.rs`).
//! `rotate IFNAME` scripts the device side of a whole rotation (see [`rotate`]).

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

/// What `rotate` is told on its command line.
#[derive(Debug, Default)]
pub struct RotateOptions {
    pub ifname: String,
    /// The interface's config (default /etc/wireguard/IFNAME.conf): its PrivateKey URI names the
    /// old key, and it is rewritten to the new one.
    pub config: Option<String>,
    /// Label of the new key (default: the old label with the date and time).
    pub label: Option<String>,
    /// Registers the new key with the server (`sh -c`); without it, wait for Enter on stdin.
    pub hook: Option<String>,
    /// Must succeed through the tunnel with the new key before the old key is deleted.
    pub check: Option<String>,
    /// Seconds to wait for the handshakes and the check.
    pub timeout_secs: u64,
}

const DEFAULT_TIMEOUT_SECS: u64 = 30;

pub fn parse_rotate_args(args: &[&str]) -> Result<RotateOptions, String> {
    let mut options = RotateOptions {
        timeout_secs: DEFAULT_TIMEOUT_SECS,
        ..Default::default()
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = |name: &str| {
            rest.next()
                .map(|v| v.to_string())
                .ok_or_else(|| format!("`{name}` needs a value"))
        };
        match *arg {
            "--config" => options.config = Some(value("--config")?),
            "--label" => options.label = Some(value("--label")?),
            "--hook" => options.hook = Some(value("--hook")?),
            "--check" => options.check = Some(value("--check")?),
            "--timeout" => {
                let v = value("--timeout")?;
                options.timeout_secs = v
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("--timeout `{v}` is not a number of seconds"))?;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option `{flag}`")),
            name if options.ifname.is_empty() => options.ifname = name.to_string(),
            extra => return Err(format!("unexpected argument `{extra}`")),
        }
    }
    if options.ifname.is_empty() {
        return Err("`rotate` needs the interface name".into());
    }
    Ok(options)
}

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

/// Every peer with an endpoint has completed a handshake since `since`, and received bytes
/// after it: the new key is accepted and carries traffic.
fn new_key_in_use(ifname: &str, since: std::time::Duration) -> Result<bool, String> {
    let device = uapi::client::get(&uapi::socket_path(ifname))
        .map_err(|e| format!("interface `{ifname}`: {}", e.message))?;
    let peers: Vec<_> = device
        .peers
        .iter()
        .filter(|p| p.endpoint.is_some())
        .collect();
    Ok(!peers.is_empty()
        && peers
            .iter()
            .all(|p| p.last_handshake.is_some_and(|t| t >= since)))
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
pub fn rotate(options: &RotateOptions) -> Result<(), String> {
    use std::time::{Duration, Instant, SystemTime};
    let ifname = options.ifname.as_str();
    let config_path = std::path::PathBuf::from(
        options
            .config
            .clone()
            .unwrap_or_else(|| format!("/etc/wireguard/{ifname}.conf")),
    );
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    let (_, old_text) = private_key_line(&text)
        .ok_or_else(|| format!("{}: no [Interface] PrivateKey", config_path.display()))?;
    let old_uri = Pkcs11Uri::parse(&old_text).map_err(|e| {
        format!(
            "{}: PrivateKey is not a pkcs11: URI ({e}): rotate works on token keys",
            config_path.display()
        )
    })?;
    let old_public = TokenKey::open(&old_uri)
        .map_err(|e| e.to_string())?
        .public_key();
    let running = uapi::client::get(&uapi::socket_path(ifname))
        .map_err(|e| format!("interface `{ifname}` is not running: {}", e.message))?;
    if running.public_key != Some(old_public) {
        return Err(format!(
            "interface `{ifname}` does not run the key of {} ({}): refusing to rotate",
            config_path.display(),
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
    let env = [
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
        match new_key_in_use(ifname, since) {
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
    // 6. The config follows.
    let updated = with_private_key(&text, &new_uri.to_string())?;
    write_atomically(&config_path, &updated)?;
    step(&format!("{} now names the new key", config_path.display()));
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

    #[test]
    fn options() {
        let o = parse_rotate_args(&["wg0", "--hook", "x", "--timeout", "5"]).unwrap();
        assert_eq!(
            (o.ifname.as_str(), o.hook.as_deref(), o.timeout_secs),
            ("wg0", Some("x"), 5)
        );
        assert!(parse_rotate_args(&[]).is_err());
        assert!(parse_rotate_args(&["wg0", "--timeout", "0"]).is_err());
        assert!(parse_rotate_args(&["wg0", "--bogus"]).is_err());
    }
}
