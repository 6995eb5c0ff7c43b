//! Where a config's names point, and where the key's URI may live besides `PrivateKey`.
//!
//! `IFNAME` means `/etc/wireguard/IFNAME.conf`, as for wg-quick (the directory can be changed
//! with `$WG_PKCS11_CONFIG_DIR`, for tests and unusual layouts).
//!
//! # The key file: `IFNAME.pkcs11` next to `IFNAME.conf`
//!
//! Stock `wg-quick` hands everything it does not handle itself to `wg setconf`, which cannot
//! parse a `pkcs11:` `PrivateKey`, and `wg-quick save` rewrites the file from `wg showconf`,
//! dropping every comment and every key `wg` does not know. The one place both leave alone is
//! another file. So for stock wg-quick, the config has no `PrivateKey` and the key's URI is in
//! `/etc/wireguard/IFNAME.pkcs11` (one line, `pkcs11:...`, or `PrivateKey = pkcs11:...`; `#`
//! comments). `wg-pkcs11 IFNAME` (what wg-quick runs) reads it; so does `wg-pkcs11 up` when the
//! config has no `PrivateKey`. The file must not be writable by group or others: whoever can
//! change it chooses the interface's identity.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use wg_pkcs11::config::{Config, ConfigErrorKind, PrivateKeySource};
use wg_pkcs11::uri::Pkcs11Uri;

pub const DEFAULT_CONFIG_DIR: &str = "/etc/wireguard";

/// The directory `IFNAME` is looked up in.
pub fn config_dir() -> PathBuf {
    std::env::var_os("WG_PKCS11_CONFIG_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_DIR))
}

/// Whether `name` is an interface name as wg-quick tells names from paths
/// (`^[a-zA-Z0-9_=+.-]{1,15}$`).
pub fn is_interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_=+.-".contains(c))
}

/// `wg0` -> `/etc/wireguard/wg0.conf`; anything else is a path, as wg-quick reads its argument.
pub fn config_path(argument: &str) -> PathBuf {
    if is_interface_name(argument) {
        config_dir().join(format!("{argument}.conf"))
    } else {
        PathBuf::from(argument)
    }
}

/// `DIR/wg0.conf` -> `DIR/wg0.pkcs11`.
pub fn key_file_for_config(config: &Path) -> PathBuf {
    config.with_extension("pkcs11")
}

/// The key file of an interface started by name only (`wg-pkcs11 IFNAME`, from wg-quick).
pub fn key_file_for_interface(ifname: &str) -> PathBuf {
    config_dir().join(format!("{ifname}.pkcs11"))
}

/// Read the URI from a key file.
pub fn read_key_file(path: &Path) -> Result<Pkcs11Uri, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{}: refusing a key file that group or others may write (mode {:o}); chmod 600 it",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let uri = parse_key_file(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    warn_if_pin_readable(path, &uri);
    Ok(uri)
}

/// The content of a key file: one `pkcs11:` URI, optionally written `PrivateKey = URI`.
pub fn parse_key_file(text: &str) -> Result<Pkcs11Uri, String> {
    let mut lines = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty());
    let Some(line) = lines.next() else {
        return Err("no pkcs11: URI in the file".into());
    };
    if lines.next().is_some() {
        return Err("more than one line: the file holds one pkcs11: URI".into());
    }
    let uri = match line.split_once('=') {
        Some((key, value)) if key.trim().eq_ignore_ascii_case("PrivateKey") => value.trim(),
        _ => line,
    };
    if !uri.starts_with("pkcs11:") {
        // Not echoed: it may be a base64 private key.
        return Err("its line is not a pkcs11: URI".into());
    }
    Pkcs11Uri::parse(uri).map_err(|e| format!("bad pkcs11 URI: {e}"))
}

/// A file that holds a `pin-value` holds the PIN: warn, as wg-quick warns about a
/// world-accessible config, when group or others may access it.
pub fn warn_if_pin_readable(path: &Path, uri: &Pkcs11Uri) {
    if uri.pin_value.is_none() {
        return;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if wg_pkcs11::key::pin::others_may_access(meta.mode()) {
            log::warn!(
                "{} holds the token's PIN (pin-value in the key's URI) and is accessible by \
                 group or others (mode {:03o}): chmod 600 it, or move the PIN to a file or a \
                 systemd credential (pin-source=)",
                path.display(),
                meta.mode() & 0o777
            );
        }
    }
}

/// Load a config; if it has no `PrivateKey`, the key comes from its `.pkcs11` file.
pub fn load_config(path: &Path) -> Result<Config, String> {
    // Wiped when dropped: the file may hold a PrivateKey or PresharedKeys in base64.
    let text = wg_pkcs11::config::read_secret_text(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match Config::parse(path, &text) {
        Ok(config) => {
            if let PrivateKeySource::Pkcs11(uri) = &config.interface.private_key {
                warn_if_pin_readable(path, uri);
            }
            Ok(config)
        }
        Err(e) if e.kind == ConfigErrorKind::MissingPrivateKey => {
            let key_file = key_file_for_config(path);
            if !key_file.exists() {
                return Err(format!(
                    "{e} (and no key file {} with the key's pkcs11: URI)",
                    key_file.display()
                ));
            }
            let uri = read_key_file(&key_file)?;
            Config::parse_with_default_key(path, &text, PrivateKeySource::Pkcs11(uri))
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn names_and_paths_as_wg_quick_tells_them_apart() {
        assert!(is_interface_name("wg0"));
        assert!(is_interface_name("a_b=c+d.e-f"));
        assert!(!is_interface_name("wg0.conf/"));
        assert!(!is_interface_name("./wg0.conf"));
        assert!(!is_interface_name("sixteen-chars-xx"));
        assert!(!is_interface_name(""));
        assert_eq!(
            key_file_for_config(Path::new("/etc/wireguard/wg0.conf")),
            Path::new("/etc/wireguard/wg0.pkcs11")
        );
    }

    #[test]
    fn key_file_contents() {
        let uri = parse_key_file("# the SE050 key\npkcs11:token=SE050;object=wg?module-name=x\n")
            .unwrap();
        assert_eq!(uri.object.as_deref(), Some("wg"));
        let uri = parse_key_file("PrivateKey = pkcs11:object=k\n").unwrap();
        assert_eq!(uri.object.as_deref(), Some("k"));
        assert!(parse_key_file("").unwrap_err().contains("no pkcs11"));
        assert!(parse_key_file("pkcs11:object=a\npkcs11:object=b\n")
            .unwrap_err()
            .contains("more than one"));
        let not_uri = parse_key_file("yGp5pJYu8m5nW0e0WgXL4Xl2jY1fSyVX8+5M8A1X0mE=\n").unwrap_err();
        assert!(not_uri.contains("not a pkcs11: URI"), "{not_uri}");
        // A base64 private key in the wrong place is not echoed.
        assert!(!not_uri.contains("yGp5"), "{not_uri}");
        assert!(parse_key_file("pkcs11:colour=red\n").is_err());
    }

    #[test]
    fn a_key_file_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wg0.pkcs11");
        std::fs::write(&path, "pkcs11:object=k\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_key_file(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(read_key_file(&path)
            .unwrap_err()
            .contains("group or others"));
    }

    #[test]
    fn a_config_without_private_key_takes_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("wg7.conf");
        std::fs::write(&conf, "[Interface]\nListenPort = 5\n").unwrap();
        let e = load_config(&conf).unwrap_err();
        assert!(e.contains("wg7.pkcs11"), "{e}");
        let key = dir.path().join("wg7.pkcs11");
        std::fs::write(&key, "pkcs11:object=k\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = load_config(&conf).unwrap();
        assert!(matches!(
            config.interface.private_key,
            PrivateKeySource::Pkcs11(ref u) if u.object.as_deref() == Some("k")
        ));
    }
}
