//! The static key: the one secret of a WireGuard interface.
//!
//! The protocol core never sees the private key; it asks a `StaticKey` for one Diffie-Hellman at a
//! time. A software key (`soft::SoftKey`) answers in microseconds; a token key (`token::TokenKey`)
//! in tens of milliseconds, which is why only the handshake worker ever calls `diffie_hellman`.

pub mod attest;
mod ck_error;
pub mod health;
pub mod inventory;
pub mod login;
pub mod pin;
pub mod refusals;
pub mod soft;
pub mod token;

use std::fmt;

pub use soft::SoftKey;
pub use token::TokenKey;

/// What every static key offers the protocol: its public half and DH with its private half.
pub trait StaticKey: Send + Sync {
    /// The X25519 public key (RFC 7748 little-endian order).
    fn public_key(&self) -> [u8; 32];
    /// One Diffie-Hellman with the static private key (RFC 7748 order in and out).
    /// May take tens of milliseconds: called only from the handshake worker.
    fn diffie_hellman(
        &self,
        peer_public: &[u8; 32],
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, KeyError>;
    /// The key's health (token keys: chip, counters, latency, PIN state); `None` for a key
    /// with nothing to report (a software key).
    fn health(&self) -> Option<health::KeyHealth> {
        None
    }
    /// Whether the private key is held by hardware (a token whose slot has CKF_HW_SLOT).
    /// A software key, or a software token such as the virtual SE050, is not.
    fn in_hardware(&self) -> bool {
        false
    }
    /// Why the key can no longer be used, once that is final: the token refused its PIN when
    /// the daemon logged in again after a chip reset. The daemon then stops rather than try
    /// again (which would spend the chip's PIN attempts). `None` while the key works.
    fn unusable(&self) -> Option<String> {
        None
    }
}

/// Why a static-key Diffie-Hellman failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The result was all zeros: the peer's public key is a low-order point (RFC 7748 section 6.1).
    NonContributory,
    /// The token (or whatever holds the key) failed; the text says what it reported.
    Token(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NonContributory => {
                write!(
                    f,
                    "Diffie-Hellman result is all zeros (low-order peer public key)"
                )
            }
            KeyError::Token(what) => write!(f, "static key operation failed: {what}"),
        }
    }
}

impl std::error::Error for KeyError {}
