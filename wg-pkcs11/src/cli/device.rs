//! The integration point between `up` and the data path (device/**, helper "datapath") and the
//! software key (key/soft.rs, helper "wgcore"): start a device for a parsed config and give
//! the UAPI server a backend for it.
//!
//! NOT YET WIRED: the device is not merged into this branch yet. Until it is, `up` parses the config, opens the token key, runs PreUp, and stops here with an
//! error saying so.

use std::sync::Arc;

use wg_pkcs11::config::Config;
use wg_pkcs11::key::{SoftKey, StaticKey};
use wg_pkcs11::uapi::UapiBackend;
use zeroize::Zeroizing;

/// A started device: what `up` needs to serve UAPI and to stop it.
pub struct RunningDevice {
    pub backend: Arc<dyn UapiBackend>,
    stop: Box<dyn FnOnce() + Send>,
}

impl RunningDevice {
    pub fn stop(self) {
        (self.stop)()
    }
}

pub fn start_device(
    ifname: &str,
    key: Arc<dyn StaticKey>,
    config: &Config,
) -> Result<RunningDevice, String> {
    let _ = (ifname, key, config);
    Err("the data path (device::Device) is not merged into this build yet".into())
}

/// A base64 `PrivateKey` from the file: a software key.
pub fn soft_key(bytes: &Zeroizing<[u8; 32]>) -> Result<Arc<dyn StaticKey>, String> {
    Ok(Arc::new(SoftKey::from_bytes(**bytes)))
}
