//! The module's configuration: a small TOML file.
//!
//! Found through `$PKCS11_SE050_CONF`, else `/etc/pkcs11-se050/pkcs11-se050.toml`.
//!
//! Fail closed: the virtual SE050 (whose private keys sit in a plain state file) is used only
//! when a configuration file says `transport = "virtual"`. Without any file, or with a file that
//! does not name a transport, the module means the real chip on `/dev/i2c-1` at 0x48; if there is
//! none, opening fails with an error naming the configuration file looked for and the device.
//! Every error names the file and the key that is wrong: a PKCS#11 host can only print a CKR code.

use crate::private_file::Access;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming the configuration file.
pub const CONF_ENV: &str = "PKCS11_SE050_CONF";
/// The system-wide configuration file, used when `$PKCS11_SE050_CONF` is not set.
pub const SYSTEM_CONF: &str = "/etc/pkcs11-se050/pkcs11-se050.toml";
/// Name of the virtual chip's state file inside the default state directory.
const DEFAULT_STATE_FILE: &str = "se050.state";
/// Address of the SE050 on its I2C bus (7-bit).
pub const DEFAULT_I2C_ADDRESS: u8 = 0x48;
pub const DEFAULT_I2C_DEVICE: &str = "/dev/i2c-1";
pub const DEFAULT_TOKEN_LABEL: &str = "SE050";
/// Wrong PINs the chip accepts before it blocks a PIN (`pin_max_attempts`).
pub const DEFAULT_PIN_MAX_ATTEMPTS: u16 = 10;
/// The chip keeps the maximum in two bytes; 0 would mean no limit, which is refused.
const MAX_PIN_MAX_ATTEMPTS: i64 = 0x7FFF;
/// The longest configuration file read.
pub const MAX_CONF_FILE: u64 = 64 * 1024;
/// The keys a configuration may have (errors on a private file name only these).
const KNOWN_KEYS: [&str; 13] = [
    "transport",
    "virtual_state",
    "virtual_latency_ms",
    "i2c_device",
    "i2c_address",
    "token_label",
    "ec_point",
    "lock_timeout_ms",
    "pin_max_attempts",
    "scp03_keys",
    "scp03_kvn",
    "virtual_scp03_keys",
    "virtual_scp03_required",
];
/// The most `lock_timeout_ms` may ask for: ten minutes.
const MAX_LOCK_TIMEOUT_MS: u64 = 600_000;

/// How the module reaches its chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportConfig {
    I2c { device: PathBuf, address: u8 },
    Virtual { state: PathBuf, latency: Duration },
}

/// How CKA_EC_POINT of an X25519 public key is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcPointFormat {
    /// DER OCTET STRING `04 20 || key`: what PKCS#11 3.0-era tools (OpenSC 0.23) expect.
    Der,
    /// The 32 raw bytes, as PKCS#11 3.1 says.
    Raw,
}

/// PlatformSCP03 (scp03/): the host's keys, and the virtual chip's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scp03Config {
    /// `scp03_keys`: the host's key file (NXP format). Set: every applet command goes through
    /// the secure channel, never in plain. None: the plain link.
    pub keys_file: Option<PathBuf>,
    /// `scp03_kvn`: the key version (NXP's default 0x0B).
    pub kvn: u8,
    /// `virtual_scp03_keys`: the virtual chip's initial keys.
    pub virtual_keys: VirtualScp03Keys,
    /// `virtual_scp03_required`: the virtual chip refuses plain applet commands.
    pub virtual_required: bool,
}

/// The virtual chip's initial PlatformSCP03 keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtualScp03Keys {
    /// NXP's published development keys of a variant (e.g. "SE050C2").
    Published(String),
    /// A key file in NXP's format.
    File(PathBuf),
}

impl Default for Scp03Config {
    fn default() -> Self {
        Scp03Config {
            keys_file: None,
            kvn: crate::scp03::keys::DEFAULT_KVN,
            virtual_keys: VirtualScp03Keys::Published(
                crate::scp03::keys::DEFAULT_VIRTUAL_VARIANT.to_string(),
            ),
            virtual_required: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub transport: TransportConfig,
    pub token_label: String,
    pub ec_point: EcPointFormat,
    /// How long one exchange waits for another process's hold on the chip's inter-process
    /// lock before the call fails (CKR_DEVICE_ERROR) naming the lock file and its holder.
    pub lock_timeout: Duration,
    /// Where this configuration came from (for messages); None for the embedded default.
    pub source: Option<PathBuf>,
    /// PlatformSCP03 settings.
    pub scp03: Scp03Config,
    /// `pin_max_attempts`: how many wrong PINs in a row the chip accepts before it blocks the
    /// PIN (user and SO alike). Written into the SO PIN when C_InitToken creates it; every later
    /// PIN (C_InitPIN, C_SetPIN) keeps the maximum the chip has, so a PIN holder's own
    /// configuration cannot raise it.
    pub pin_max_attempts: u16,
}

#[derive(Debug)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub key: Option<String>,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = match &self.file {
            Some(path) => path.display().to_string(),
            None => "configuration".to_string(),
        };
        match &self.key {
            Some(key) => write!(f, "{file}: key `{key}`: {}", self.problem),
            None => write!(f, "{file}: {}", self.problem),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The file as written; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    transport: Option<String>,
    virtual_state: Option<PathBuf>,
    virtual_latency_ms: Option<u64>,
    i2c_device: Option<PathBuf>,
    i2c_address: Option<i64>,
    token_label: Option<String>,
    ec_point: Option<String>,
    lock_timeout_ms: Option<u64>,
    pin_max_attempts: Option<i64>,
    // PlatformSCP03 (scp03/)
    scp03_keys: Option<PathBuf>,
    scp03_kvn: Option<i64>,
    virtual_scp03_keys: Option<String>,
    virtual_scp03_required: Option<bool>,
}

impl Config {
    /// Loads the configuration the module should use in this process.
    pub fn load() -> Result<Config, ConfigError> {
        let path = match conf_from_environment(std::env::var_os(CONF_ENV), runs_with_privileges()) {
            Some(path) => path,
            None => {
                let system = Path::new(SYSTEM_CONF);
                if !system.exists() {
                    return Ok(Config::embedded_default());
                }
                system.to_path_buf()
            }
        };
        Config::from_file(&path)
    }

    /// Reads and checks one file: opened once without following a symlink, a regular file of
    /// at most [`MAX_CONF_FILE`] bytes, owned by root or this process's user and writable by
    /// nobody else. Its text appears in errors only when everybody may read it anyway.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let file =
            crate::private_file::read(path, Access::OthersMayRead, MAX_CONF_FILE).map_err(|e| {
                ConfigError {
                    file: Some(path.to_path_buf()),
                    key: None,
                    problem: e.problem,
                }
            })?;
        let world_readable = file.mode & 0o004 != 0;
        Config::parse_showing(&file.text, Some(path), world_readable)
    }

    /// Parses TOML text; `file` names it in errors and anchors relative state paths.
    pub fn parse(text: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::parse_showing(text, file, true)
    }

    /// `parse`; the parser's message (which may quote the file) only when `show_text`, else
    /// just the line and, if it is one, the known key on it.
    fn parse_showing(
        text: &str,
        file: Option<&Path>,
        show_text: bool,
    ) -> Result<Config, ConfigError> {
        let error = |key: Option<&str>, problem: String| ConfigError {
            file: file.map(Path::to_path_buf),
            key: key.map(str::to_string),
            problem,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // Name the key on the line the parser points at (a mistyped value's message does not).
            let start = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
            let line_no = text[..start].matches('\n').count() + 1;
            let line = text.lines().nth(line_no - 1).unwrap_or("");
            let key = line
                .split('=')
                .next()
                .map(str::trim)
                .filter(|k| !k.is_empty() && line.contains('='))
                .filter(|k| show_text || KNOWN_KEYS.contains(k));
            if show_text {
                error(key, format!("line {line_no}: {}", e.message().trim()))
            } else {
                error(
                    key,
                    format!(
                        "line {line_no}: not valid here (the file is not world-readable, so its \
                         text is not shown)"
                    ),
                )
            }
        })?;

        // No transport named means the real chip: the virtual one must be asked for.
        let scp03 = parse_scp03(
            &raw,
            file,
            raw.transport.as_deref() == Some("virtual"),
            show_text,
        )
        .map_err(|(k, p)| error(Some(k), p))?;
        let transport_name = raw.transport.as_deref().unwrap_or("i2c");
        let transport = match transport_name {
            "virtual" => {
                if raw.i2c_device.is_some() || raw.i2c_address.is_some() {
                    return Err(error(
                        Some(if raw.i2c_device.is_some() {
                            "i2c_device"
                        } else {
                            "i2c_address"
                        }),
                        "only meaningful with transport = \"i2c\"".into(),
                    ));
                }
                let state = match raw.virtual_state {
                    Some(p) if p.as_os_str().is_empty() => {
                        return Err(error(Some("virtual_state"), "empty path".into()))
                    }
                    Some(p) if p.is_relative() => match file.and_then(Path::parent) {
                        Some(dir) => dir.join(p),
                        None => p,
                    },
                    Some(p) => p,
                    None => default_state_dir()
                        .map_err(|e| error(Some("virtual_state"), e))?
                        .join(DEFAULT_STATE_FILE),
                };
                let latency_ms = raw.virtual_latency_ms.unwrap_or(0);
                if latency_ms > 60_000 {
                    return Err(error(
                        Some("virtual_latency_ms"),
                        format!("{latency_ms} ms is more than a minute per operation"),
                    ));
                }
                TransportConfig::Virtual {
                    state,
                    latency: Duration::from_millis(latency_ms),
                }
            }
            "i2c" => {
                if raw.virtual_state.is_some() || raw.virtual_latency_ms.is_some() {
                    return Err(error(
                        Some(if raw.virtual_state.is_some() {
                            "virtual_state"
                        } else {
                            "virtual_latency_ms"
                        }),
                        "only meaningful with transport = \"virtual\"".into(),
                    ));
                }
                let device = raw
                    .i2c_device
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_I2C_DEVICE));
                let address = match raw.i2c_address {
                    None => DEFAULT_I2C_ADDRESS,
                    Some(a) if (0x08..=0x77).contains(&a) => a as u8,
                    Some(a) => {
                        return Err(error(
                            Some("i2c_address"),
                            format!("{a:#x} is not a 7-bit I2C device address (0x08..=0x77)"),
                        ))
                    }
                };
                TransportConfig::I2c { device, address }
            }
            other => {
                return Err(error(
                    Some("transport"),
                    format!(
                        "{} is not a transport; use \"virtual\" or \"i2c\"",
                        shown(show_text, other)
                    ),
                ))
            }
        };

        let token_label = raw
            .token_label
            .unwrap_or_else(|| DEFAULT_TOKEN_LABEL.to_string());
        if token_label.is_empty() || token_label.len() > 32 {
            return Err(error(
                Some("token_label"),
                format!("must be 1 to 32 bytes of UTF-8, got {}", token_label.len()),
            ));
        }
        let ec_point = match raw.ec_point.as_deref() {
            None | Some("der") => EcPointFormat::Der,
            Some("raw") => EcPointFormat::Raw,
            Some(other) => {
                return Err(error(
                    Some("ec_point"),
                    format!(
                        "{} is not a format; use \"der\" or \"raw\"",
                        shown(show_text, other)
                    ),
                ))
            }
        };
        let lock_timeout = match raw.lock_timeout_ms {
            None => crate::device::lock::DEFAULT_LOCK_TIMEOUT,
            Some(ms) if (1..=MAX_LOCK_TIMEOUT_MS).contains(&ms) => Duration::from_millis(ms),
            Some(ms) => {
                return Err(error(
                    Some("lock_timeout_ms"),
                    format!("{ms} is outside 1..={MAX_LOCK_TIMEOUT_MS} milliseconds"),
                ))
            }
        };
        let pin_max_attempts = match raw.pin_max_attempts {
            None => DEFAULT_PIN_MAX_ATTEMPTS,
            Some(n) if (1..=MAX_PIN_MAX_ATTEMPTS).contains(&n) => n as u16,
            Some(n) => {
                return Err(error(
                    Some("pin_max_attempts"),
                    format!(
                        "{n} is outside 1..={MAX_PIN_MAX_ATTEMPTS} (a PIN must lock some time)"
                    ),
                ))
            }
        };
        Ok(Config {
            transport,
            token_label,
            ec_point,
            lock_timeout,
            source: file.map(Path::to_path_buf),
            scp03,
            pin_max_attempts,
        })
    }

    /// The configuration without any file: the real chip at its default place. Never the
    /// virtual chip, whose keys would be a copyable file.
    pub fn embedded_default() -> Config {
        Config {
            transport: TransportConfig::I2c {
                device: PathBuf::from(DEFAULT_I2C_DEVICE),
                address: DEFAULT_I2C_ADDRESS,
            },
            token_label: DEFAULT_TOKEN_LABEL.to_string(),
            ec_point: EcPointFormat::Der,
            lock_timeout: crate::device::lock::DEFAULT_LOCK_TIMEOUT,
            source: None,
            scp03: Scp03Config::default(),
            pin_max_attempts: DEFAULT_PIN_MAX_ATTEMPTS,
        }
    }

    /// Where this configuration came from, for error messages: the file, or which files were
    /// looked for when there was none.
    pub fn origin(&self) -> String {
        match &self.source {
            Some(path) => format!("configuration {}", path.display()),
            None => format!(
                "no configuration file (${CONF_ENV} is unset and {SYSTEM_CONF} does not exist), \
                 so the real chip at its default place"
            ),
        }
    }

    /// Whether the chip is the virtual SE050, whose keys are not in hardware.
    pub fn is_virtual(&self) -> bool {
        matches!(self.transport, TransportConfig::Virtual { .. })
    }
}

/// Whether the kernel marked this process as running with privileges its caller lacks
/// (setuid/setgid, file capabilities): AT_SECURE, as glibc's secure_getenv decides.
pub fn runs_with_privileges() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector the kernel gave the process; it takes a
    // plain integer and returns 0 for an unknown type.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The configuration `$PKCS11_SE050_CONF` names, unless the process runs with privileges:
/// then its caller's environment must not choose what the module trusts (nor which root-only
/// file its errors quote), and the system configuration is used.
fn conf_from_environment(value: Option<std::ffi::OsString>, privileged: bool) -> Option<PathBuf> {
    let value = value?;
    if privileged {
        log::warn!(
            "${CONF_ENV} ignored: this process runs with privileges its caller lacks (AT_SECURE, \
             e.g. setuid); using {SYSTEM_CONF}"
        );
        return None;
    }
    Some(PathBuf::from(value))
}

/// A value from the file, for an error: quoted when the file is world-readable anyway.
fn shown(show_text: bool, value: &str) -> String {
    if show_text {
        format!("`{value}`")
    } else {
        "the value (not shown: the file is not world-readable)".into()
    }
}

/// A path from the file, relative ones anchored at the file's directory.
fn anchored(path: &Path, file: Option<&Path>) -> PathBuf {
    match file.and_then(Path::parent) {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// The PlatformSCP03 keys; the error names the key.
fn parse_scp03(
    raw: &RawConfig,
    file: Option<&Path>,
    is_virtual: bool,
    show_text: bool,
) -> Result<Scp03Config, (&'static str, String)> {
    let mut out = Scp03Config::default();
    if let Some(path) = &raw.scp03_keys {
        if path.as_os_str().is_empty() {
            return Err(("scp03_keys", "empty path".into()));
        }
        out.keys_file = Some(anchored(path, file));
    }
    match raw.scp03_kvn {
        None => {}
        Some(_) if raw.scp03_keys.is_none() => {
            return Err(("scp03_kvn", "only meaningful with scp03_keys".into()))
        }
        Some(kvn) if (0x01..=0x7F).contains(&kvn) => out.kvn = kvn as u8,
        Some(kvn) => {
            return Err((
                "scp03_kvn",
                format!("{kvn:#x} is not a key version (0x01..=0x7F)"),
            ))
        }
    }
    if !is_virtual && (raw.virtual_scp03_keys.is_some() || raw.virtual_scp03_required.is_some()) {
        let key = if raw.virtual_scp03_keys.is_some() {
            "virtual_scp03_keys"
        } else {
            "virtual_scp03_required"
        };
        return Err((key, "only meaningful with transport = \"virtual\"".into()));
    }
    if let Some(keys) = &raw.virtual_scp03_keys {
        out.virtual_keys = if crate::scp03::StaticKeys::published(keys).is_some() {
            VirtualScp03Keys::Published(keys.clone())
        } else if keys.contains('/') || keys.contains('.') {
            VirtualScp03Keys::File(anchored(Path::new(keys), file))
        } else {
            let names: Vec<&str> = crate::scp03::keys::VARIANTS.iter().map(|v| v.0).collect();
            return Err((
                "virtual_scp03_keys",
                format!(
                    "{} is neither a variant ({}) nor a key file path",
                    shown(show_text, keys),
                    names.join(", ")
                ),
            ));
        };
    }
    out.virtual_required = raw.virtual_scp03_required.unwrap_or(false);
    Ok(out)
}

/// /var/lib/pkcs11-se050 for root, $XDG_STATE_HOME/pkcs11-se050 (or ~/.local/state/...) else.
fn default_state_dir() -> Result<PathBuf, String> {
    // /proc/self belongs to the effective user: no unsafe call needed outside the ABI layer.
    use std::os::unix::fs::MetadataExt;
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if is_root {
        return Ok(PathBuf::from("/var/lib/pkcs11-se050"));
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("pkcs11-se050"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/pkcs11-se050")),
        None => Err("no state directory: neither XDG_STATE_HOME nor HOME is set".into()),
    }
}

#[cfg(test)]
mod tests;
