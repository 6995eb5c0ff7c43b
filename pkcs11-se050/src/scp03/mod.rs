//! GlobalPlatform SCP03 (Card Specification v2.3 Amendment D) as the SE050's PlatformSCP03:
//! an encrypted, authenticated channel between the applet commands and T=1.
//!
//! ```text
//! crypto.rs     AES-CMAC, the SP 800-108 KDF, cryptograms, session keys, padding, key wrap
//! session.rs    secure messaging at level 0x33, host and card directions
//! keys.rs       static key sets: NXP's key file format, file permissions, published dev keys
//! transport.rs  Scp03Transport<T: ApduTransport>: the handshake, wrapping, re-opening
//! owner.rs      which process holds the chip's one secure channel session
//! rotate.rs     PUT KEY: replacing the chip's PlatformSCP keys
//! rotation.rs   scp03-rotate: PUT KEY and the key files, no key set ever lost
//! ```

pub mod crypto;
pub mod keys;
pub mod owner;
pub mod rotate;
pub mod rotation;
pub mod session;
pub mod transport;

use std::fmt;

pub use keys::StaticKeys;
pub use transport::Scp03Transport;

/// Why the secure channel failed. Every message names the secure channel, so that a user
/// reading a log line knows which layer refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scp03Error {
    /// The card cryptogram did not verify: the chip has other keys than ours (or is not the chip).
    CardCryptogram { kvn: u8 },
    /// The chip refused the handshake (INITIALIZE UPDATE or EXTERNAL AUTHENTICATE).
    HandshakeRefused { command: &'static str, sw: u16 },
    /// A response's R-MAC did not verify, or was missing.
    ResponseMac(String),
    /// A command's C-MAC did not verify (the chip's side).
    CommandMac(String),
    /// A malformed message inside the channel.
    Protocol(String),
    /// The key file could not be used.
    KeyFile(String),
}

impl fmt::Display for Scp03Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SCP03 secure channel: ")?;
        match self {
            Scp03Error::CardCryptogram { kvn } => write!(
                f,
                "wrong card cryptogram: the SE050's PlatformSCP keys (version {kvn:#04x}) are not \
                 the configured ones (wrong key file, or rotated keys?)"
            ),
            Scp03Error::HandshakeRefused { command, sw } => {
                write!(f, "the SE050 refused {command} with status {sw:04X}")?;
                match sw {
                    0x6A88 => write!(f, " (no key set with this version: check scp03_kvn)"),
                    0x6300 | 0x6982 => write!(f, " (authentication failed: wrong keys?)"),
                    _ => Ok(()),
                }
            }
            Scp03Error::ResponseMac(why) => write!(f, "MAC error: {why}"),
            Scp03Error::CommandMac(why) => write!(f, "MAC error: {why}"),
            Scp03Error::Protocol(why) => f.write_str(why),
            Scp03Error::KeyFile(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Scp03Error {}
