//! A virtual NXP SE050: the chip's device side, seen from the host as an embedded-hal 1.0
//! [`I2c`] bus at the byte level, so any driver runs against it as against the real chip.
//!
//! It is written from the specifications (UM11225 for T=1 over I2C, ISO/IEC 7816-3/-4, AN12413
//! for the IoT applet, GP Card Specification Amendment D for SCP03) and NXP's middleware where
//! they leave room, and shares no code with any host driver: this crate depends on none. A
//! mistake made once in a host's encoding therefore makes the host and this chip disagree, and
//! a test fail, instead of passing on both sides. It shares only vetted crates (RustCrypto's
//! aes/cmac/cbc, x25519-dalek, crc, zeroize).
//!
//! ```text
//! lib.rs       VirtualSe050 (the I2C device), VirtualOptions, ApduHandler, Processed
//! wire/        the chip's own codecs: CRC, T=1 blocks, APDUs, TLVs
//! atr.rs       the ATR it answers
//! link.rs      device-side T=1: NACK while busy, partial reads, chaining, R/S-blocks, WTX
//! faults.rs    fault injection (corrupt byte, NACK storm, drop frame, reset mid-APDU)
//! protocol.rs  the applet's command bytes, each with its source
//! x25519.rs    the chip's byte order of X25519 values, with its sources
//! applet.rs    the IoT applet interpreter (applet/: sessions, attributes, management,
//!              transient objects): ApduHandler for the link
//! store.rs     persistent state: one file, atomic write, reload on change
//! counters.rs  operation counters (ECDHs, key generations, ...)
//! power.rs     power cycles announced through a file
//! scp03/       PlatformSCP03, the chip's side, wrapped around the applet handler
//! wipe.rs      buffers wiped when dropped
//! ```

pub mod applet;
pub mod atr;
pub mod attestation;
pub mod counters;
pub mod ec;
pub mod faults;
mod link;
pub mod power;
pub mod protocol;
pub mod scp03;
pub mod store;
pub mod wipe;
pub mod wire;
pub mod x25519;

use std::fmt;
use std::time::Duration;

use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};

pub use faults::{Direction, FaultHandle};
use link::DeviceLink;
pub use link::MAX_COMMAND_APDU;

/// The SE050's 7-bit I2C address (UM11225; NXP's middleware `SE050_I2C_ADDR` 0x48).
pub const DEFAULT_ADDRESS: u8 = 0x48;

/// What the virtual link asks of the virtual applet.
pub trait ApduHandler: Send {
    /// Interpret one command APDU. `busy` is how long the simulated chip works on it:
    /// the link NACKs its address (and sends WTX past BWT) for that long.
    fn process(&mut self, command: &[u8]) -> Processed;
    /// The chip was reset (soft reset / chip reset): drop transient state, deselect.
    fn reset(&mut self) {}
}

/// The answer to one command APDU and how long the chip takes to produce it. The response may
/// be a shared secret: it is wiped when dropped, here and in every buffer of the link.
pub struct Processed {
    pub response: crate::wipe::SecretBytes,
    pub busy: std::time::Duration,
}

/// How the virtual chip behaves on the bus.
#[derive(Debug, Clone)]
pub struct VirtualOptions {
    /// Block waiting time announced in the ATR; commands slower than this get WTX
    /// requests. The real chip's is 1000 ms; tests use a few ms.
    pub bwt: Duration,
    /// 7-bit address the chip answers on (0x48).
    pub address: u8,
    /// Faults to inject; keep a clone to script them while the link runs.
    pub faults: FaultHandle,
}

impl Default for VirtualOptions {
    fn default() -> Self {
        VirtualOptions {
            bwt: Duration::from_millis(1000),
            address: DEFAULT_ADDRESS,
            faults: FaultHandle::new(1),
        }
    }
}

/// Counters of what crossed the virtual bus, for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames written by the host (including damaged ones).
    pub frames_received: u64,
    /// Frames that failed CRC, length or NAD checks.
    pub bad_frames_received: u64,
    /// Frames made readable for the host.
    pub frames_sent: u64,
    /// Frames lost to injected drops, either direction.
    pub frames_lost: u64,
    /// Complete command APDUs handed to the applet.
    pub apdus: u64,
    pub wtx_requests: u64,
    /// Frames repeated because the host asked or repeated itself.
    pub retransmissions: u64,
    /// Chip resets (soft, chip reset, injected).
    pub resets: u64,
    /// Blocks not allowed at that point of the protocol.
    pub protocol_errors: u64,
    /// Chained commands aborted for being longer than the chip's APDU buffer.
    pub chains_aborted: u64,
    /// Address NACKs given (busy, nothing to read, injected storm).
    pub nacks: u64,
}

/// The I2C error of the virtual bus: only ever an address NACK, as a busy or
/// absent chip gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualI2cError {
    pub address: u8,
    pub reason: &'static str,
}

impl fmt::Display for VirtualI2cError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "address {:#04x} NACKed ({})", self.address, self.reason)
    }
}

impl std::error::Error for VirtualI2cError {}

impl embedded_hal::i2c::Error for VirtualI2cError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
    }
}

/// A virtual SE050 on an I2C bus of its own.
pub struct VirtualSe050 {
    link: DeviceLink,
    address: u8,
    faults: FaultHandle,
}

impl VirtualSe050 {
    pub fn new(handler: Box<dyn ApduHandler>, options: VirtualOptions) -> Self {
        VirtualSe050 {
            link: DeviceLink::new(handler, options.bwt, options.faults.clone()),
            address: options.address,
            faults: options.faults,
        }
    }

    /// The handle on this chip's fault plan.
    pub fn faults(&self) -> FaultHandle {
        self.faults.clone()
    }

    pub fn stats(&self) -> LinkStats {
        self.link.stats.clone()
    }

    /// The last protocol problem the chip saw (damaged frame, unexpected block).
    pub fn last_error(&self) -> Option<&str> {
        self.link.last_error.as_deref()
    }

    /// Bytes of a chained command buffered so far (never more than [`MAX_COMMAND_APDU`]).
    pub fn buffered_command_len(&self) -> usize {
        self.link.buffered_command_len()
    }

    fn nack(&mut self, reason: &'static str) -> VirtualI2cError {
        self.link.stats.nacks += 1;
        VirtualI2cError {
            address: self.address,
            reason,
        }
    }
}

impl ErrorType for VirtualSe050 {
    type Error = VirtualI2cError;
}

impl I2c<SevenBitAddress> for VirtualSe050 {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        if address != self.address {
            return Err(VirtualI2cError {
                address,
                reason: "no device at this address",
            });
        }
        for operation in operations {
            // Each transfer starts with the address byte, which the chip may NACK.
            if self.faults.take_nack() {
                return Err(self.nack("injected NACK storm"));
            }
            if self.link.busy() {
                return Err(self.nack("busy processing a command"));
            }
            match operation {
                Operation::Read(buf) => {
                    if !self.link.read(buf) {
                        return Err(self.nack("nothing to send"));
                    }
                }
                Operation::Write(bytes) => self.link.write(bytes),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod link_tests;
