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
use zeroize::Zeroizing;

pub use crate::endpoint::Endpoint;
use crate::endpoint::Resolver;
use crate::secret_mem::Secret32;
use crate::uri::{is_pkcs11_uri, Pkcs11Uri};

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

/// Decode a base64 WireGuard key (32 bytes) that is a secret: straight into locked memory,
/// the decoding buffer wiped.
pub fn decode_secret(key: &str, value: &str) -> Result<Secret32, ConfigErrorKind> {
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| ConfigErrorKind::BadBase64 {
                key: key.to_string(),
            })?,
    );
    let array =
        <&[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ConfigErrorKind::BadKeyLength {
            key: key.to_string(),
            length: bytes.len(),
        })?;
    Ok(Secret32::new(array))
}

/// Read a config file that may hold secrets into memory that is wiped when dropped, allocated
/// once at the file's size (a growing buffer would leave copies of its contents behind).
pub fn read_secret_text(path: &Path) -> std::io::Result<Zeroizing<String>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len() as usize;
    let mut bytes = Zeroizing::new(Vec::with_capacity(size + 1));
    file.read_to_end(&mut bytes)?;
    // The buffer moves into the String as it is (no copy); invalid text is wiped too.
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ))
        }
    }
}

/// Decode a base64 WireGuard key (32 bytes).
pub fn decode_key(key: &str, value: &str) -> Result<[u8; 32], ConfigErrorKind> {
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| ConfigErrorKind::BadBase64 {
                key: key.to_string(),
            })?,
    );
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ConfigErrorKind::BadKeyLength {
        key: key.to_string(),
        length: bytes.len(),
    })
}

fn parse_number<T: FromStr>(key: &str, value: &str, expected: &str) -> Result<T, ConfigErrorKind> {
    value.parse().map_err(|_| ConfigErrorKind::BadNumber {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    })
}

/// `u32` in decimal or `0x` hex, as wg(8) accepts for FwMark.
fn parse_u32_any_base(key: &str, value: &str) -> Result<u32, ConfigErrorKind> {
    let parsed = match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    };
    parsed.ok_or_else(|| ConfigErrorKind::BadNumber {
        key: key.to_string(),
        value: value.to_string(),
        expected: "a 32-bit number (decimal or 0x hex) or `off`".to_string(),
    })
}

/// `1.2.3.4:51820`, `[fd00::1]:51820` or `host.example:51820` (a name is not looked up).
pub fn parse_endpoint(value: &str) -> Result<Endpoint, String> {
    Endpoint::parse(value)
}

#[derive(Default)]
struct PeerBuilder {
    line: usize,
    public_key: Option<[u8; 32]>,
    preshared_key: Option<Secret32>,
    allowed_ips: Vec<Cidr>,
    endpoint: Option<Endpoint>,
    persistent_keepalive: Option<Option<u16>>,
    seen: Vec<String>,
}

#[derive(Default)]
struct InterfaceBuilder {
    line: usize,
    private_key: Option<PrivateKeySource>,
    listen_port: Option<u16>,
    addresses: Vec<Cidr>,
    dns: Vec<String>,
    mtu: Option<u32>,
    fwmark: Option<Option<u32>>,
    table: Option<Table>,
    pre_up: Vec<String>,
    post_up: Vec<String>,
    pre_down: Vec<String>,
    post_down: Vec<String>,
    seen: Vec<String>,
}

enum Section {
    None,
    Interface,
    Peer,
}

fn comma_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Remember that a single-valued key was set; refuse it the second time.
fn once(seen: &mut Vec<String>, key: &str) -> Result<(), ConfigErrorKind> {
    if seen.iter().any(|k| k == key) {
        return Err(ConfigErrorKind::DuplicateKey(key.to_string()));
    }
    seen.push(key.to_string());
    Ok(())
}

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

    /// Read and parse a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_secret_text(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            kind: ConfigErrorKind::Io(e.to_string()),
        })?;
        Config::parse(path, &text)
    }

    /// Parse the text of a file; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_inner(path, text, None)
    }

    /// As [`Config::parse`], with the key to use when `[Interface]` has no `PrivateKey` (the
    /// URI kept beside the file for stock wg-quick; see the binary's `cli/keyfile.rs`).
    pub fn parse_with_default_key(
        path: &Path,
        text: &str,
        default_key: PrivateKeySource,
    ) -> Result<Config, ConfigError> {
        Config::parse_inner(path, text, Some(default_key))
    }

    fn parse_inner(
        path: &Path,
        text: &str,
        default_key: Option<PrivateKeySource>,
    ) -> Result<Config, ConfigError> {
        let err = |line: Option<usize>, kind: ConfigErrorKind| ConfigError {
            file: path.to_path_buf(),
            line,
            kind,
        };
        let mut interface: Option<InterfaceBuilder> = None;
        let mut peers: Vec<PeerBuilder> = Vec::new();
        let mut section = Section::None;
        let mut warnings = Vec::new();

        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            // wg-quick strips from the first `#`, so `#` cannot appear in values (URIs write %23).
            let stripped = raw.split('#').next().unwrap_or("").trim();
            if stripped.is_empty() {
                continue;
            }
            if stripped.starts_with('[') {
                let name = stripped
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .trim();
                if !stripped.ends_with(']') {
                    return Err(err(
                        Some(line),
                        ConfigErrorKind::UnknownSection(stripped.to_string()),
                    ));
                }
                if name.eq_ignore_ascii_case("interface") {
                    if interface.is_some() {
                        return Err(err(Some(line), ConfigErrorKind::DuplicateInterface));
                    }
                    interface = Some(InterfaceBuilder {
                        line,
                        ..Default::default()
                    });
                    section = Section::Interface;
                } else if name.eq_ignore_ascii_case("peer") {
                    peers.push(PeerBuilder {
                        line,
                        ..Default::default()
                    });
                    section = Section::Peer;
                } else {
                    return Err(err(
                        Some(line),
                        ConfigErrorKind::UnknownSection(stripped.to_string()),
                    ));
                }
                continue;
            }
            let Some((key, value)) = stripped.split_once('=') else {
                return Err(err(Some(line), ConfigErrorKind::MissingEquals));
            };
            let key = key.trim();
            let value = value.trim();
            let lower = key.to_ascii_lowercase();
            if value.is_empty() {
                return Err(err(
                    Some(line),
                    ConfigErrorKind::EmptyValue(key.to_string()),
                ));
            }
            let result = match section {
                Section::None => Err(ConfigErrorKind::KeyOutsideSection(key.to_string())),
                Section::Interface => {
                    let builder = interface.as_mut().expect("section set with builder");
                    interface_key(builder, key, &lower, value, &mut warnings)
                }
                Section::Peer => {
                    let builder = peers.last_mut().expect("section set with builder");
                    peer_key(builder, key, &lower, value)
                }
            };
            result.map_err(|kind| err(Some(line), kind))?;
        }

        let interface = interface.ok_or_else(|| err(None, ConfigErrorKind::MissingInterface))?;
        let private_key = interface
            .private_key
            .or(default_key)
            .ok_or_else(|| err(Some(interface.line), ConfigErrorKind::MissingPrivateKey))?;
        let mut built: Vec<PeerConfig> = Vec::with_capacity(peers.len());
        for peer in peers {
            let public_key = peer
                .public_key
                .ok_or_else(|| err(Some(peer.line), ConfigErrorKind::MissingPublicKey))?;
            if let Some(first) = built.iter().find(|p| p.public_key == public_key) {
                let b64 = base64::engine::general_purpose::STANDARD.encode(public_key);
                return Err(err(
                    Some(peer.line),
                    ConfigErrorKind::DuplicatePeer(format!("{b64} (first at line {})", first.line)),
                ));
            }
            built.push(PeerConfig {
                public_key,
                preshared_key: peer.preshared_key,
                allowed_ips: peer.allowed_ips,
                endpoint: peer.endpoint,
                persistent_keepalive: peer.persistent_keepalive.flatten(),
                line: peer.line,
            });
        }
        Ok(Config {
            interface: InterfaceConfig {
                private_key,
                listen_port: interface.listen_port,
                addresses: interface.addresses,
                dns: interface.dns,
                mtu: interface.mtu,
                fwmark: interface.fwmark.flatten(),
                table: interface.table.unwrap_or_default(),
                pre_up: interface.pre_up,
                post_up: interface.post_up,
                pre_down: interface.pre_down,
                post_down: interface.post_down,
            },
            peers: built,
            warnings,
        })
    }
}

fn interface_key(
    b: &mut InterfaceBuilder,
    key: &str,
    lower: &str,
    value: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigErrorKind> {
    match lower {
        "privatekey" => {
            once(&mut b.seen, "PrivateKey")?;
            let source = if is_pkcs11_uri(value) {
                PrivateKeySource::Pkcs11(
                    Pkcs11Uri::parse(value).map_err(|e| ConfigErrorKind::BadUri(e.to_string()))?,
                )
            } else {
                PrivateKeySource::Inline(decode_secret("PrivateKey", value)?)
            };
            b.private_key = Some(source);
        }
        "listenport" => {
            once(&mut b.seen, "ListenPort")?;
            b.listen_port = Some(parse_number(key, value, "a port number from 0 to 65535")?);
        }
        "address" => {
            for item in comma_list(value) {
                b.addresses
                    .push(item.parse().map_err(ConfigErrorKind::BadCidr)?);
            }
        }
        "dns" => b.dns.extend(comma_list(value).map(str::to_string)),
        "mtu" => {
            once(&mut b.seen, "MTU")?;
            let mtu: u32 = parse_number(key, value, "an MTU from 576 to 65535")?;
            if !(576..=65535).contains(&mtu) {
                return Err(ConfigErrorKind::BadNumber {
                    key: key.to_string(),
                    value: value.to_string(),
                    expected: "an MTU from 576 to 65535".to_string(),
                });
            }
            b.mtu = Some(mtu);
        }
        "fwmark" => {
            once(&mut b.seen, "FwMark")?;
            b.fwmark = Some(match value.to_ascii_lowercase().as_str() {
                "off" | "0" => None,
                _ => Some(parse_u32_any_base(key, value)?),
            });
        }
        "table" => {
            once(&mut b.seen, "Table")?;
            b.table = Some(match value.to_ascii_lowercase().as_str() {
                "auto" => Table::Auto,
                "off" => Table::Off,
                _ if value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    Table::Named(value.to_string())
                }
                _ => {
                    return Err(ConfigErrorKind::BadNumber {
                        key: key.to_string(),
                        value: value.to_string(),
                        expected: "`auto`, `off`, a table number or a table name".to_string(),
                    })
                }
            });
        }
        "preup" => b.pre_up.push(value.to_string()),
        "postup" => b.post_up.push(value.to_string()),
        "predown" => b.pre_down.push(value.to_string()),
        "postdown" => b.post_down.push(value.to_string()),
        "saveconfig" => {
            if value.eq_ignore_ascii_case("true") {
                warnings.push(
                    "SaveConfig = true: the running peers, listen port and fwmark are saved into \
                     this file when the interface goes down (the PrivateKey line is kept)"
                        .to_string(),
                );
            } else if !value.eq_ignore_ascii_case("false") {
                return Err(ConfigErrorKind::BadNumber {
                    key: key.to_string(),
                    value: value.to_string(),
                    expected: "`true` or `false`".to_string(),
                });
            }
        }
        _ => {
            return Err(ConfigErrorKind::UnknownKey {
                section: "Interface",
                key: key.to_string(),
            })
        }
    }
    Ok(())
}

fn peer_key(
    b: &mut PeerBuilder,
    key: &str,
    lower: &str,
    value: &str,
) -> Result<(), ConfigErrorKind> {
    match lower {
        "publickey" => {
            once(&mut b.seen, "PublicKey")?;
            b.public_key = Some(decode_key("PublicKey", value)?);
        }
        "presharedkey" => {
            once(&mut b.seen, "PresharedKey")?;
            b.preshared_key = Some(decode_secret("PresharedKey", value)?);
        }
        "allowedips" => {
            for item in comma_list(value) {
                b.allowed_ips
                    .push(item.parse().map_err(ConfigErrorKind::BadCidr)?);
            }
        }
        "endpoint" => {
            once(&mut b.seen, "Endpoint")?;
            b.endpoint = Some(parse_endpoint(value).map_err(ConfigErrorKind::BadEndpoint)?);
        }
        "persistentkeepalive" => {
            once(&mut b.seen, "PersistentKeepalive")?;
            b.persistent_keepalive = Some(if value.eq_ignore_ascii_case("off") {
                None
            } else {
                let seconds: u16 =
                    parse_number(key, value, "a number of seconds from 0 to 65535 or `off`")?;
                (seconds != 0).then_some(seconds)
            });
        }
        _ => {
            return Err(ConfigErrorKind::UnknownKey {
                section: "Peer",
                key: key.to_string(),
            })
        }
    }
    Ok(())
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
mod tests {
    use super::*;

    const PUB_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const PUB_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
    const PRIV: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("wg0.conf"), text)
    }

    fn error(text: &str) -> ConfigError {
        parse(text).unwrap_err()
    }

    fn iface(extra: &str) -> String {
        format!("[Interface]\nPrivateKey = {PRIV}\n{extra}")
    }

    #[test]
    fn a_multibyte_character_in_the_uri_scheme_is_an_error_not_a_panic() {
        let e = error("[Interface]\nPrivateKey = pkcs1é:object=wg\n");
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("PrivateKey"), "{e}");
    }

    #[test]
    fn real_world_client() {
        let text = format!(
            "# client\n[Interface]\nPrivateKey = pkcs11:token=SE050;object=wg-key;type=private?module-name=se050&pin-value=1234\n\
             Address = 10.8.0.2/24, fd08::2/64\nAddress=192.168.7.2/32\nDNS = 10.8.0.1, vpn.example\n\
             MTU = 1380\n\n[Peer] # the server\nPublicKey = {PUB_A}\nPresharedKey = {PRIV}\n\
             AllowedIPs = 0.0.0.0/0, ::/0\nEndpoint = 127.0.0.1:51820\nPersistentKeepalive = 25\n"
        );
        let config = parse(&text).unwrap();
        let PrivateKeySource::Pkcs11(uri) = &config.interface.private_key else {
            panic!("expected a URI")
        };
        assert_eq!(uri.token.as_deref(), Some("SE050"));
        assert_eq!(uri.object.as_deref(), Some("wg-key"));
        assert_eq!(uri.module_name.as_deref(), Some("se050"));
        assert_eq!(
            config.interface.addresses,
            vec![
                "10.8.0.2/24".parse().unwrap(),
                "fd08::2/64".parse().unwrap(),
                "192.168.7.2/32".parse().unwrap()
            ]
        );
        assert_eq!(config.interface.dns, vec!["10.8.0.1", "vpn.example"]);
        assert_eq!(config.interface.mtu, Some(1380));
        assert_eq!(config.interface.table, Table::Auto);
        assert_eq!(config.peers.len(), 1);
        let peer = &config.peers[0];
        assert_eq!(peer.public_key, decode_key("k", PUB_A).unwrap());
        assert!(peer.preshared_key.is_some());
        assert_eq!(peer.allowed_ips.len(), 2);
        assert!(peer.allowed_ips.iter().all(Cidr::is_default_route));
        assert_eq!(
            peer.endpoint.as_ref().and_then(Endpoint::address),
            Some("127.0.0.1:51820".parse().unwrap())
        );
        assert_eq!(peer.persistent_keepalive, Some(25));
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn real_world_server_with_hooks_and_many_peers() {
        let text = format!(
            "[Interface]\nPrivateKey = {PRIV}\nListenPort = 51820\nAddress = 10.8.0.1/24\n\
             FwMark = 0x1234\nTable = off\nSaveConfig = true\n\
             PreUp = echo pre %i\nPostUp = iptables -A FORWARD -i %i -j ACCEPT; echo up\n\
             PostUp = echo second\nPreDown = echo down\nPostDown = echo gone %i\n\
             [Peer]\nPublicKey = {PUB_A}\nAllowedIPs = 10.8.0.2/32\nAllowedIPs = fd08::2/128\n\
             [peer]\npublickey = {PUB_B}\nallowedips = 10.8.0.3/32\nendpoint = [::1]:4000\n\
             PersistentKeepalive = off\n"
        );
        let config = parse(&text).unwrap();
        let i = &config.interface;
        assert!(matches!(i.private_key, PrivateKeySource::Inline(_)));
        assert_eq!(i.listen_port, Some(51820));
        assert_eq!(i.fwmark, Some(0x1234));
        assert_eq!(i.table, Table::Off);
        assert_eq!(i.pre_up, vec!["echo pre %i"]);
        assert_eq!(
            i.post_up,
            vec![
                "iptables -A FORWARD -i %i -j ACCEPT; echo up",
                "echo second"
            ]
        );
        assert_eq!(i.pre_down, vec!["echo down"]);
        assert_eq!(i.post_down, vec!["echo gone %i"]);
        assert_eq!(config.warnings.len(), 1, "SaveConfig warns");
        assert_eq!(config.peers.len(), 2);
        assert_eq!(config.peers[0].allowed_ips.len(), 2);
        assert_eq!(
            config.peers[1]
                .endpoint
                .as_ref()
                .and_then(Endpoint::address),
            Some("[::1]:4000".parse().unwrap())
        );
        assert_eq!(config.peers[1].persistent_keepalive, None);
        assert_eq!(config.peers[1].line, 17);
    }

    #[test]
    fn values_and_defaults() {
        let c = parse(&iface("FwMark = off\nTable = 1234\n")).unwrap();
        assert_eq!(c.interface.fwmark, None);
        assert_eq!(c.interface.table, Table::Named("1234".into()));
        assert_eq!(c.interface.listen_port, None);
        assert!(c.peers.is_empty());
        let c = parse(&iface("FwMark = 51820\nTable = Auto\n")).unwrap();
        assert_eq!(c.interface.fwmark, Some(51820));
        assert_eq!(c.interface.table, Table::Auto);
        let c = parse(&format!(
            "{}[Peer]\nPublicKey={PUB_A}\nPersistentKeepalive = 0\n",
            iface("")
        ))
        .unwrap();
        assert_eq!(c.peers[0].persistent_keepalive, None);
        assert!(c.peers[0].allowed_ips.is_empty());
        assert_eq!(c.peers[0].endpoint, None);
    }

    #[test]
    fn endpoint_names_are_kept_at_parse_and_resolved_by_resolve_endpoints() {
        let text = format!(
            "{}[Peer]\nPublicKey = {PUB_A}\nEndpoint = peer.test:51820\n\
             [Peer]\nPublicKey = {PUB_B}\nEndpoint = 192.0.2.9:7\n",
            iface("")
        );
        let asked = std::cell::RefCell::new(Vec::new());
        let resolver = |host: &str, port: u16| {
            asked.borrow_mut().push(host.to_string());
            match host {
                "peer.test" => Ok(vec![std::net::SocketAddr::new(
                    "192.0.2.1".parse().unwrap(),
                    port,
                )]),
                _ => Err(std::io::Error::other("unknown")),
            }
        };
        let mut config = parse(&text).unwrap();
        let named = config.peers[0].endpoint.clone().unwrap();
        assert_eq!((named.host.as_str(), named.port), ("peer.test", 51820));
        assert_eq!(named.address(), None, "parsing looked nothing up");
        assert_eq!(
            config.peers[1]
                .endpoint
                .as_ref()
                .and_then(Endpoint::address),
            Some("192.0.2.9:7".parse().unwrap())
        );
        config
            .resolve_endpoints(Path::new("wg0.conf"), &resolver)
            .unwrap();
        assert_eq!(
            *asked.borrow(),
            ["peer.test"],
            "one lookup, for the name only"
        );
        assert_eq!(
            config.peers[0]
                .endpoint
                .as_ref()
                .and_then(Endpoint::address),
            Some("192.0.2.1:51820".parse().unwrap())
        );
        // A name that does not resolve fails `up` with the file and the peer's line.
        let mut config = parse(&text.replace("peer.test", "gone.test")).unwrap();
        let e = config
            .resolve_endpoints(Path::new("wg0.conf"), &resolver)
            .unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("cannot resolve `gone.test`"), "{e}");
    }

    #[test]
    fn cidr_parsing_and_network() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.0.0.0/8");
        assert_eq!(
            "fd00::1:2/64"
                .parse::<Cidr>()
                .unwrap()
                .network()
                .to_string(),
            "fd00::/64"
        );
        assert_eq!(
            "0.0.0.0/0".parse::<Cidr>().unwrap().network().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(
            "::/0".parse::<Cidr>().unwrap().network().to_string(),
            "::/0"
        );
        assert_eq!("10.0.0.1".parse::<Cidr>().unwrap().prefix, 32);
        assert_eq!("::1".parse::<Cidr>().unwrap().prefix, 128);
        for bad in [
            "10.0.0.1/33",
            "::/129",
            "10.0.0/8",
            "x/1",
            "10.0.0.1/",
            "10.0.0.1/-1",
            "10.0.0.1/a",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(Cidr::new("1.1.1.1".parse().unwrap(), 33), None);
    }

    #[test]
    fn errors_name_file_line_and_problem() {
        let e = error(&iface("Frobnicate = 1\n"));
        assert_eq!(e.line, Some(3));
        assert_eq!(
            e.kind,
            ConfigErrorKind::UnknownKey {
                section: "Interface",
                key: "Frobnicate".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "wg0.conf:3: unknown key `Frobnicate` in [Interface]"
        );

        let e = error(&format!(
            "{}[Peer]\nPublicKey = {PUB_A}\nListenPort = 1\n",
            iface("")
        ));
        assert_eq!(
            e.kind,
            ConfigErrorKind::UnknownKey {
                section: "Peer",
                key: "ListenPort".into()
            }
        );
        assert_eq!(e.line, Some(5));
    }

    #[test]
    fn every_error_class() {
        use ConfigErrorKind::*;
        let peer = |extra: &str| format!("{}[Peer]\nPublicKey = {PUB_A}\n{extra}", iface(""));
        type Case = (String, Option<usize>, fn(&ConfigErrorKind) -> bool);
        let cases: Vec<Case> = vec![
            ("[Interfaces]\n".into(), Some(1), |k| {
                matches!(k, UnknownSection(_))
            }),
            ("[Interface\n".into(), Some(1), |k| {
                matches!(k, UnknownSection(_))
            }),
            ("PrivateKey = x\n".into(), Some(1), |k| {
                matches!(k, KeyOutsideSection(_))
            }),
            (iface("ListenPort\n"), Some(3), |k| {
                matches!(k, MissingEquals)
            }),
            (iface("ListenPort =   \n"), Some(3), |k| {
                matches!(k, EmptyValue(_))
            }),
            (iface("PrivateKey = x\n"), Some(3), |k| {
                matches!(k, DuplicateKey(_))
            }),
            (iface("ListenPort = 1\nlistenport = 2\n"), Some(4), |k| {
                matches!(k, DuplicateKey(_))
            }),
            (format!("{}[Interface]\n", iface("")), Some(3), |k| {
                matches!(k, DuplicateInterface)
            }),
            (format!("[Peer]\nPublicKey = {PUB_A}\n"), None, |k| {
                matches!(k, MissingInterface)
            }),
            (
                "[Interface]\nPrivateKey = not*base64\n".into(),
                Some(2),
                |k| matches!(k, BadBase64 { .. }),
            ),
            ("[Interface]\nPrivateKey = AAAA\n".into(), Some(2), |k| {
                matches!(k, BadKeyLength { length: 3, .. })
            }),
            (
                "[Interface]\nPrivateKey = pkcs11:colour=red\n".into(),
                Some(2),
                |k| matches!(k, BadUri(_)),
            ),
            (iface("Address = 10.0.0.1/33\n"), Some(3), |k| {
                matches!(k, BadCidr(_))
            }),
            (iface("Address = 10.0.0.1/24, banana\n"), Some(3), |k| {
                matches!(k, BadCidr(_))
            }),
            (peer("AllowedIPs = 10.0.0.0/8, ::/200\n"), Some(5), |k| {
                matches!(k, BadCidr(_))
            }),
            (iface("ListenPort = 70000\n"), Some(3), |k| {
                matches!(k, BadNumber { .. })
            }),
            (iface("MTU = 100\n"), Some(3), |k| {
                matches!(k, BadNumber { .. })
            }),
            (iface("MTU = big\n"), Some(3), |k| {
                matches!(k, BadNumber { .. })
            }),
            (iface("FwMark = 0xZZ\n"), Some(3), |k| {
                matches!(k, BadNumber { .. })
            }),
            (iface("Table = a b\n"), Some(3), |k| {
                matches!(k, BadNumber { .. })
            }),
            (iface("SaveConfig = maybe\n"), Some(3), |k| {
                matches!(k, BadNumber { .. })
            }),
            (peer("PersistentKeepalive = -1\n"), Some(5), |k| {
                matches!(k, BadNumber { .. })
            }),
            (peer("Endpoint = 10.0.0.1\n"), Some(5), |k| {
                matches!(k, BadEndpoint(_))
            }),
            (peer("Endpoint = fd00::1:51820\n"), Some(5), |k| {
                matches!(k, BadEndpoint(_))
            }),
            (peer("PresharedKey = AAAA\n"), Some(5), |k| {
                matches!(k, BadKeyLength { .. })
            }),
            (
                format!("{}[Peer]\nPublicKey = {PUB_A}\n", peer("")),
                Some(5),
                |k| matches!(k, DuplicatePeer(_)),
            ),
            (
                format!("{}[Peer]\nAllowedIPs = 10.0.0.0/8\n", iface("")),
                Some(3),
                |k| matches!(k, MissingPublicKey),
            ),
            ("[Interface]\nListenPort = 1\n".into(), Some(1), |k| {
                matches!(k, MissingPrivateKey)
            }),
            (peer(&format!("PublicKey = {PUB_B}\n")), Some(5), |k| {
                matches!(k, DuplicateKey(_))
            }),
        ];
        for (text, line, check) in cases {
            let e = error(&text);
            assert!(check(&e.kind), "unexpected {e} for:\n{text}");
            assert_eq!(e.line, line, "wrong line in {e} for:\n{text}");
            assert!(e.to_string().starts_with("wg0.conf"), "{e}");
        }
    }

    #[test]
    fn missing_file_names_it() {
        let e = Config::load(Path::new("/nonexistent/wg9.conf")).unwrap_err();
        assert!(matches!(e.kind, ConfigErrorKind::Io(_)));
        assert!(e
            .to_string()
            .starts_with("/nonexistent/wg9.conf: cannot read"));
    }

    #[test]
    fn comments_and_case() {
        let text = format!(
            "  # leading comment\n[INTERFACE]   # trailing\n  privatekey=   {PRIV}   # key\n\
             ADDRESS = 10.0.0.1/24#x\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.interface.addresses.len(), 1);
    }

    #[test]
    fn debug_never_prints_secrets() {
        let text = format!(
            "{}[Peer]\nPublicKey = {PUB_A}\nPresharedKey = {PRIV}\n",
            iface("")
        );
        let c = parse(&text).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains(PRIV), "{debug}");
        assert!(debug.contains(PUB_A));
    }

    /// The example configurations shipped in conf/ are real files that must keep parsing.
    #[test]
    fn shipped_example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "conf") {
                let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(!config.peers.is_empty(), "{}", path.display());
                interface_name_from_path(&path).unwrap();
                seen += 1;
            }
        }
        assert!(
            seen >= 3,
            "expected the client and server examples in {}",
            dir.display()
        );
        let client = Config::load(&dir.join("wg0-client.conf")).unwrap();
        assert!(matches!(
            client.interface.private_key,
            PrivateKeySource::Pkcs11(_)
        ));
        let plain = Config::load(&dir.join("wg0-server-std.conf")).unwrap();
        let PrivateKeySource::Inline(key) = &plain.interface.private_key else {
            panic!("the plain server has a base64 key")
        };
        // The plain server's public key is the one the client config names.
        let public =
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*key.expose()));
        assert_eq!(client.peers[0].public_key, *public.as_bytes());
        assert_eq!(
            plain.peers[0].public_key,
            Config::load(&dir.join("wg0-server.conf")).unwrap().peers[0].public_key
        );
    }

    #[test]
    fn interface_names() {
        assert_eq!(
            interface_name_from_path(Path::new("conf/wg0.conf")).unwrap(),
            "wg0"
        );
        assert_eq!(
            interface_name_from_path(Path::new("/etc/wireguard/home-vpn.conf")).unwrap(),
            "home-vpn"
        );
        assert!(interface_name_from_path(Path::new("wg0.cfg")).is_err());
        assert!(interface_name_from_path(Path::new(".conf")).is_err());
        assert!(interface_name_from_path(Path::new("a-very-long-interface-name.conf")).is_err());
        assert!(interface_name_from_path(Path::new("wg 0.conf")).is_err());
    }
}
