//! What the token needs from the chip, in the token's own terms.
//!
//! The token layer calls the applet layer only through this trait: one method per chip
//! operation, RFC 7748 byte order throughout, object ids as `u32`. `link.rs` implements it on
//! top of `applet::Se050` and keeps it usable across forks.

use super::error::{refuse, Error};
pub use crate::applet::{EcCurve, PolicyEntry};
use pkcs11_sys::*;
use std::fmt;
use zeroize::Zeroizing;

/// What kind of secure object lives at an id, as far as the token cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// An X25519 key pair (private key inside, public key readable).
    X25519Pair,
    /// A NIST P-256 or Ed25519 key pair (issue 22; token/ec_keys.rs).
    EcPair(EcCurve),
    /// A binary file object (may hold one of our metadata records).
    BinaryFile,
    /// Anything else (other curves, AES keys, PINs, counters...): not shown.
    Other,
}

/// Identity of the chip, read once when the link opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipIdentity {
    /// Applet version: major, minor, patch.
    pub applet_version: (u8, u8, u8),
    /// The chip's unique id (18 bytes on an SE050).
    pub unique_id: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChipErrorKind {
    /// The object does not exist.
    NotFound,
    /// The chip's memory is full.
    Full,
    /// The chip refused the command (policy, conditions, wrong data).
    Refused,
    /// The chip could not be reached or the link failed.
    Link,
    /// The object's policy does not allow it to whoever is asking (6986): outside a session
    /// authenticated as the key's user.
    Denied,
    /// The chip no longer knows the authenticated session (it was reset or power-cycled): the
    /// login is gone and the caller must log in again.
    SessionLost,
    /// VerifySessionUserID refused the value (6982); the chip counted one failure.
    PinIncorrect,
    /// The authentication object is blocked (6983): no attempts left.
    PinLocked,
    /// The chip lacks a command the module needs to know what an object is (6D00 / 6A86 to
    /// GetECCurveId): the module stops rather than guess.
    Unsupported,
}

#[derive(Debug, Clone)]
pub struct ChipError {
    pub kind: ChipErrorKind,
    pub message: String,
}

impl fmt::Display for ChipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ChipError {
    pub fn new(kind: ChipErrorKind, message: impl Into<String>) -> ChipError {
        ChipError {
            kind,
            message: message.into(),
        }
    }

    /// The PKCS#11 answer for a chip failure during `what`, logged.
    pub fn to_ckr(&self, what: &str) -> Error {
        let rv = match self.kind {
            ChipErrorKind::NotFound => CKR_OBJECT_HANDLE_INVALID,
            ChipErrorKind::Full => CKR_DEVICE_MEMORY,
            ChipErrorKind::Refused => CKR_FUNCTION_FAILED,
            ChipErrorKind::Link | ChipErrorKind::Unsupported => CKR_DEVICE_ERROR,
            ChipErrorKind::Denied | ChipErrorKind::SessionLost => CKR_USER_NOT_LOGGED_IN,
            ChipErrorKind::PinIncorrect => CKR_PIN_INCORRECT,
            ChipErrorKind::PinLocked => CKR_PIN_LOCKED,
        };
        refuse(rv, format_args!("SE050: {what}: {self}"))
    }
}

pub type ChipResult<T> = std::result::Result<T, ChipError>;

/// An authentication object's failure counter, as the chip keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthCounter {
    pub failures: u16,
    /// 0: no limit.
    pub max_attempts: u16,
}

impl AuthCounter {
    pub fn locked(&self) -> bool {
        self.max_attempts != 0 && self.failures >= self.max_attempts
    }

    pub fn final_try(&self) -> bool {
        self.max_attempts != 0 && self.failures + 1 == self.max_attempts
    }
}

/// The chip operations the token uses. Object ids are already checked by the caller to be in
/// the customer range where the token creates objects.
pub trait Chip: Send {
    fn identity(&mut self) -> ChipResult<ChipIdentity>;
    fn generate_x25519(&mut self, id: u32) -> ChipResult<()>;
    fn read_x25519_public(&mut self, id: u32) -> ChipResult<[u8; 32]>;
    fn ecdh_x25519(&mut self, id: u32, peer: &[u8; 32]) -> ChipResult<Zeroizing<[u8; 32]>>;
    fn delete(&mut self, id: u32) -> ChipResult<()>;
    fn exists(&mut self, id: u32) -> ChipResult<bool>;
    fn list_ids(&mut self) -> ChipResult<Vec<u32>>;
    fn kind(&mut self, id: u32) -> ChipResult<ObjectKind>;
    fn get_random(&mut self, len: usize) -> ChipResult<Vec<u8>>;
    /// Creates (or overwrites, same length) a binary file with `data`; a file it creates gets
    /// `policy` (empty: none), one rewritten in place keeps its own.
    fn write_binary(&mut self, id: u32, data: &[u8], policy: &[PolicyEntry]) -> ChipResult<()>;
    fn read_binary(&mut self, id: u32) -> ChipResult<Vec<u8>>;
    /// The attested read of `id` with `freshness`, and the attestation certificate(s) the chip
    /// holds (token/attest.rs).
    fn attest(
        &mut self,
        id: u32,
        freshness: &[u8; 16],
    ) -> ChipResult<(crate::applet::attest::AttestedRead, Vec<Vec<u8>>)>;

    // ----- P-256 and Ed25519 keys (token/ec_keys.rs, token/sign.rs) -----

    /// Generates a pair on `curve` (creating the curve on the chip first if needed).
    fn generate_ec(&mut self, id: u32, curve: EcCurve, policy: &[PolicyEntry]) -> ChipResult<()>;
    /// P-256: `04 || X || Y`; Ed25519: RFC 8032's 32 bytes.
    fn read_ec_public(&mut self, id: u32, curve: EcCurve) -> ChipResult<Vec<u8>>;
    /// ECDSA of a 32-byte digest: `r || s`.
    fn ecdsa_sign(&mut self, id: u32, digest: &[u8; 32]) -> ChipResult<[u8; 64]>;
    /// Ed25519 of a whole message: `R || S`.
    fn eddsa_sign(&mut self, id: u32, message: &[u8]) -> ChipResult<[u8; 64]>;
    /// P-256 ECDH with an uncompressed peer point: the x coordinate.
    fn ecdh_p256(&mut self, id: u32, peer: &[u8]) -> ChipResult<Zeroizing<[u8; 32]>>;

    // ----- authentication (PINs are UserID objects; see token/pin.rs) -----

    /// Generates an X25519 pair whose use is restricted by `policy` (empty: none).
    fn generate_x25519_with_policy(&mut self, id: u32, policy: &[PolicyEntry]) -> ChipResult<()>;
    /// The failure counter of the authentication object at `id`; None when there is none.
    fn auth_counter(&mut self, id: u32) -> ChipResult<Option<AuthCounter>>;
    /// Creates (with `policy`) or overwrites (policy ignored) the UserID at `id`; overwriting
    /// resets its failure counter.
    fn write_user_id(
        &mut self,
        id: u32,
        value: &[u8],
        max_attempts: u16,
        policy: &[PolicyEntry],
    ) -> ChipResult<()>;
    /// Opens a chip session authenticated as the UserID at `id` with `value`: exactly one
    /// CreateSession and one VerifySessionUserID, never retried. Later commands run inside it.
    /// A refused value closes the unauthenticated session again.
    fn open_auth_session(&mut self, id: u32, value: &[u8]) -> ChipResult<()>;
    /// Closes the authenticated session (best effort: a lost answer still forgets it).
    fn close_auth_session(&mut self);
    /// Whether commands run inside an authenticated session (false once the chip lost it).
    fn in_auth_session(&self) -> bool;
    /// Sets the open authenticated session aside, still open on the chip (C_SetPIN verifies
    /// the old PIN in a session of its own and must not end the login's).
    fn set_auth_session_aside(&mut self) -> Option<[u8; 8]>;
    /// Goes back to a session set aside.
    fn resume_auth_session(&mut self, session: [u8; 8]);
}
