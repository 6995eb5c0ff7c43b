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
use wg_pkcs11::config::{Cidr, Config};
use wg_pkcs11::device::{self, Device, DeviceConfig};
use wg_pkcs11::key::{SoftKey, StaticKey};
use wg_pkcs11::uapi::{DeviceInfo, PeerInfo, PeerUpdate, SetRequest, UapiBackend, UapiError};
use zeroize::Zeroizing;

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
}

/// A base64 `PrivateKey` from the file: a software key.
pub fn soft_key(bytes: &Zeroizing<[u8; 32]>) -> Result<Arc<dyn StaticKey>, String> {
    Ok(Arc::new(SoftKey::from_bytes(**bytes)))
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
    let mut device_config = DeviceConfig::new(ifname, key);
    device_config.listen_port = config.interface.listen_port.unwrap_or(0);
    device_config.fwmark = config.interface.fwmark.unwrap_or(0);
    device_config.peers = config
        .peers
        .iter()
        .map(|p| device::PeerConfig {
            public_key: p.public_key,
            preshared_key: p.preshared_key.as_deref().copied(),
            // Resolved by `up` before the device starts (Config::resolve_endpoints).
            endpoint: p.endpoint.as_ref().and_then(|e| e.address()),
            allowed_ips: p.allowed_ips.iter().map(to_pair).collect(),
            persistent_keepalive: p.persistent_keepalive.unwrap_or(0),
        })
        .collect();
    let device = Device::start(device_config).map_err(|e| e.to_string())?;
    let backend = Arc::new(DeviceBackend {
        device: RwLock::new(Some(device)),
    });
    Ok(RunningDevice {
        backend: backend.clone(),
        device: backend,
    })
}

/// The UAPI view of a running [`Device`].
struct DeviceBackend {
    device: RwLock<Option<Device>>,
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
            listen_port: device.listen_port(),
            fwmark: device.fwmark(),
            peers,
        })
    }

    fn set(&self, request: SetRequest) -> Result<(), UapiError> {
        let guard = self.device.read();
        let device = guard.as_ref().ok_or_else(gone)?;
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
