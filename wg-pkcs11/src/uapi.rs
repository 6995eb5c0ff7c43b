//! The cross-platform userspace API: `/var/run/wireguard/IFNAME.sock`, so that the stock
//! `wg show` and `wg set` work against this daemon as they do against wireguard-go.
//!
//! The protocol (wireguard.com/xplatform): a request is `get=1\n\n`, or `set=1\n` followed by
//! `key=value` lines and an empty line. A reply ends with `errno=N\n\n`. Several requests may
//! follow each other on one connection.
//!
//! Differences from wireguard-go, because the static key lives in a token:
//! - `get` never returns `private_key` (there is none to give), so `wg show` prints no public
//!   key for the interface; it sends the public key as `wg_pkcs11_public_key`, which `wg`
//!   ignores and `wg-pkcs11 show` prints.
//! - `set` with `private_key` is parsed and handed to the backend, which accepts it only when it
//!   changes nothing ([`check_private_key`]): all zeros (what `wg setconf` / `wg syncconf` send
//!   for a config without `PrivateKey`, as wg-quick's userspace mode does) or the token key's
//!   own private key. Any other key is refused with EPERM and nothing of the request is applied.
//! - per peer, `get` adds `wg_pkcs11_session_static_key`: the public key of our static key that
//!   made the peer's current session (after a key switch, which key the peer accepted; `wg`
//!   ignores it, `rotate` relies on it).
//!
//! A `set` request is parsed completely before the backend sees it, so a malformed request
//! changes nothing (wireguard-go applies lines as it reads them).

use std::fmt;
use std::io::{self, BufRead};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use crate::config::Cidr;

/// Where `wg` looks for userspace interfaces.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// The device-level key this daemon adds to `get` replies (ignored by `wg`).
pub const PUBLIC_KEY_EXTENSION: &str = "wg_pkcs11_public_key";
/// The device key of a `set` that switches the interface to another token key (rotation).
pub const PRIVATE_KEY_URI_EXTENSION: &str = "wg_pkcs11_private_key_uri";
/// The prefix of every other device key this daemon adds to `get` replies.
pub const EXTENSION_PREFIX: &str = "wg_pkcs11_";
/// The device-level key saying whether the private key is in hardware (`1`) or not (`0`).
pub const KEY_IN_HARDWARE_EXTENSION: &str = "wg_pkcs11_key_in_hardware";
/// Peer key: which of our static keys made the peer's current session (hex public key).
pub const SESSION_STATIC_KEY_EXTENSION: &str = "wg_pkcs11_session_static_key";

const EPERM: i32 = libc::EPERM;
const EINVAL: i32 = libc::EINVAL;
const EPROTO: i32 = libc::EPROTO;

/// Longest request line we accept (a line is at most ~80 bytes in practice).
const MAX_LINE: usize = 4096;
/// Most lines in one `set` (a config with many peers and allowed IPs).
const MAX_LINES: usize = 1 << 20;
/// Most bytes in one `set`: 65,536 peers with a few allowed IPs each fit; a client cannot make
/// the daemon hold gigabytes (MAX_LINES x MAX_LINE alone would allow 4 GiB).
pub const MAX_REQUEST_BYTES: usize = 32 << 20;
/// Most peers in one `set`, and on a device: wireguard-go's MaxPeers (1 << 16).
pub const MAX_PEERS: usize = 1 << 16;

/// The path of an interface's socket.
pub fn socket_path(ifname: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{ifname}.sock"))
}

/// What `get` reports about one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerInfo {
    pub public_key: [u8; 32],
    pub preshared_key: Option<[u8; 32]>,
    pub endpoint: Option<SocketAddr>,
    /// Time of the last completed handshake since the Unix epoch; `None` if never.
    pub last_handshake: Option<Duration>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Seconds, 0 = off.
    pub persistent_keepalive_interval: u16,
    pub allowed_ips: Vec<Cidr>,
    /// Our static public key in the handshake that made the session we send with (sent as
    /// [`SESSION_STATIC_KEY_EXTENSION`]; `None` without a session). `rotate` counts a peer as
    /// having accepted the new key only when this is the new key.
    pub session_static_key: Option<[u8; 32]>,
}

/// What `get` reports about the device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The interface's public key, from the token (sent as [`PUBLIC_KEY_EXTENSION`]).
    pub public_key: Option<[u8; 32]>,
    /// Whether the private key is in hardware (sent as [`KEY_IN_HARDWARE_EXTENSION`]).
    pub key_in_hardware: Option<bool>,
    pub listen_port: u16,
    /// 0 = none.
    pub fwmark: u32,
    pub peers: Vec<PeerInfo>,
    /// More device keys of this daemon, sent as `wg_pkcs11_NAME=VALUE` (the key's health,
    /// see `key::health`); (NAME, VALUE) without the prefix. `wg` ignores them.
    pub extensions: Vec<(String, String)>,
}

/// One peer's part of a `set`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerUpdate {
    pub public_key: [u8; 32],
    /// Remove the peer; nothing else of this update applies.
    pub remove: bool,
    /// Only change the peer if it exists; never create it.
    pub update_only: bool,
    /// New preshared key; all zeros removes it (as in the protocol).
    pub preshared_key: Option<Zeroizing<[u8; 32]>>,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive_interval: Option<u16>,
    /// Drop the existing allowed IPs before adding `allowed_ips`.
    pub replace_allowed_ips: bool,
    pub allowed_ips: Vec<Cidr>,
    /// `allowed_ip=-PREFIX` (newer wg tools): remove just these.
    pub remove_allowed_ips: Vec<Cidr>,
}

/// A complete `set` request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetRequest {
    /// `private_key=`: the backend decides ([`check_private_key`]).
    pub private_key: Option<Zeroizing<[u8; 32]>>,
    pub listen_port: Option<u16>,
    /// `Some(0)` removes the mark.
    pub fwmark: Option<u32>,
    /// Remove every peer before applying `peers`.
    pub replace_peers: bool,
    pub peers: Vec<PeerUpdate>,
    /// `wg_pkcs11_private_key_uri=URI`: switch to this token key (key rotation; applied after
    /// everything else in the request). The URI may carry a PIN: wiped when dropped.
    pub private_key_uri: Option<Zeroizing<String>>,
}

/// An error answered as `errno=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UapiError {
    /// A positive errno value (EINVAL, EPERM, ...).
    pub errno: i32,
    pub message: String,
}

impl UapiError {
    pub fn new(errno: i32, message: impl Into<String>) -> UapiError {
        UapiError {
            errno,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> UapiError {
        UapiError::new(EINVAL, message)
    }
}

impl fmt::Display for UapiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", self.message, self.errno)
    }
}

impl std::error::Error for UapiError {}

/// What the device (the data path) offers to the UAPI server. Called from the server thread.
pub trait UapiBackend: Send + Sync {
    fn get(&self) -> Result<DeviceInfo, UapiError>;
    /// Apply a whole request. Errors are reported to the client as `errno`.
    fn set(&self, request: SetRequest) -> Result<(), UapiError>;
}

/// One parsed request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Get,
    Set(SetRequest),
}

/// A 32-byte key as the protocol writes it: exactly 64 hex digits. The error does not repeat
/// the value: it may be a preshared key, and refused requests are logged.
fn hex_key(name: &str, value: &str) -> Result<[u8; 32], String> {
    let not_hex = || format!("{name} is not 64 hex digits");
    let digits = value.as_bytes();
    if digits.len() != 64 {
        return Err(not_hex());
    }
    let digit = |d: u8| char::from(d).to_digit(16).ok_or_else(not_hex);
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
    }
    Ok(key)
}

pub fn key_to_hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Endpoints in the protocol are numeric: `1.2.3.4:5` or `[::1]:5`.
fn parse_endpoint(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| format!("endpoint `{value}` is not IP:PORT or [IPv6]:PORT"))
}

fn parse_true(key: &str, value: &str) -> Result<bool, UapiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(UapiError::invalid(format!(
            "`{key}` must be true or false, not `{value}`"
        ))),
    }
}

/// Read one line without its `\n`; `None` at a clean end of stream.
fn read_line(reader: &mut impl BufRead) -> Result<Option<String>, UapiError> {
    let mut buf = Vec::new();
    let n = io::Read::take(&mut *reader, MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|e| UapiError::new(libc::EIO, format!("reading the request: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(UapiError::new(EPROTO, "request line too long or cut short"));
    }
    buf.pop();
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| UapiError::new(EPROTO, "request line is not UTF-8"))
}

/// Parse one request from the stream. `Ok(None)` when the client closed the connection.
pub fn read_request(reader: &mut impl BufRead) -> Result<Option<Request>, UapiError> {
    let Some(op) = read_line(reader)? else {
        return Ok(None);
    };
    match op.as_str() {
        "get=1" => match read_line(reader)? {
            Some(empty) if empty.is_empty() => Ok(Some(Request::Get)),
            _ => Err(UapiError::new(
                EPROTO,
                "`get=1` must be followed by an empty line",
            )),
        },
        "set=1" => {
            let mut lines = Vec::new();
            let mut bytes = 0usize;
            loop {
                match read_line(reader)? {
                    None => {
                        return Err(UapiError::new(
                            EPROTO,
                            "set request not ended by an empty line",
                        ))
                    }
                    Some(line) if line.is_empty() => break,
                    Some(line) => {
                        bytes += line.len() + 1;
                        if lines.len() >= MAX_LINES || bytes > MAX_REQUEST_BYTES {
                            return Err(UapiError::new(EPROTO, "set request too long"));
                        }
                        lines.push(Zeroizing::new(line));
                    }
                }
            }
            parse_set(lines.iter().map(|l| l.as_str())).map(|r| Some(Request::Set(r)))
        }
        _ => Err(UapiError::new(EPROTO, format!("unknown operation `{op}`"))),
    }
}

/// Whether a `private_key=` sent over UAPI may be accepted by a device whose static key (public
/// half `token_public`) lives in a token: only if it changes nothing. All zeros is what `wg
/// setconf` and `wg syncconf` send for a config without `PrivateKey` (wg-quick's userspace mode
/// keeps the key's URI out of the file); the token key's own private key cannot be known
/// outside the token, but a key whose public half is the token's is the same key. Any other key
/// would silently replace the token's identity: refused with EPERM (fail closed).
pub fn check_private_key(sent: &[u8; 32], token_public: &[u8; 32]) -> Result<(), UapiError> {
    if *sent == [0u8; 32] {
        return Ok(());
    }
    let secret = x25519_dalek::StaticSecret::from(*sent);
    if x25519_dalek::PublicKey::from(&secret).as_bytes() == token_public {
        return Ok(());
    }
    Err(UapiError::new(
        EPERM,
        "refusing to set private_key: the interface's private key lives in the PKCS#11 token \
         and cannot be replaced over UAPI (leave PrivateKey out of the config given to `wg \
         setconf`; the key's URI goes in /etc/wireguard/IFNAME.pkcs11)",
    ))
}

/// Parse the `key=value` lines of a `set` request (without the `set=1` and the empty line).
pub fn parse_set<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<SetRequest, UapiError> {
    let mut request = SetRequest::default();
    for line in lines {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| UapiError::new(EPROTO, format!("line `{line}` is not key=value")))?;
        let invalid = |e: String| UapiError::invalid(e);
        if key == "public_key" {
            if request.peers.len() >= MAX_PEERS {
                return Err(UapiError::invalid(format!(
                    "more than {MAX_PEERS} peers in one request"
                )));
            }
            request.peers.push(PeerUpdate {
                public_key: hex_key(key, value).map_err(invalid)?,
                ..Default::default()
            });
            continue;
        }
        match request.peers.last_mut() {
            None => {
                match key {
                    "private_key" => {
                        request.private_key =
                            Some(Zeroizing::new(hex_key(key, value).map_err(invalid)?))
                    }
                    "listen_port" => {
                        request.listen_port = Some(value.parse().map_err(|_| {
                            invalid(format!("listen_port `{value}` is not a port number"))
                        })?)
                    }
                    "fwmark" => {
                        // wg sends an empty value for "fwmark off".
                        request.fwmark = Some(if value.is_empty() {
                            0
                        } else {
                            value.parse().map_err(|_| {
                                invalid(format!("fwmark `{value}` is not a 32-bit number"))
                            })?
                        })
                    }
                    "replace_peers" => request.replace_peers = parse_true(key, value)?,
                    PRIVATE_KEY_URI_EXTENSION => {
                        request.private_key_uri = Some(Zeroizing::new(value.to_string()))
                    }
                    _ => return Err(invalid(format!("unknown device key `{key}`"))),
                }
            }
            Some(peer) => match key {
                "remove" => peer.remove = parse_true(key, value)?,
                "update_only" => peer.update_only = parse_true(key, value)?,
                "preshared_key" => {
                    peer.preshared_key = Some(Zeroizing::new(hex_key(key, value).map_err(invalid)?))
                }
                "endpoint" => peer.endpoint = Some(parse_endpoint(value).map_err(invalid)?),
                "persistent_keepalive_interval" => {
                    peer.persistent_keepalive_interval = Some(value.parse().map_err(|_| {
                        invalid(format!(
                            "persistent_keepalive_interval `{value}` is not 0-65535"
                        ))
                    })?)
                }
                "replace_allowed_ips" => peer.replace_allowed_ips = parse_true(key, value)?,
                "allowed_ip" => {
                    let (remove, cidr) = match value.strip_prefix('-') {
                        Some(rest) => (true, rest),
                        None => (false, value),
                    };
                    // The protocol always carries the prefix length.
                    if !cidr.contains('/') {
                        return Err(invalid(format!(
                            "allowed_ip `{value}` has no prefix length"
                        )));
                    }
                    let cidr: Cidr = cidr.parse().map_err(invalid)?;
                    if remove {
                        peer.remove_allowed_ips.push(cidr);
                    } else {
                        peer.allowed_ips.push(cidr);
                    }
                }
                "protocol_version" => {
                    if value != "1" {
                        return Err(invalid(format!(
                            "protocol_version `{value}` is not supported (only 1)"
                        )));
                    }
                }
                // A device key after the first peer is out of place, as in wireguard-go.
                _ => return Err(invalid(format!("unknown or misplaced peer key `{key}`"))),
            },
        }
    }
    Ok(request)
}

/// The body of a `get` reply (without `errno=`), in wireguard-go's order.
///
/// The text holds the peers' preshared keys: it is allocated once, large enough, so no
/// reallocation leaves a copy behind (the caller wipes it, see `serve_connection`).
pub fn serialize_device(device: &DeviceInfo) -> String {
    use std::fmt::Write as _;
    let extensions: usize = device
        .extensions
        .iter()
        .map(|(n, v)| n.len() + v.len() + 16)
        .sum();
    let peers: usize = device
        .peers
        .iter()
        .map(|p| 640 + 64 * p.allowed_ips.len())
        .sum();
    let mut out = String::with_capacity(512 + extensions + peers);
    if let Some(key) = &device.public_key {
        let _ = writeln!(out, "{PUBLIC_KEY_EXTENSION}={}", key_to_hex(key));
    }
    if let Some(hardware) = device.key_in_hardware {
        let _ = writeln!(out, "{KEY_IN_HARDWARE_EXTENSION}={}", u8::from(hardware));
    }
    let _ = writeln!(out, "listen_port={}", device.listen_port);
    if device.fwmark != 0 {
        let _ = writeln!(out, "fwmark={}", device.fwmark);
    }
    for (name, value) in &device.extensions {
        let _ = writeln!(out, "{EXTENSION_PREFIX}{name}={value}");
    }
    for peer in &device.peers {
        let _ = writeln!(out, "public_key={}", key_to_hex(&peer.public_key));
        // Hex digits straight into `out`: a temporary String would be freed unwiped.
        let zero = [0u8; 32];
        out.push_str("preshared_key=");
        for byte in peer.preshared_key.as_ref().unwrap_or(&zero) {
            let _ = write!(out, "{byte:02x}");
        }
        out.push('\n');
        let _ = writeln!(out, "protocol_version=1");
        if let Some(endpoint) = peer.endpoint {
            let _ = writeln!(out, "endpoint={endpoint}");
        }
        let handshake = peer.last_handshake.unwrap_or_default();
        let _ = writeln!(out, "last_handshake_time_sec={}", handshake.as_secs());
        let _ = writeln!(out, "last_handshake_time_nsec={}", handshake.subsec_nanos());
        let _ = writeln!(out, "tx_bytes={}", peer.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", peer.rx_bytes);
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            peer.persistent_keepalive_interval
        );
        for ip in &peer.allowed_ips {
            let _ = writeln!(out, "allowed_ip={ip}");
        }
        if let Some(key) = &peer.session_static_key {
            let _ = writeln!(out, "{SESSION_STATIC_KEY_EXTENSION}={}", key_to_hex(key));
        }
    }
    out
}

/// Parse a `get` reply body (client side, for `wg-pkcs11 show`). Stops at `errno=`.
pub fn parse_device(text: &str) -> Result<DeviceInfo, UapiError> {
    let mut device = DeviceInfo::default();
    let bad = |line: &str| UapiError::new(EPROTO, format!("bad line in get reply: `{line}`"));
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        let (key, value) = line.split_once('=').ok_or_else(|| bad(line))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| bad(line));
        let key_value = |v: &str| hex_key(key, v).map_err(|e| UapiError::new(EPROTO, e));
        if key == "errno" {
            let errno: i32 = value.parse().map_err(|_| bad(line))?;
            if errno != 0 {
                return Err(UapiError::new(errno.abs(), "the daemon reported an error"));
            }
            break;
        }
        if key == "public_key" {
            device.peers.push(PeerInfo {
                public_key: key_value(value)?,
                ..Default::default()
            });
            continue;
        }
        match device.peers.last_mut() {
            None => match key {
                PUBLIC_KEY_EXTENSION => device.public_key = Some(key_value(value)?),
                KEY_IN_HARDWARE_EXTENSION => {
                    device.key_in_hardware = Some(match value {
                        "1" => true,
                        "0" => false,
                        _ => return Err(bad(line)),
                    })
                }
                _ if key.starts_with(EXTENSION_PREFIX) => device
                    .extensions
                    .push((key[EXTENSION_PREFIX.len()..].to_string(), value.to_string())),
                "listen_port" => device.listen_port = value.parse().map_err(|_| bad(line))?,
                "fwmark" => device.fwmark = value.parse().map_err(|_| bad(line))?,
                _ => {} // keys of other implementations (private_key, ...)
            },
            Some(peer) => match key {
                "preshared_key" => {
                    let psk = key_value(value)?;
                    peer.preshared_key = (psk != [0; 32]).then_some(psk);
                }
                "endpoint" => peer.endpoint = Some(parse_endpoint(value).map_err(|_| bad(line))?),
                "last_handshake_time_sec" => {
                    let nanos = peer.last_handshake.unwrap_or_default().subsec_nanos();
                    peer.last_handshake = Some(Duration::new(num(value)?, nanos));
                }
                "last_handshake_time_nsec" => {
                    let secs = peer.last_handshake.unwrap_or_default().as_secs();
                    let nanos = value
                        .parse()
                        .ok()
                        .filter(|&n| n < 1_000_000_000)
                        .ok_or_else(|| bad(line))?;
                    peer.last_handshake = Some(Duration::new(secs, nanos));
                }
                "rx_bytes" => peer.rx_bytes = num(value)?,
                "tx_bytes" => peer.tx_bytes = num(value)?,
                "persistent_keepalive_interval" => {
                    peer.persistent_keepalive_interval = value.parse().map_err(|_| bad(line))?
                }
                "allowed_ip" => peer.allowed_ips.push(value.parse().map_err(|_| bad(line))?),
                SESSION_STATIC_KEY_EXTENSION => peer.session_static_key = Some(key_value(value)?),
                _ => {}
            },
        }
    }
    for peer in &mut device.peers {
        if peer.last_handshake == Some(Duration::ZERO) {
            peer.last_handshake = None;
        }
    }
    Ok(device)
}

/// Serialize a `set` request (client side; the inverse of [`parse_set`]).
pub fn serialize_set(request: &SetRequest) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("set=1\n");
    if let Some(key) = &request.private_key {
        let _ = writeln!(out, "private_key={}", key_to_hex(key));
    }
    if let Some(port) = request.listen_port {
        let _ = writeln!(out, "listen_port={port}");
    }
    if let Some(mark) = request.fwmark {
        let _ = writeln!(out, "fwmark={mark}");
    }
    if request.replace_peers {
        out.push_str("replace_peers=true\n");
    }
    if let Some(uri) = &request.private_key_uri {
        let _ = writeln!(out, "{PRIVATE_KEY_URI_EXTENSION}={}", uri.as_str());
    }
    for peer in &request.peers {
        let _ = writeln!(out, "public_key={}", key_to_hex(&peer.public_key));
        if peer.remove {
            out.push_str("remove=true\n");
            continue;
        }
        if peer.update_only {
            out.push_str("update_only=true\n");
        }
        if let Some(psk) = &peer.preshared_key {
            let _ = writeln!(out, "preshared_key={}", key_to_hex(psk));
        }
        if let Some(endpoint) = peer.endpoint {
            let _ = writeln!(out, "endpoint={endpoint}");
        }
        if let Some(interval) = peer.persistent_keepalive_interval {
            let _ = writeln!(out, "persistent_keepalive_interval={interval}");
        }
        if peer.replace_allowed_ips {
            out.push_str("replace_allowed_ips=true\n");
        }
        for ip in &peer.allowed_ips {
            let _ = writeln!(out, "allowed_ip={ip}");
        }
        for ip in &peer.remove_allowed_ips {
            let _ = writeln!(out, "allowed_ip=-{ip}");
        }
    }
    out.push('\n');
    out
}

pub mod client;
mod server;
pub use server::{serve_connection, UapiServer};

#[cfg(test)]
mod tests;
