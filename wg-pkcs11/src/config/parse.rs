//! Reading a wg-quick file into a `Config`: the line parser, its builders, and the decoding of
//! each value (keys, numbers, endpoints); every error names the file, line and problem.

use std::path::Path;
use std::str::FromStr;

use base64::Engine;
use zeroize::Zeroizing;

use super::{
    Cidr, Config, ConfigError, ConfigErrorKind, Endpoint, InterfaceConfig, PeerConfig,
    PrivateKeySource, Table,
};
use crate::secret_mem::Secret32;
use crate::uri::{is_pkcs11_uri, Pkcs11Uri};

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
