//! T=1 over I2C, host side, as NXP specifies it for the SE050 (UM11225).
//!
//! ```text
//! crc.rs    CRC-16/X-25 of every frame (shared with the virtual chip)
//! frame.rs  Frame { nad, pcb, inf }: encode/decode, PCB kinds I/R/S
//! atr.rs    the chip's ATR: BWT, IFSC, MPOT, max clock, historical bytes
//! link.rs   T1Link: I-blocks, chaining, R-block recovery, WTX, NACK polling
//!   link/supervisory.rs  S-blocks: RESYNCH, GET ATR, soft/chip reset, IFS; the ATR applied
//! ```
//!
//! The APDU layer above sees only [`ApduTransport`].

pub mod atr;
pub mod crc;
pub mod frame;
pub mod link;

use std::fmt;
use std::time::Duration;

pub use atr::Atr;
pub use frame::{Frame, Pcb, RError, SKind};
pub use link::{T1Link, T1Options};

use crate::wipe::SecretBytes;

/// What the APDU layer needs from the link below it.
pub trait ApduTransport: Send {
    /// Exchange one command APDU for its response APDU (data followed by SW1 SW2). The
    /// response may carry a shared secret: it is wiped when dropped, and every buffer it
    /// crossed on the way was wiped too.
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError>;
    /// Bring the link to a known state (T=1 RESYNCH); called after taking the inter-process lock.
    fn resync(&mut self) -> Result<(), LinkError>;
}

impl ApduTransport for Box<dyn ApduTransport> {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        (**self).transceive(command)
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        (**self).resync()
    }
}

/// Why an exchange with the chip failed. Every message says what went wrong and
/// where, because on a real board the only other clue is a logic analyser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The I2C bus itself failed (not a NACK of the address while the chip is busy).
    I2c {
        operation: &'static str,
        address: u8,
        message: String,
    },
    /// The chip NACKed its address for the whole time it was allowed to be busy.
    NotResponding {
        address: u8,
        waited: Duration,
        operation: &'static str,
    },
    /// The chip kept asking for more time (WTX) past the overall limit.
    ResponseTimeout { waited: Duration, wtx_requests: u32 },
    /// Frames kept arriving damaged (bad CRC, bad NAD, bad length) or the chip
    /// kept asking for retransmission, and the retry budget ran out.
    RetriesExhausted { attempts: u32, last_problem: String },
    /// The chip sent a block that is not allowed at this point of the protocol.
    Protocol { pcb: u8, expected: &'static str },
    /// The ATR the chip sent could not be parsed.
    InvalidAtr(String),
    /// The command to send was empty or too long.
    InvalidCommand(String),
    /// The inter-process lock around an exchange could not be taken.
    Lock { path: String, message: String },
    /// The chip aborted a chained command (S(ABORT request)) after taking `accepted` of its
    /// `total` bytes: it is longer than the chip's APDU buffer.
    ChainAborted { accepted: usize, total: usize },
    /// The chip chained a response longer than any response APDU can be.
    ResponseTooLong { limit: usize },
    /// The PlatformSCP03 secure channel failed (wrong cryptogram, MAC error, key file):
    /// the channel was dropped and is opened again before the next command.
    SecureChannel(crate::scp03::Scp03Error),
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::I2c {
                operation,
                address,
                message,
            } => write!(
                f,
                "I2C {operation} at address {address:#04x} failed: {message}"
            ),
            LinkError::NotResponding {
                address,
                waited,
                operation,
            } => write!(
                f,
                "SE050 at I2C address {address:#04x} is not responding: it NACKed its address for \
                 {} ms while the host tried to {operation}",
                waited.as_millis()
            ),
            LinkError::ResponseTimeout {
                waited,
                wtx_requests,
            } => write!(
                f,
                "SE050 did not answer within {} ms ({wtx_requests} waiting-time extensions requested)",
                waited.as_millis()
            ),
            LinkError::RetriesExhausted {
                attempts,
                last_problem,
            } => write!(
                f,
                "T=1 error recovery gave up after {attempts} retransmissions; last problem: {last_problem}"
            ),
            LinkError::Protocol { pcb, expected } => write!(
                f,
                "T=1 protocol violation: received block with PCB {pcb:#04x}, expected {expected}"
            ),
            LinkError::InvalidAtr(why) => write!(f, "invalid ATR from SE050: {why}"),
            LinkError::InvalidCommand(why) => write!(f, "invalid command APDU: {why}"),
            LinkError::Lock { path, message } => {
                write!(f, "cannot take the SE050 lock {path}: {message}")
            }
            LinkError::ChainAborted { accepted, total } => write!(
                f,
                "the SE050 aborted a chained command of {total} bytes after taking {accepted} \
                 (S(ABORT)): the command is longer than the chip's APDU buffer"
            ),
            LinkError::ResponseTooLong { limit } => write!(
                f,
                "the SE050 chained a response of more than {limit} bytes, longer than any \
                 response APDU: refused"
            ),
            LinkError::SecureChannel(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LinkError {}

#[cfg(test)]
mod link_bound_tests;
#[cfg(test)]
mod link_mutant_tests;
#[cfg(test)]
mod link_tests;
#[cfg(test)]
mod test_chip;
