//! C_SignInit / C_Sign / C_SignUpdate / C_SignFinal (issue 22): CKM_ECDSA and
//! CKM_ECDSA_SHA256 with P-256 keys, CKM_EDDSA with Ed25519 keys, each signature made on the
//! chip and checked on the host against the key the handle names before it is returned (a chip
//! fault, a swapped byte order or a key replaced by another process gives no signature).
//!
//! - CKM_ECDSA signs a hash the caller made. Like ECDSA itself (FIPS 186-4 6.4), only its
//!   leftmost 256 bits count: a longer hash is cut, a shorter one is the same integer with
//!   leading zeros; so the chip always gets 32 bytes. Accepted: 1 to 64 bytes (SHA-512's).
//! - CKM_ECDSA_SHA256 hashes on the host (RustCrypto sha2), in one part or several.
//! - CKM_EDDSA is PureEdDSA (RFC 8032): the chip takes the whole message in one APDU, so a
//!   message is at most `applet::sign::MAX_EDDSA_MESSAGE` bytes (CKR_DATA_LEN_RANGE beyond);
//!   Ed25519ph and contexts (CK_EDDSA_PARAMS) are refused (the chip has neither).

use super::chip::EcCurve;
use super::error::{answer, refuse, Result};
use super::handles::{split_handle, Half};
use super::Token;
use crate::applet::sign::MAX_EDDSA_MESSAGE;
use pkcs11_sys::*;
use sha2::{Digest, Sha256};

/// Every signature here is 64 bytes: P-256's r || s, Ed25519's R || S.
pub const SIGNATURE_LEN: usize = 64;
/// The longest hash CKM_ECDSA takes (SHA-512's).
pub const MAX_ECDSA_HASH: usize = 64;

/// A signing operation between C_SignInit and the C_Sign / C_SignFinal that ends it.
pub struct SignOperation {
    mechanism: CK_MECHANISM_TYPE,
    key_id: u32,
    curve: EcCurve,
    /// The public key the handle is bound to (P-256 point / Ed25519 key): the signature is
    /// checked against it.
    public: Vec<u8>,
    input: Input,
    /// C_SignUpdate was called: only C_SignFinal may end it.
    multi_part: bool,
}

enum Input {
    Hashing(Sha256),
    /// CKM_ECDSA_SHA1 (OpenSC 0.23's `pkcs11-tool --test-ec` signs with it).
    HashingSha1(sha1::Sha1),
    Collected(Vec<u8>),
}

impl std::fmt::Debug for SignOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SignOperation({:#x}, key {:#010x})",
            self.mechanism, self.key_id
        )
    }
}

/// The mechanism's name, for messages.
fn mechanism_name(mechanism: CK_MECHANISM_TYPE) -> &'static str {
    match mechanism {
        CKM_ECDSA => "CKM_ECDSA",
        CKM_ECDSA_SHA256 => "CKM_ECDSA_SHA256",
        CKM_ECDSA_SHA1 => "CKM_ECDSA_SHA1",
        CKM_EDDSA => "CKM_EDDSA",
        _ => "this mechanism",
    }
}

impl Token {
    /// `has_parameter`: the caller's CK_MECHANISM carried a parameter other than an EdDSA one
    /// asking for nothing (abi/sign.rs reads CK_EDDSA_PARAMS and refuses what the chip lacks).
    pub fn sign_init(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        key: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        self.check_session(session, false)?;
        if self.sessions.lock().get(session)?.sign.is_some() {
            return Err(answer(
                CKR_OPERATION_ACTIVE,
                "a signing operation is already active",
            ));
        }
        let wanted = match mechanism {
            CKM_ECDSA | CKM_ECDSA_SHA1 | CKM_ECDSA_SHA256 => EcCurve::NistP256,
            CKM_EDDSA => EcCurve::Ed25519,
            other => {
                return Err(refuse(
                    CKR_MECHANISM_INVALID,
                    format_args!(
                        "signing with mechanism {other:#x}; only CKM_ECDSA, CKM_ECDSA_SHA1, \
                         CKM_ECDSA_SHA256 (P-256) and CKM_EDDSA (Ed25519)"
                    ),
                ))
            }
        };
        if split_handle(key).is_none() {
            return Err(match self.secrets.lock().objects.contains_key(&key) {
                true => refuse(CKR_KEY_TYPE_INCONSISTENT, "a derived secret cannot sign"),
                false => answer(CKR_KEY_HANDLE_INVALID, format_args!("no key {key:#x}")),
            });
        }
        self.require_user_for_keys()?;
        let cache = self.loaded_cache()?;
        let (pair, half) = cache
            .resolve(key)
            .ok_or_else(|| answer(CKR_KEY_HANDLE_INVALID, format_args!("no key {key:#x}")))?;
        let curve = match pair.ec {
            Some(curve) if curve == wanted => curve,
            Some(curve) => {
                return Err(refuse(
                    CKR_KEY_TYPE_INCONSISTENT,
                    format_args!(
                        "{} needs a {} key; key {:#010x} is {}",
                        mechanism_name(mechanism),
                        wanted.name(),
                        pair.key_id,
                        curve.name()
                    ),
                ))
            }
            None => {
                return Err(refuse(
                    CKR_KEY_TYPE_INCONSISTENT,
                    format_args!(
                        "{} with X25519 key {:#010x}: X25519 keys only derive",
                        mechanism_name(mechanism),
                        pair.key_id
                    ),
                ))
            }
        };
        if half != Half::Private {
            return Err(refuse(
                CKR_KEY_FUNCTION_NOT_PERMITTED,
                "signing needs the private key; this handle names the public one",
            ));
        }
        let operation = SignOperation {
            mechanism,
            key_id: pair.key_id,
            curve,
            public: super::ec_keys::public_key(pair),
            input: match mechanism {
                CKM_ECDSA_SHA256 => Input::Hashing(Sha256::new()),
                CKM_ECDSA_SHA1 => Input::HashingSha1(sha1::Sha1::new()),
                _ => Input::Collected(Vec::new()),
            },
            multi_part: false,
        };
        drop(cache);
        self.sessions.lock().get_mut(session)?.sign = Some(operation);
        Ok(())
    }

    /// The signature length of the active operation (for a length query or a short buffer).
    pub fn sign_len(&self, session: CK_SESSION_HANDLE) -> Result<usize> {
        match &self.sessions.lock().get(session)?.sign {
            Some(_) => Ok(SIGNATURE_LEN),
            None => Err(not_initialized()),
        }
    }

    /// C_Sign: the whole input at once; ends the operation (whatever the outcome).
    pub fn sign(&self, session: CK_SESSION_HANDLE, data: &[u8]) -> Result<Vec<u8>> {
        let mut operation = self.take_operation(session)?;
        if operation.multi_part {
            return Err(refuse(
                CKR_OPERATION_ACTIVE,
                "C_Sign after C_SignUpdate: finish with C_SignFinal",
            ));
        }
        add_input(&mut operation, data)?;
        self.finish(operation)
    }

    /// C_SignUpdate: one more part (CKM_ECDSA_SHA256 and CKM_EDDSA; CKM_ECDSA takes a hash
    /// in one piece). An error ends the operation.
    pub fn sign_update(&self, session: CK_SESSION_HANDLE, part: &[u8]) -> Result<()> {
        let mut sessions = self.sessions.lock();
        let state = sessions.get_mut(session)?;
        let operation = state.sign.as_mut().ok_or_else(not_initialized)?;
        let result = if operation.mechanism == CKM_ECDSA {
            Err(refuse(
                CKR_FUNCTION_FAILED,
                "CKM_ECDSA signs a hash in one C_Sign; use CKM_ECDSA_SHA256 for several parts",
            ))
        } else {
            operation.multi_part = true;
            add_input(operation, part)
        };
        if result.is_err() {
            state.sign = None;
        }
        result
    }

    /// C_SignFinal: ends the operation.
    pub fn sign_final(&self, session: CK_SESSION_HANDLE) -> Result<Vec<u8>> {
        let operation = self.take_operation(session)?;
        self.finish(operation)
    }

    fn take_operation(&self, session: CK_SESSION_HANDLE) -> Result<SignOperation> {
        self.sessions
            .lock()
            .get_mut(session)?
            .sign
            .take()
            .ok_or_else(not_initialized)
    }

    fn finish(&self, operation: SignOperation) -> Result<Vec<u8>> {
        let key_id = operation.key_id;
        let signature = match (&operation.input, operation.curve) {
            (Input::Hashing(_) | Input::HashingSha1(_), _) => {
                let digest = host_digest(&operation.input)?;
                self.chip_sign(key_id, |chip| chip.ecdsa_sign(key_id, &digest))?
            }
            (Input::Collected(hash), EcCurve::NistP256) => {
                let digest = ecdsa_digest(hash)?;
                self.chip_sign(key_id, |chip| chip.ecdsa_sign(key_id, &digest))?
            }
            (Input::Collected(message), EcCurve::Ed25519) => {
                self.chip_sign(key_id, |chip| chip.eddsa_sign(key_id, message))?
            }
        };
        check_signature(&operation, &signature)?;
        Ok(signature.to_vec())
    }

    fn chip_sign(
        &self,
        key_id: u32,
        sign: impl FnOnce(&mut dyn super::chip::Chip) -> super::chip::ChipResult<[u8; 64]>,
    ) -> Result<[u8; 64]> {
        let mut link = self.link.lock();
        let chip = link
            .chip(&self.config)
            .map_err(|e| e.to_ckr("opening the chip"))?;
        sign(chip).map_err(|e| e.to_ckr(&format!("signing with key {key_id:#010x}")))
    }
}

fn not_initialized() -> super::error::Error {
    answer(
        CKR_OPERATION_NOT_INITIALIZED,
        "no signing operation (C_SignInit first)",
    )
}

fn add_input(operation: &mut SignOperation, data: &[u8]) -> Result<()> {
    match &mut operation.input {
        Input::Hashing(hash) => hash.update(data),
        Input::HashingSha1(hash) => hash.update(data),
        Input::Collected(collected) => {
            let limit = match operation.mechanism {
                CKM_ECDSA => MAX_ECDSA_HASH,
                _ => MAX_EDDSA_MESSAGE,
            };
            if collected.len() + data.len() > limit {
                return Err(refuse(
                    CKR_DATA_LEN_RANGE,
                    format_args!(
                        "{}: {} bytes, more than the {limit} the chip takes ({})",
                        mechanism_name(operation.mechanism),
                        collected.len() + data.len(),
                        match operation.mechanism {
                            CKM_ECDSA => "a hash of at most SHA-512's 64 bytes",
                            _ => "an EdDSA message travels in one APDU",
                        }
                    ),
                ));
            }
            collected.extend_from_slice(data);
        }
    }
    Ok(())
}

/// The 32 bytes the chip signs for a hash made on the host (SHA-1's 20 as an integer).
fn host_digest(input: &Input) -> Result<[u8; 32]> {
    match input {
        Input::Hashing(hash) => Ok(hash.clone().finalize().into()),
        Input::HashingSha1(hash) => ecdsa_digest(&hash.clone().finalize()),
        Input::Collected(hash) => ecdsa_digest(hash),
    }
}

/// The 32 bytes the chip signs for a CKM_ECDSA input: its leftmost 256 bits, as an integer.
pub fn ecdsa_digest(hash: &[u8]) -> Result<[u8; 32]> {
    if hash.is_empty() || hash.len() > MAX_ECDSA_HASH {
        return Err(refuse(
            CKR_DATA_LEN_RANGE,
            format_args!(
                "CKM_ECDSA: a hash of {} bytes; 1 to {MAX_ECDSA_HASH} bytes are signed",
                hash.len()
            ),
        ));
    }
    let mut digest = [0u8; 32];
    let used = hash.len().min(32);
    digest[32 - used..].copy_from_slice(&hash[..used]);
    Ok(digest)
}

/// The chip's signature must verify with the key the operation was bound to.
fn check_signature(operation: &SignOperation, signature: &[u8; 64]) -> Result<()> {
    let ok = match (&operation.input, operation.curve) {
        (Input::Hashing(_) | Input::HashingSha1(_), _) => verify_p256(
            &operation.public,
            &host_digest(&operation.input)?,
            signature,
        ),
        (Input::Collected(hash), EcCurve::NistP256) => {
            verify_p256(&operation.public, &ecdsa_digest(hash)?, signature)
        }
        (Input::Collected(message), EcCurve::Ed25519) => {
            verify_ed25519(&operation.public, message, signature)
        }
    };
    if ok {
        return Ok(());
    }
    Err(refuse(
        CKR_FUNCTION_FAILED,
        format_args!(
            "the chip's signature with key {:#010x} does not verify with that key's public key \
             (chip fault, or the key was replaced): not returned",
            operation.key_id
        ),
    ))
}

fn verify_p256(public: &[u8], digest: &[u8; 32], signature: &[u8; 64]) -> bool {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let (Ok(key), Ok(signature)) = (
        p256::ecdsa::VerifyingKey::from_sec1_bytes(public),
        p256::ecdsa::Signature::from_slice(signature),
    ) else {
        return false;
    };
    key.verify_prehash(digest, &signature).is_ok()
}

fn verify_ed25519(public: &[u8], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(public) = <[u8; 32]>::try_from(public) else {
        return false;
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&public) else {
        return false;
    };
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_hashes_keep_their_leftmost_256_bits_as_an_integer() {
        let sha1 = [0xAB; 20];
        let d = ecdsa_digest(&sha1).unwrap();
        assert_eq!(&d[..12], &[0; 12]);
        assert_eq!(&d[12..], &sha1);
        let sha512: Vec<u8> = (0..64).collect();
        assert_eq!(ecdsa_digest(&sha512).unwrap().as_slice(), &sha512[..32]);
        assert_eq!(ecdsa_digest(&[]).unwrap_err().rv(), CKR_DATA_LEN_RANGE);
        assert_eq!(ecdsa_digest(&[0; 65]).unwrap_err().rv(), CKR_DATA_LEN_RANGE);
    }

    #[test]
    fn a_short_hash_signs_as_rustcrypto_signs_it() {
        // RustCrypto's prehash signing left-pads a short prehash the same way (bits2field).
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        let key = p256::ecdsa::SigningKey::from_slice(&[5; 32]).unwrap();
        let sha1 = [0x5A; 20];
        let signature: p256::ecdsa::Signature = key.sign_prehash(&sha1).unwrap();
        let public = key.verifying_key().to_encoded_point(false);
        assert!(verify_p256(
            public.as_bytes(),
            &ecdsa_digest(&sha1).unwrap(),
            &signature.to_bytes().into()
        ));
    }
}
