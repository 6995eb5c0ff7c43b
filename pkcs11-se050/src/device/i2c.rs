//! A real SE050 on `/dev/i2c-N`, through linux-embedded-hal's `I2cdev`.
//!
//! The one thing added to `I2cdev` is the reading of NACKs: Linux bus drivers
//! report an address NACK as ENXIO or (e.g. the Raspberry Pi's i2c-bcm2835) as
//! EREMOTEIO, and the link must see both as "the chip is busy, poll again".

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use embedded_hal::i2c::{Error as _, ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};
use linux_embedded_hal::i2cdev::linux::LinuxI2CError;
use linux_embedded_hal::I2cdev;

/// The default bus and address of an SE050 (Raspberry Pi header, pins 3/5).
pub const DEFAULT_I2C_DEVICE: &str = "/dev/i2c-1";

/// An I2C bus device, with NACKs reported as NACKs.
pub struct Se050Bus {
    dev: I2cdev,
    path: PathBuf,
}

/// An I2C failure on a real bus.
#[derive(Debug)]
pub struct BusError {
    kind: ErrorKind,
    message: String,
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BusError {}

impl embedded_hal::i2c::Error for BusError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Open the bus device at `path`; the error says what is missing and what to do.
pub fn open_bus(path: &Path) -> Result<Se050Bus, String> {
    match I2cdev::new(path) {
        Ok(dev) => Ok(Se050Bus {
            dev,
            path: path.to_owned(),
        }),
        Err(e) => Err(describe_open_error(path, &e)),
    }
}

fn describe_open_error(path: &Path, e: &LinuxI2CError) -> String {
    let io_kind = match e {
        LinuxI2CError::Io(io) => Some(io.kind()),
        LinuxI2CError::Errno(n) => Some(io::Error::from_raw_os_error(*n).kind()),
    };
    let hint = match io_kind {
        Some(io::ErrorKind::NotFound) => {
            "no such device: is the I2C bus enabled and the i2c-dev module loaded (modprobe i2c-dev)?"
        }
        Some(io::ErrorKind::PermissionDenied) => {
            "permission denied: run as root or add the user to the group owning the device (i2c)"
        }
        _ => "cannot open the I2C bus",
    };
    format!("{}: {hint} ({e})", path.display())
}

impl Se050Bus {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ErrorType for Se050Bus {
    type Error = BusError;
}

impl I2c for Se050Bus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.dev.transaction(address, operations).map_err(|e| {
            let errno = match e.inner() {
                LinuxI2CError::Errno(n) => Some(*n),
                LinuxI2CError::Io(io) => io.raw_os_error(),
            };
            let kind = kind_of_errno(errno, e.kind());
            BusError {
                kind,
                message: format!("{} at address {address:#04x}: {e}", self.path.display()),
            }
        })
    }
}

/// What an I2C_RDWR failure means to the link: an address NACK ("busy, poll again") for the
/// errnos bus drivers give it (ENXIO: most drivers, i2c-tiny-usb among them; EREMOTEIO: the
/// Raspberry Pi's i2c-bcm2835), else `otherwise` (linux-embedded-hal's reading).
fn kind_of_errno(errno: Option<i32>, otherwise: ErrorKind) -> ErrorKind {
    match errno {
        Some(libc::ENXIO) | Some(libc::EREMOTEIO) => {
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
        }
        _ => otherwise,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_nacks_of_every_known_driver_read_as_busy() {
        let nack = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);
        // What the kernel route of tests/i2c_kernel.rs gives (i2c-tiny-usb), and the Pi's.
        assert_eq!(kind_of_errno(Some(libc::ENXIO), ErrorKind::Other), nack);
        assert_eq!(kind_of_errno(Some(libc::EREMOTEIO), ErrorKind::Other), nack);
        // Anything else keeps its own meaning: a bus error is no reason to poll.
        assert_eq!(
            kind_of_errno(Some(libc::EIO), ErrorKind::Bus),
            ErrorKind::Bus
        );
        assert_eq!(kind_of_errno(None, ErrorKind::Other), ErrorKind::Other);
    }

    #[test]
    fn missing_bus_is_named_with_a_hint() {
        let err = open_bus(Path::new("/dev/i2c-no-such-bus")).err().unwrap();
        assert!(err.contains("/dev/i2c-no-such-bus"), "{err}");
        assert!(err.contains("no such device"), "{err}");
    }

    #[test]
    fn something_that_is_not_a_bus_is_refused() {
        // /dev/null opens but is no I2C adapter: the I2C_SLAVE ioctl fails.
        let err = open_bus(Path::new("/dev/null")).err().unwrap();
        assert!(err.contains("/dev/null"), "{err}");
    }
}
