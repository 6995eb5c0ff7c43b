//! wg-quick configuration files, with one addition: `PrivateKey` may be a `pkcs11:` URI.
//!
//! The format is wg-quick(8)'s: `[Interface]` and `[Peer]` sections, `Key = Value` lines,
//! `#` starts a comment, key and section names are case-insensitive, list values are
//! comma-separated and list keys may repeat. Every error names the file, the line and what is
//! wrong, because a config is read by a person at boot when the tunnel does not come up.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;

pub use crate::endpoint::Endpoint;
use crate::endpoint::Resolver;
use crate::secret_mem::Secret32;
use crate::uri::Pkcs11Uri;

mod parse;
pub use parse::{decode_key, decode_secret, parse_endpoint, read_secret_text};

/// An address with a prefix length: `10.0.0.1/24`, `fd00::/64`. Host bits are kept (an
/// interface `Address` needs them); [`Cidr::network`] clears them (what routing wants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// The same prefix with the host bits cleared.
    pub fn network(&self) -> Cidr {
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Cidr {
            addr,
            prefix: self.prefix,
        }
    }

    pub fn is_default_route(&self) -> bool {
        self.prefix == 0
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDR/PREFIX`, or a bare address meaning a host route (/32 or /128) as wg(8) takes it.
    fn from_str(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("`{text}` is not an IP address with a prefix (bad address `{addr}`)")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => {
                    return Err(format!(
                        "`{text}`: prefix length `{p}` is not a number from 0 to {max}"
                    ))
                }
            },
        };
        Ok(Cidr { addr, prefix })
    }
}

/// Where the interface's static private key lives.
// One per config: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum PrivateKeySource {
    /// A plain WireGuard key in the file (base64), as wg-quick has it: decoded straight into
    /// locked memory (moving the handle never copies the key).
    Inline(Secret32),
    /// A key in a PKCS#11 token: the key never leaves it.
    Pkcs11(Pkcs11Uri),
    /// An inline key after [`Config::forget_secrets`]: the running key object holds it now.
    Forgotten,
}

impl fmt::Debug for PrivateKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrivateKeySource::Inline(_) => write!(f, "Inline(<secret>)"),
            PrivateKeySource::Pkcs11(uri) => write!(f, "Pkcs11({uri:?})"),
            PrivateKeySource::Forgotten => write!(f, "Forgotten"),
        }
    }
}

/// The `Table` setting of wg-quick.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Table {
    /// Routes in the main table, default routes through fwmark policy routing.
    #[default]
    Auto,
    /// No routes at all.
    Off,
    /// Routes in this table (number or name from /etc/iproute2/rt_tables).
    Named(String),
}

#[derive(Debug, Clone)]
pub struct InterfaceConfig {
    pub private_key: PrivateKeySource,
    pub listen_port: Option<u16>,
    pub addresses: Vec<Cidr>,
    /// DNS servers and search domains, as written (applied through resolvconf if present).
    pub dns: Vec<String>,
    pub mtu: Option<u32>,
    /// `None` when absent or `off`.
    pub fwmark: Option<u32>,
    pub table: Table,
    pub pre_up: Vec<String>,
    pub post_up: Vec<String>,
    pub pre_down: Vec<String>,
    pub post_down: Vec<String>,
}

#[derive(Clone)]
pub struct PeerConfig {
    pub public_key: [u8; 32],
    /// In locked memory, as the device keeps it (see [`Config::forget_secrets`]).
    pub preshared_key: Option<Secret32>,
    /// As written (host bits included); use [`Cidr::network`] for routing.
    pub allowed_ips: Vec<Cidr>,
    /// As written: a host name is resolved when the interface comes up
    /// ([`Config::resolve_endpoints`]), never while the file is parsed.
    pub endpoint: Option<Endpoint>,
    /// Seconds; `None` when absent, `off` or 0.
    pub persistent_keepalive: Option<u16>,
    /// Line of the `[Peer]` header, for messages about this peer.
    pub line: usize,
}

impl fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConfig")
            .field(
                "public_key",
                &base64::engine::general_purpose::STANDARD.encode(self.public_key),
            )
            .field(
                "preshared_key",
                &self.preshared_key.as_ref().map(|_| "<secret>"),
            )
            .field("allowed_ips", &self.allowed_ips)
            .field("endpoint", &self.endpoint)
            .field("persistent_keepalive", &self.persistent_keepalive)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub interface: InterfaceConfig,
    pub peers: Vec<PeerConfig>,
    /// Things accepted but not acted on (SaveConfig, unknown-but-harmless settings), to log.
    pub warnings: Vec<String>,
}

/// What is wrong in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigErrorKind {
    Io(String),
    UnknownSection(String),
    KeyOutsideSection(String),
    MissingEquals,
    EmptyValue(String),
    UnknownKey {
        section: &'static str,
        key: String,
    },
    DuplicateKey(String),
    DuplicateInterface,
    MissingInterface,
    BadBase64 {
        key: String,
    },
    BadKeyLength {
        key: String,
        length: usize,
    },
    BadUri(String),
    BadCidr(String),
    BadNumber {
        key: String,
        value: String,
        expected: String,
    },
    BadEndpoint(String),
    DuplicatePeer(String),
    MissingPublicKey,
    MissingPrivateKey,
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigErrorKind::*;
        match self {
            Io(e) => write!(f, "cannot read: {e}"),
            UnknownSection(s) => {
                write!(f, "unknown section `{s}` (expected [Interface] or [Peer])")
            }
            KeyOutsideSection(k) => write!(f, "`{k}` before any [Interface] or [Peer] section"),
            MissingEquals => write!(f, "expected `Key = Value`"),
            EmptyValue(k) => write!(f, "`{k}` has no value"),
            UnknownKey { section, key } => write!(f, "unknown key `{key}` in [{section}]"),
            DuplicateKey(k) => write!(f, "`{k}` given twice in one section"),
            DuplicateInterface => write!(f, "a second [Interface] section"),
            MissingInterface => write!(f, "no [Interface] section"),
            BadBase64 { key } => write!(f, "`{key}` is not valid base64"),
            BadKeyLength { key, length } => {
                write!(
                    f,
                    "`{key}` decodes to {length} bytes, a WireGuard key has 32"
                )
            }
            BadUri(e) => write!(f, "bad pkcs11 URI in PrivateKey: {e}"),
            BadCidr(e) => write!(f, "{e}"),
            BadNumber {
                key,
                value,
                expected,
            } => write!(f, "`{key}`: `{value}` is not {expected}"),
            BadEndpoint(e) => write!(f, "bad Endpoint: {e}"),
            DuplicatePeer(k) => write!(f, "peer {k} appears twice"),
            MissingPublicKey => write!(f, "[Peer] without a PublicKey"),
            MissingPrivateKey => write!(f, "[Interface] without a PrivateKey"),
        }
    }
}

/// An error with its place: `file:line: problem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; `None` for problems of the whole file (missing section, unreadable).
    pub line: Option<usize>,
    pub kind: ConfigErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.kind),
            None => write!(f, "{}: {}", self.file.display(), self.kind),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Drop the secrets read from the file once the daemon holds its own (the key object, the
    /// peers' preshared keys): each lives in exactly one locked slot then, and a copy here
    /// would be a second one for as long as the interface runs.
    pub fn forget_secrets(&mut self) {
        if let PrivateKeySource::Inline(_) = self.interface.private_key {
            self.interface.private_key = PrivateKeySource::Forgotten;
        }
        for peer in &mut self.peers {
            peer.preshared_key = None;
        }
    }

    /// Look up every peer's endpoint host name with `resolver` (the system's at `up`:
    /// [`crate::endpoint::system_resolver`]); IP addresses need no lookup. A name that
    /// does not resolve fails, naming the file and the peer's line, as wg-quick fails.
    pub fn resolve_endpoints(
        &mut self,
        path: &Path,
        resolver: Resolver,
    ) -> Result<(), ConfigError> {
        for peer in &mut self.peers {
            if let Some(endpoint) = &mut peer.endpoint {
                endpoint.resolve(resolver).map_err(|e| ConfigError {
                    file: path.to_path_buf(),
                    line: Some(peer.line),
                    kind: ConfigErrorKind::BadEndpoint(e),
                })?;
            }
        }
        Ok(())
    }
}

/// The interface name wg-quick derives from a config path: `conf/wg0.conf` -> `wg0`.
/// Linux interface names have at most 15 bytes and only `[a-zA-Z0-9_=+.-]`, as wg-quick checks.
pub fn interface_name_from_path(path: &Path) -> Result<String, String> {
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| format!("`{}` has no file name", path.display()))?;
    let name = file.strip_suffix(".conf").ok_or_else(|| {
        format!(
            "`{}`: the config file name must end in .conf (its stem names the interface)",
            path.display()
        )
    })?;
    let valid = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_=+.-".contains(c));
    if !valid {
        return Err(format!(
            "`{name}` (from `{}`) is not a valid interface name: 1-15 characters of a-z A-Z 0-9 _ = + . -",
            path.display()
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests;
