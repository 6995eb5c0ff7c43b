//! The vendor extension for attestation: C_DeriveKey with `CKM_SE050_ATTEST` on one of the
//! token's X25519 private keys, the mechanism parameter the verifier's 16-byte nonce. The
//! result is a session object (CKO_SECRET_KEY, CKK_GENERIC_SECRET, not sensitive, extractable:
//! the attestation is public) whose CKA_VALUE is the chip's attestation of that key:
//!
//! ```text
//! "SE050ATT" | version 01 | applet major (1) | u32 len, command APDU | u32 len, response APDU
//!            | count (1) | count x (u32 len, certificate DER)      (lengths big-endian)
//! ```
//! the attested ReadObject exactly as sent and answered (applet/attest.rs), and the attestation
//! key's certificate chain as read from the chip. `wg-pkcs11 attest` reads it through any
//! PKCS#11 stack (p11-kit's proxy included) and writes the evidence file; the verifier needs
//! no module. Why C_DeriveKey: PKCS#11 3.x has no attestation call; a derive with a vendor
//! mechanism passes a parameter in and an object out through every proxy, and needs no new
//! object class in clients.

use super::attributes::{Template, KEY_TEMPLATE_COMMON};
use super::error::{answer, refuse, Result};
use super::handles::{split_handle, Half};
use super::secret::SecretKey;
use super::Token;
use pkcs11_sys::*;
use zeroize::Zeroizing;

/// CKM_VENDOR_DEFINED | 0x5E050A77 would overflow 32 bits: the vendor range's 0x5E05_0A77.
pub const CKM_SE050_ATTEST: CK_MECHANISM_TYPE = CKM_VENDOR_DEFINED | 0x5E05_0A77;
pub const BLOB_MAGIC: &[u8; 8] = b"SE050ATT";
pub const BLOB_VERSION: u8 = 1;
pub const NONCE_LEN: usize = 16;

/// The blob in CKA_VALUE.
pub fn encode_blob(
    read: &crate::applet::attest::AttestedRead,
    certificates: &[Vec<u8>],
) -> Vec<u8> {
    let mut out = BLOB_MAGIC.to_vec();
    out.push(BLOB_VERSION);
    out.push(read.applet_major);
    for part in [&read.command, &read.response] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part);
    }
    out.push(certificates.len() as u8);
    for cert in certificates {
        out.extend_from_slice(&(cert.len() as u32).to_be_bytes());
        out.extend_from_slice(cert);
    }
    out
}

/// The policy of a key pair made while no user PIN exists: anyone may use it for key
/// agreement, read its public key and delete it; nobody may export, wrap or overwrite it.
pub fn unprotected_key_policy() -> [super::chip::PolicyEntry; 1] {
    use crate::applet::protocol::{POLICY_ALLOW_DELETE, POLICY_ALLOW_KA, POLICY_ALLOW_READ};
    [super::chip::PolicyEntry {
        auth_object: 0,
        access: POLICY_ALLOW_KA | POLICY_ALLOW_READ | POLICY_ALLOW_DELETE,
    }]
}

impl Token {
    pub fn derive_attestation(
        &self,
        session: CK_SESSION_HANDLE,
        nonce: &[u8],
        base: CK_OBJECT_HANDLE,
        template: &Template,
    ) -> Result<CK_OBJECT_HANDLE> {
        self.check_session(session, false)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| {
            refuse(
                CKR_MECHANISM_PARAM_INVALID,
                format_args!(
                    "CKM_SE050_ATTEST's parameter is the 16-byte nonce, got {} bytes",
                    nonce.len()
                ),
            )
        })?;
        template.only(&[KEY_TEMPLATE_COMMON], "attestation object")?;
        template.expect_ulong(CKA_CLASS, CKO_SECRET_KEY, "attestation object")?;
        template.expect_ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET, "attestation object")?;
        template.expect_bool(CKA_TOKEN, false, "the attestation is a session object")?;
        self.require_user_for_keys()?;
        if split_handle(base).is_none() {
            return Err(answer(
                CKR_KEY_HANDLE_INVALID,
                format_args!("no key {base:#x}"),
            ));
        }
        let key_id = match self.loaded_cache()?.resolve(base) {
            Some((pair, Half::Private)) => pair.key_id,
            Some((_, Half::Public)) => {
                return Err(refuse(
                    CKR_KEY_TYPE_INCONSISTENT,
                    "attest the private key (the chip attests the key pair it holds)",
                ))
            }
            None => {
                return Err(answer(
                    CKR_KEY_HANDLE_INVALID,
                    format_args!("no key {base:#x}"),
                ))
            }
        };
        let (read, certificates) = {
            let mut link = self.link.lock();
            let chip = link
                .chip(&self.config)
                .map_err(|e| e.to_ckr("opening the chip"))?;
            chip.attest(key_id, &nonce).map_err(|e| {
                e.to_ckr(&format!(
                    "attested read of key {key_id:#010x} (a key made without the policy that \
                     allows attestation is not attestable: regenerate it)"
                ))
            })?
        };
        let sessions = self.sessions.lock();
        let handle = self.secrets.lock().insert(SecretKey {
            session,
            value: Zeroizing::new(encode_blob(&read, &certificates)),
            private: false,
            label: template.get(CKA_LABEL).unwrap_or_default().to_vec(),
            id: template.get(CKA_ID).unwrap_or_default().to_vec(),
            sensitive: false,
            extractable: true,
            usage: Vec::new(),
        });
        drop(sessions);
        Ok(handle)
    }
}
