//! Opening a chip: a real SE050 on `/dev/i2c-N`, or the virtual SE050 behind its
//! state file; either way the same T=1 link and the same applet driver, behind an
//! inter-process lock.
//!
//! ```text
//! lock.rs      flock(2) around every APDU exchange
//! i2c.rs       /dev/i2c-N through linux-embedded-hal
//! reselect.rs  the IoT applet selected again after a chip reset
//! secure.rs    opening with PlatformSCP03 (config scp03_keys), the virtual chip's SCP03 side
//! mod.rs       LockedTransport, Transport, open()
//! ```

pub mod i2c;
pub mod lock;
pub mod reselect;
pub mod secure;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use linux_embedded_hal::Delay;

use crate::applet::{Se050, Se050Error};
use crate::t1::link::DEFAULT_ADDRESS;
use crate::t1::{ApduTransport, LinkError, T1Link, T1Options};
use crate::virtual_se050::applet::VirtualApplet;
use crate::virtual_se050::store::StoreError;
use crate::virtual_se050::{ApduHandler, VirtualOptions, VirtualSe050};
use crate::wipe::SecretBytes;
use i2c::Se050Bus;
use lock::{DeviceLock, DEFAULT_LOCK_TIMEOUT};
pub use reselect::Reselecting;

/// Where the chip is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A real SE050 on an I2C bus device.
    I2c { device: PathBuf, address: u8 },
    /// The virtual SE050 whose persistent state is `state`; keygen and ECDH take
    /// `latency` each.
    Virtual { state: PathBuf, latency: Duration },
}

impl Transport {
    /// `/dev/i2c-1`, address 0x48.
    pub fn default_i2c() -> Transport {
        Transport::I2c {
            device: PathBuf::from(i2c::DEFAULT_I2C_DEVICE),
            address: DEFAULT_ADDRESS,
        }
    }
}

/// Why a chip could not be opened.
#[derive(Debug)]
pub enum DeviceError {
    /// The I2C bus device could not be opened.
    Bus(String),
    /// The lock file could not be opened or taken.
    Lock(String),
    /// The virtual chip's state could not be loaded.
    Store(StoreError),
    /// The T=1 session could not be started (RESYNCH, ATR).
    Link(LinkError),
    /// Selecting the IoT applet failed.
    Applet(Se050Error),
    /// The PlatformSCP03 keys could not be used (key file missing, unreadable, too open).
    SecureChannel(crate::scp03::Scp03Error),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Bus(why) => write!(f, "cannot open the SE050's I2C bus: {why}"),
            DeviceError::Lock(why) => write!(f, "SE050 lock: {why}"),
            DeviceError::Store(e) => write!(f, "virtual SE050 state: {e}"),
            DeviceError::Link(e) => write!(f, "cannot start a T=1 session with the SE050: {e}"),
            DeviceError::Applet(e) => write!(f, "cannot select the SE050 IoT applet: {e}"),
            DeviceError::SecureChannel(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// An [`ApduTransport`] that holds the chip's inter-process lock for each
/// exchange and resynchronises the link when it takes it: whatever another
/// process left half-done, the exchange starts from a known state.
pub struct LockedTransport<T> {
    inner: T,
    lock: DeviceLock,
}

impl<T: ApduTransport> LockedTransport<T> {
    pub fn new(inner: T, lock: DeviceLock) -> Self {
        LockedTransport { inner, lock }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The link itself, without the lock (for tests and diagnostics).
    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    pub fn lock_path(&self) -> &Path {
        self.lock.path()
    }

    fn lock_error(&self, message: String) -> LinkError {
        LinkError::Lock {
            path: self.lock.path().display().to_string(),
            message,
        }
    }
}

impl<T: ApduTransport> ApduTransport for LockedTransport<T> {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        let _held = self.lock.acquire().map_err(|m| LinkError::Lock {
            path: self.lock.path().display().to_string(),
            message: m,
        })?;
        self.inner.resync()?;
        self.inner.transceive(command)
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        let held = self.lock.acquire();
        let _held = match held {
            Ok(guard) => guard,
            Err(m) => return Err(self.lock_error(m)),
        };
        self.inner.resync()
    }
}

fn lock_error(lock: &DeviceLock, message: String) -> DeviceError {
    DeviceError::Lock(format!("{}: {message}", lock.path().display()))
}

/// The T=1 link to a real chip.
pub type I2cLink = T1Link<Se050Bus, Delay>;
/// The T=1 link to a virtual chip.
pub type VirtualLink = T1Link<VirtualSe050, Delay>;

/// Start a T=1 session (RESYNCH, ATR) under the lock.
fn start_link<I2C>(
    bus: I2C,
    options: T1Options,
    lock: DeviceLock,
) -> Result<LockedTransport<T1Link<I2C, Delay>>, DeviceError>
where
    I2C: embedded_hal::i2c::I2c + Send,
    T1Link<I2C, Delay>: ApduTransport,
{
    let link = {
        let _held = lock.acquire().map_err(|m| lock_error(&lock, m))?;
        T1Link::open(bus, Delay, options).map_err(DeviceError::Link)?
    };
    Ok(LockedTransport::new(link, lock))
}

/// A real SE050 at `address` on the bus `device` (e.g. `/dev/i2c-1`, 0x48).
pub fn open_i2c(device: &Path, address: u8) -> Result<LockedTransport<I2cLink>, DeviceError> {
    open_i2c_locked(device, address, DEFAULT_LOCK_TIMEOUT)
}

fn open_i2c_locked(
    device: &Path,
    address: u8,
    lock_timeout: Duration,
) -> Result<LockedTransport<I2cLink>, DeviceError> {
    let bus = i2c::open_bus(device).map_err(DeviceError::Bus)?;
    let lock = DeviceLock::open(&lock::i2c_lock_path(device, address))
        .map_err(DeviceError::Lock)?
        .with_timeout(lock_timeout);
    let options = T1Options {
        address,
        ..T1Options::default()
    };
    start_link(bus, options, lock)
}

/// Any [`ApduHandler`] as a virtual chip on the bus, locked by `lock_path`.
pub fn open_virtual_with(
    handler: Box<dyn ApduHandler>,
    lock_path: &Path,
    options: VirtualOptions,
) -> Result<LockedTransport<VirtualLink>, DeviceError> {
    let lock = DeviceLock::open(lock_path).map_err(DeviceError::Lock)?;
    virtual_on_lock(handler, lock, options)
}

fn virtual_on_lock(
    handler: Box<dyn ApduHandler>,
    lock: DeviceLock,
    options: VirtualOptions,
) -> Result<LockedTransport<VirtualLink>, DeviceError> {
    let link_options = T1Options {
        address: options.address,
        ..T1Options::default()
    };
    let chip = VirtualSe050::new(handler, options);
    start_link(chip, link_options, lock)
}

/// The virtual SE050 whose state persists in `state` (created when missing),
/// with the real chip's timing (BWT 1000 ms) and `latency` per keygen/ECDH.
pub fn open_virtual(
    state: &Path,
    latency: Duration,
) -> Result<LockedTransport<VirtualLink>, DeviceError> {
    open_virtual_with_options(state, latency, VirtualOptions::default())
}

/// [`open_virtual`] with the bus behaviour (BWT, faults) chosen by the caller.
pub fn open_virtual_with_options(
    state: &Path,
    latency: Duration,
    options: VirtualOptions,
) -> Result<LockedTransport<VirtualLink>, DeviceError> {
    open_virtual_locked(state, latency, options, DEFAULT_LOCK_TIMEOUT)
}

fn open_virtual_locked(
    state: &Path,
    latency: Duration,
    options: VirtualOptions,
    lock_timeout: Duration,
) -> Result<LockedTransport<VirtualLink>, DeviceError> {
    let lock_path = lock::state_lock_path(state);
    let lock = DeviceLock::open(&lock_path)
        .map_err(DeviceError::Lock)?
        .with_timeout(lock_timeout);
    // The store's own reads are safe without the lock, but loading under it means
    // a state written by a concurrent exchange is seen whole.
    let applet = {
        let _held = lock.acquire().map_err(|m| lock_error(&lock, m))?;
        VirtualApplet::open(state, latency).map_err(DeviceError::Store)?
    };
    virtual_on_lock(Box::new(applet), lock, options)
}

/// The link to the chip `transport` names, locked, re-selecting the applet after
/// a chip reset, as the applet driver takes it.
pub fn open_transport(transport: &Transport) -> Result<Box<dyn ApduTransport>, DeviceError> {
    open_transport_with_lock_timeout(transport, DEFAULT_LOCK_TIMEOUT)
}

/// [`open_transport`] whose exchanges wait at most `lock_timeout` for another holder of
/// the chip's inter-process lock, then fail with [`LinkError::Lock`] naming the lock file.
pub fn open_transport_with_lock_timeout(
    transport: &Transport,
    lock_timeout: Duration,
) -> Result<Box<dyn ApduTransport>, DeviceError> {
    Ok(match transport {
        Transport::I2c { device, address } => Box::new(Reselecting::new(open_i2c_locked(
            device,
            *address,
            lock_timeout,
        )?)),
        Transport::Virtual { state, latency } => Box::new(Reselecting::new(open_virtual_locked(
            state,
            *latency,
            VirtualOptions::default(),
            lock_timeout,
        )?)),
    })
}

/// Open the chip `transport` names and select its IoT applet.
pub fn open(transport: &Transport) -> Result<Se050<Box<dyn ApduTransport>>, DeviceError> {
    open_with_lock_timeout(transport, DEFAULT_LOCK_TIMEOUT)
}

/// [`open`] with the bound on waiting for the chip's inter-process lock.
pub fn open_with_lock_timeout(
    transport: &Transport,
    lock_timeout: Duration,
) -> Result<Se050<Box<dyn ApduTransport>>, DeviceError> {
    Se050::select(open_transport_with_lock_timeout(transport, lock_timeout)?)
        .map_err(DeviceError::Applet)
}

#[cfg(test)]
mod tests;
