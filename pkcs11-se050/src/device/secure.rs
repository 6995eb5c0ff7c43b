//! Opening a chip with the module's PlatformSCP03 settings (config `scp03_*`).
//!
//! With `scp03_keys` set, the link is `LockedTransport<Scp03Transport<T1Link>>`: the secure
//! channel lives inside the inter-process lock, and is checked (scp03::owner) each time the lock
//! is taken. It re-selects the applet itself after a reset, so no `Reselecting` is needed; and
//! there is no path to a plain applet command. Without keys: the plain link as before.
//!
//! The virtual chip always has its PlatformSCP03 side (virtual_se050::scp03), with its own keys
//! (`virtual_scp03_keys`, default NXP's published development keys of an SE050C2) and optionally
//! "Platform SCP required".

use std::path::Path;
use std::time::Duration;

use super::{
    lock, lock_error, open_i2c_locked, start_link, DeviceError, LockedTransport, Reselecting,
    Transport,
};
use crate::applet::Se050;
use crate::config::{Scp03Config, VirtualScp03Keys};
use crate::scp03::owner::ChannelOwner;
use crate::scp03::{keys::DEFAULT_KVN, Scp03Error, Scp03Transport, StaticKeys};
use crate::t1::{ApduTransport, T1Link, T1Options};
use crate::virtual_se050::applet::VirtualApplet;
use crate::virtual_se050::scp03::{key_state_path, PlatformScp03};
use crate::virtual_se050::{ApduHandler, VirtualOptions, VirtualSe050};
use linux_embedded_hal::Delay;

/// The host's static keys, if configured (the key file is read and checked here).
pub fn host_keys(scp03: &Scp03Config) -> Result<Option<StaticKeys>, DeviceError> {
    match &scp03.keys_file {
        None => Ok(None),
        Some(path) => StaticKeys::load(path)
            .map(Some)
            .map_err(DeviceError::SecureChannel),
    }
}

/// The virtual chip's initial keys.
pub fn virtual_chip_keys(scp03: &Scp03Config) -> Result<StaticKeys, DeviceError> {
    match &scp03.virtual_keys {
        VirtualScp03Keys::Published(variant) => StaticKeys::published(variant).ok_or_else(|| {
            DeviceError::SecureChannel(Scp03Error::KeyFile(format!(
                "no published keys for the variant `{variant}`"
            )))
        }),
        VirtualScp03Keys::File(path) => StaticKeys::load(path).map_err(DeviceError::SecureChannel),
    }
}

/// The virtual chip of `state` with its PlatformSCP03 side.
pub fn virtual_chip(
    state: &Path,
    latency: Duration,
    scp03: &Scp03Config,
) -> Result<Box<dyn ApduHandler>, DeviceError> {
    let applet = VirtualApplet::open(state, latency).map_err(DeviceError::Store)?;
    Ok(Box::new(PlatformScp03::new(
        Box::new(applet),
        virtual_chip_keys(scp03)?,
        DEFAULT_KVN,
        Some(key_state_path(state)),
        scp03.virtual_required,
    )))
}

/// `link` inside the lock, with the secure channel when `keys` are given.
fn finish<T: ApduTransport + 'static>(
    locked: LockedTransport<T>,
    keys: Option<StaticKeys>,
    kvn: u8,
) -> Result<Box<dyn ApduTransport>, DeviceError> {
    let Some(keys) = keys else {
        return Ok(Box::new(Reselecting::new(locked)));
    };
    let LockedTransport { inner, lock } = locked;
    let owner = lock
        .try_clone_file()
        .map_err(|e| DeviceError::Lock(format!("{}: {e}", lock.path().display())))?;
    let channel = Scp03Transport::new(inner, keys, kvn).with_owner(ChannelOwner::new(owner));
    Ok(Box::new(LockedTransport::new(channel, lock)))
}

/// The link to the chip `transport` names, with PlatformSCP03 as `scp03` says.
pub fn open_transport_secured(
    transport: &Transport,
    lock_timeout: Duration,
    scp03: &Scp03Config,
) -> Result<Box<dyn ApduTransport>, DeviceError> {
    let keys = host_keys(scp03)?;
    match transport {
        Transport::I2c { device, address } => finish(
            open_i2c_locked(device, *address, lock_timeout)?,
            keys,
            scp03.kvn,
        ),
        Transport::Virtual { state, latency } => {
            let lock_path = lock::state_lock_path(state);
            let lock = lock::DeviceLock::open(&lock_path)
                .map_err(DeviceError::Lock)?
                .with_timeout(lock_timeout);
            let handler = {
                let _held = lock.acquire().map_err(|m| lock_error(&lock, m))?;
                virtual_chip(state, *latency, scp03)?
            };
            let options = VirtualOptions::default();
            let link_options = T1Options {
                address: options.address,
                ..T1Options::default()
            };
            let chip = VirtualSe050::new(handler, options);
            let locked: LockedTransport<T1Link<VirtualSe050, Delay>> =
                start_link(chip, link_options, lock)?;
            finish(locked, keys, scp03.kvn)
        }
    }
}

/// Open the chip and select its IoT applet (through the secure channel when configured).
pub fn open_secured(
    transport: &Transport,
    lock_timeout: Duration,
    scp03: &Scp03Config,
) -> Result<Se050<Box<dyn ApduTransport>>, DeviceError> {
    Se050::select(open_transport_secured(transport, lock_timeout, scp03)?)
        .map_err(DeviceError::Applet)
}
