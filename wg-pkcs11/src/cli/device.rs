//! The integration point between `up` and the data path (device/**): start a
//! [`Device`] for a parsed config and offer it to the UAPI server as a [`UapiBackend`].
//!
//! Everything `wg set` can change is applied at run time, in wg(8)'s order: the fwmark, the
//! listen port (a new socket bound before the old one goes; a port in use is refused with
//! EADDRINUSE and the old port keeps working), then the peers. As in wireguard-go, what came
//! before a failing step stays applied.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use wg_pkcs11::config::{Cidr, Config, PrivateKeySource};
use wg_pkcs11::device::stats::HandshakeStats;
use wg_pkcs11::device::{self, Device, DeviceConfig, MAX_CRYPTO_HELPERS as MAX_HELPERS};
use wg_pkcs11::key::{SoftKey, StaticKey};
use wg_pkcs11::secret_mem::Secret32;
use wg_pkcs11::uapi::{
    check_private_key, DeviceInfo, PeerInfo, PeerUpdate, SetRequest, UapiBackend, UapiError,
};

/// A started device: what `up` needs to serve UAPI and to stop it.
pub struct RunningDevice {
    pub backend: Arc<dyn UapiBackend>,
    device: Arc<DeviceBackend>,
}

impl RunningDevice {
    pub fn stop(self) {
        if let Some(device) = self.device.device.write().take() {
            device.stop();
        }
    }

    /// The TUN interface was deleted (`ip link del`, `wg-quick down`): time to exit.
    pub fn tun_gone(&self) -> bool {
        self.device
            .device
            .read()
            .as_ref()
            .is_none_or(|d| d.tun_gone())
    }

    /// Why the key can no longer be used (its PIN was refused when logging in again after a
    /// chip reset): the daemon stops with the PIN's exit status.
    pub fn key_unusable(&self) -> Option<String> {
        self.device.device.read().as_ref()?.key_unusable()
    }

    /// Each peer's latest handshake, to log new handshakes at info.
    pub fn handshakes(&self) -> Vec<([u8; 32], Option<SystemTime>)> {
        let guard = self.device.device.read();
        let Some(device) = guard.as_ref() else {
            return Vec::new();
        };
        device
            .peer_keys()
            .iter()
            .filter_map(|k| device.peer_info(k))
            .map(|p| (p.public_key, p.last_handshake))
            .collect()
    }

    /// Apply a re-read config the way `wg syncconf` does: peers that left are removed, new
    /// ones added, the others updated in place (their sessions stay); the listen port and
    /// fwmark follow the file (a file without ListenPort keeps the current port). The
    /// interface key cannot change at run time: a config naming another key is refused whole.
    pub fn sync(
        &self,
        config: &Config,
        running_key: &PrivateKeySource,
    ) -> Result<SyncSummary, String> {
        let guard = self.device.device.read();
        let device = guard.as_ref().ok_or("the interface is going down")?;
        if !same_key(
            &config.interface.private_key,
            running_key,
            &device.public_key(),
        ) {
            return Err(
                "PrivateKey names another key than the running one: restart the \
                        interface to change keys (nothing was applied)"
                    .into(),
            );
        }
        let mut summary = SyncSummary::default();
        if let Some(port) = config.interface.listen_port {
            if port != device.listen_port() {
                device
                    .set_listen_port(port)
                    .map_err(|e| format!("changing the listen port to {port}: {e}"))?;
            }
        }
        let mark = config.interface.fwmark.unwrap_or(0);
        if mark != device.fwmark() {
            device
                .set_fwmark(mark)
                .map_err(|e| format!("setting fwmark {mark:#x}: {e}"))?;
        }
        let wanted: Vec<device::PeerConfig> = config.peers.iter().map(device_peer).collect();
        for key in device.peer_keys() {
            if !wanted.iter().any(|p| p.public_key == key) {
                device.remove_peer(&key);
                summary.removed.push(key);
            }
        }
        for peer in &wanted {
            let before = device.peer_info(&peer.public_key);
            device.set_peer(&device::PeerConfig {
                allowed_ips: Vec::new(),
                ..peer.clone()
            });
            device.replace_allowed_ips(&peer.public_key, &peer.allowed_ips);
            match before {
                None => summary.added.push(peer.public_key),
                Some(before) => {
                    let mut old_ips = before.allowed_ips.clone();
                    let mut new_ips = peer.allowed_ips.clone();
                    old_ips.sort();
                    new_ips.sort();
                    let changed = old_ips != new_ips
                        || before.preshared_key != peer.preshared_key
                        || before.persistent_keepalive != peer.persistent_keepalive
                        || peer.endpoint.is_some_and(|e| before.endpoint != Some(e));
                    if changed {
                        summary.updated.push(peer.public_key);
                    }
                }
            }
        }
        Ok(summary)
    }
}

/// What a reload changed.
#[derive(Debug, Default)]
pub struct SyncSummary {
    pub added: Vec<[u8; 32]>,
    pub removed: Vec<[u8; 32]>,
    pub updated: Vec<[u8; 32]>,
}

/// Whether a re-read `PrivateKey` is the key the device runs with.
fn same_key(new: &PrivateKeySource, running: &PrivateKeySource, public: &[u8; 32]) -> bool {
    match (new, running) {
        (PrivateKeySource::Pkcs11(a), PrivateKeySource::Pkcs11(b)) => a == b,
        (PrivateKeySource::Inline(bytes), _) => SoftKey::from_locked(bytes).public_key() == *public,
        _ => false,
    }
}

/// A config file's peer as the device takes it.
pub fn device_peer(p: &wg_pkcs11::config::PeerConfig) -> device::PeerConfig {
    device::PeerConfig {
        public_key: p.public_key,
        preshared_key: p.preshared_key.as_ref().map(|k| *k.expose()),
        // Resolved by `up` before the device starts (Config::resolve_endpoints).
        endpoint: p.endpoint.as_ref().and_then(|e| e.address()),
        allowed_ips: p.allowed_ips.iter().map(to_pair).collect(),
        persistent_keepalive: p.persistent_keepalive.unwrap_or(0),
    }
}

/// A base64 `PrivateKey` from the file: a software key.
pub fn soft_key(bytes: &Secret32) -> Result<Arc<dyn StaticKey>, String> {
    Ok(Arc::new(SoftKey::from_locked(bytes)))
}

fn to_pair(cidr: &Cidr) -> (IpAddr, u8) {
    let network = cidr.network();
    (network.addr, network.prefix)
}

pub fn start_device(
    ifname: &str,
    key: Arc<dyn StaticKey>,
    config: &Config,
) -> Result<RunningDevice, String> {
    let key_in_hardware = key.in_hardware();
    let mut device_config = DeviceConfig::new(ifname, key);
    device_config.listen_port = config.interface.listen_port.unwrap_or(0);
    device_config.fwmark = config.interface.fwmark.unwrap_or(0);
    device_config.peers = config.peers.iter().map(device_peer).collect();
    run(device_config, key_in_hardware)
}

/// A device with no peers yet, configured later over UAPI (`wg setconf`, as wg-quick does).
pub fn start_unconfigured(ifname: &str, key: Arc<dyn StaticKey>) -> Result<RunningDevice, String> {
    let key_in_hardware = key.in_hardware();
    run(DeviceConfig::new(ifname, key), key_in_hardware)
}

/// The environment variable that sets the number of crypto helper threads (0 to
/// `MAX_HELPERS`); unset: one per core beyond the packet loops' two.
pub const CRYPTO_HELPERS_ENV: &str = "WG_PKCS11_CRYPTO_HELPERS";

fn crypto_helpers_from_env() -> Result<Option<usize>, String> {
    let Some(value) = std::env::var_os(CRYPTO_HELPERS_ENV) else {
        return Ok(None);
    };
    parse_crypto_helpers(&value.to_string_lossy()).map(Some)
}

fn parse_crypto_helpers(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(n) if n <= MAX_HELPERS => Ok(n),
        _ => Err(format!(
            "{CRYPTO_HELPERS_ENV}={value:?}: not a number of crypto helper threads from 0 to \
             {MAX_HELPERS} (unset it for one per core beyond two)"
        )),
    }
}

fn run(mut device_config: DeviceConfig, key_in_hardware: bool) -> Result<RunningDevice, String> {
    device_config.crypto_helpers = crypto_helpers_from_env()?;
    let device = Device::start(device_config).map_err(|e| e.to_string())?;
    let backend = Arc::new(DeviceBackend {
        device: RwLock::new(Some(device)),
        key_in_hardware,
    });
    Ok(RunningDevice {
        backend: backend.clone(),
        device: backend,
    })
}

/// The UAPI view of a running [`Device`].
struct DeviceBackend {
    device: RwLock<Option<Device>>,
    /// Reported by `show`: a key that is not in hardware can be copied.
    key_in_hardware: bool,
}

fn gone() -> UapiError {
    UapiError::new(libc::ENODEV, "the interface is going down")
}

impl UapiBackend for DeviceBackend {
    fn get(&self) -> Result<DeviceInfo, UapiError> {
        let guard = self.device.read();
        let device = guard.as_ref().ok_or_else(gone)?;
        let peers = device
            .peer_keys()
            .iter()
            .filter_map(|key| device.peer_info(key))
            .map(|p| PeerInfo {
                public_key: p.public_key,
                preshared_key: p.preshared_key,
                endpoint: p.endpoint,
                last_handshake: p
                    .last_handshake
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .filter(|d| *d != Duration::ZERO),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                session_static_key: p.session_static_key,
                persistent_keepalive_interval: p.persistent_keepalive,
                allowed_ips: p
                    .allowed_ips
                    .iter()
                    .filter_map(|&(addr, prefix)| Cidr::new(addr, prefix))
                    .collect(),
            })
            .collect();
        Ok(DeviceInfo {
            public_key: Some(device.public_key()),
            key_in_hardware: Some(self.key_in_hardware),
            listen_port: device.listen_port(),
            fwmark: device.fwmark(),
            peers,
            extensions: device
                .key_health()
                .map(|h| h.to_pairs())
                .unwrap_or_default()
                .into_iter()
                // What the handshake path did (issue 15): `show` prints it for every key.
                .chain(HandshakeStats::from_snapshot(&device.counters()).to_pairs())
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
    }

    fn set(&self, request: SetRequest) -> Result<(), UapiError> {
        let guard = self.device.read();
        let device = guard.as_ref().ok_or_else(gone)?;
        // First, so a refused key leaves everything else of the request unapplied.
        if let Some(sent) = &request.private_key {
            check_private_key(sent, &device.public_key())?;
        }
        if let Some(mark) = request.fwmark {
            device
                .set_fwmark(mark)
                .map_err(|e| os_error(&e, format!("setting fwmark {mark:#x}")))?;
        }
        if let Some(port) = request.listen_port {
            device
                .set_listen_port(port)
                .map_err(|e| os_error(&e, format!("changing the listen port to {port}")))?;
        }
        if request.replace_peers {
            device.clear_peers();
        }
        for update in &request.peers {
            apply_peer(device, update);
        }
        log_peer_changes(device.name(), &request);
        if let Some(uri) = &request.private_key_uri {
            super::rotate::switch_device_key(device, uri)?;
        }
        Ok(())
    }
}

/// An I/O error as the errno `wg` prints (its message names what failed).
fn os_error(e: &std::io::Error, what: String) -> UapiError {
    use std::io::ErrorKind;
    let errno = e.raw_os_error().unwrap_or(match e.kind() {
        ErrorKind::AddrInUse => libc::EADDRINUSE,
        ErrorKind::AddrNotAvailable => libc::EADDRNOTAVAIL,
        ErrorKind::PermissionDenied => libc::EACCES,
        ErrorKind::InvalidInput => libc::EINVAL,
        _ => libc::EIO,
    });
    UapiError::new(errno, format!("{what}: {e}"))
}

/// Peer changes over UAPI, at info (what `wg set` / `wg syncconf` did, for the journal).
fn log_peer_changes(ifname: &str, request: &SetRequest) {
    if request.replace_peers {
        log::info!(
            "{ifname}: peers replaced ({} in the new set)",
            request.peers.len()
        );
        return;
    }
    for update in &request.peers {
        let key = short_key(&update.public_key);
        if update.remove {
            log::info!("{ifname}: peer {key} removed");
        } else {
            log::info!("{ifname}: peer {key} set");
        }
    }
}

/// A public key in log lines: its base64 form, as `wg show` prints it.
pub fn short_key(key: &[u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key)
}

fn apply_peer(device: &Device, update: &PeerUpdate) {
    let key = &update.public_key;
    if update.remove {
        device.remove_peer(key);
        return;
    }
    let existing = device.peer_info(key);
    if existing.is_none() && update.update_only {
        return;
    }
    // set_peer sets the preshared key and keepalive every time: keep what is not changed.
    let preshared_key = match &update.preshared_key {
        Some(psk) if **psk == [0u8; 32] => None,
        Some(psk) => Some(**psk),
        None => existing.as_ref().and_then(|p| p.preshared_key),
    };
    let persistent_keepalive = update
        .persistent_keepalive_interval
        .or(existing.as_ref().map(|p| p.persistent_keepalive))
        .unwrap_or(0);
    let adds: Vec<(IpAddr, u8)> = update.allowed_ips.iter().map(to_pair).collect();
    device.set_peer(&device::PeerConfig {
        public_key: *key,
        preshared_key,
        endpoint: update.endpoint,
        allowed_ips: if update.replace_allowed_ips {
            Vec::new()
        } else {
            adds.clone()
        },
        persistent_keepalive,
    });
    if update.replace_allowed_ips || !update.remove_allowed_ips.is_empty() {
        let removed: Vec<(IpAddr, u8)> = update.remove_allowed_ips.iter().map(to_pair).collect();
        let mut list = if update.replace_allowed_ips {
            adds
        } else {
            device
                .peer_info(key)
                .map(|p| p.allowed_ips)
                .unwrap_or_default()
        };
        list.retain(|ip| !removed.contains(ip));
        device.replace_allowed_ips(key, &list);
    }
}

#[cfg(test)]
mod crypto_helpers_tests {
    use super::*;

    #[test]
    fn the_helper_count_is_a_small_number_and_anything_else_names_the_variable() {
        assert_eq!(parse_crypto_helpers("0"), Ok(0));
        assert_eq!(parse_crypto_helpers(" 2\n"), Ok(2));
        for bad in ["3", "-1", "two", "", "1.5"] {
            let e = parse_crypto_helpers(bad).unwrap_err();
            assert!(
                e.contains(CRYPTO_HELPERS_ENV) && e.contains("0 to 2"),
                "{bad}: {e}"
            );
        }
    }
}
