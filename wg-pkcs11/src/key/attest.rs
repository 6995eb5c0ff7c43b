//! The device side of attestation: the token's attestation of its key, through the vendor
//! mechanism `CKM_SE050_ATTEST` (pkcs11-se050's token/attest.rs; docs/fleet.md, "Attestation"): a
//! C_DeriveKey on the private key with the verifier's nonce as parameter, whose result's
//! CKA_VALUE is the chip's attested read and certificate chain. Any module that implements the
//! mechanism works, through p11-kit's proxy as well; a token without it answers
//! CKR_MECHANISM_INVALID, reported as "this token cannot attest".

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};

use super::token::{TokenError, TokenKey};
use crate::attestation::token_blob;
use crate::attestation::Evidence;
use crate::uri::Pkcs11Uri;

/// CKM_VENDOR_DEFINED (0x80000000) | 0x5E050A77, as pkcs11-se050 defines it (a u64 here on every
/// target: cryptoki takes it as a CK_ULONG, 32 bits on armhf, where it fits).
pub const CKM_SE050_ATTEST: u64 = 0x8000_0000 | 0x5E05_0A77;

/// The evidence for the key `uri` names, answering `nonce`.
pub fn attest(uri: &Pkcs11Uri, nonce: &[u8; 16]) -> Result<Evidence, TokenError> {
    let key = TokenKey::open(uri)?;
    let mechanism_type = MechanismType::new_vendor_defined(CKM_SE050_ATTEST as _)
        .map_err(|e| TokenError(format!("CKM_SE050_ATTEST: {e}")))?;
    let blob = key
        .with_session("attestation (CKM_SE050_ATTEST)", |session, private| {
            let mechanism =
                Mechanism::VendorDefined(VendorDefinedMechanism::new(mechanism_type, Some(nonce)));
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
            ];
            let object = session.derive_key(&mechanism, private, &template)?;
            let value = session.get_attributes(object, &[AttributeType::Value]);
            let _ = session.destroy_object(object);
            match value?.pop() {
                Some(Attribute::Value(bytes)) => Ok(bytes),
                _ => Err(CkError::InvalidValue),
            }
        })
        .map_err(|e| {
            if e.0.contains("MechanismInvalid") {
                TokenError(format!(
                    "{}: this token cannot attest its keys (no CKM_SE050_ATTEST): a software \
                     key or another token's key cannot prove where it lives",
                    key.description()
                ))
            } else {
                e
            }
        })?;
    let parsed = token_blob::parse(&blob).map_err(|e| TokenError(e.to_string()))?;
    Ok(Evidence {
        wireguard_public_key: crate::key::StaticKey::public_key(&key),
        layout: parsed.layout,
        command: parsed.command,
        response: parsed.response,
        certificates: parsed.certificates,
    })
}
