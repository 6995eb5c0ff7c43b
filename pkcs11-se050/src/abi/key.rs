//! Key management (PKCS#11 5.14): key pair generation and derivation.

#![allow(non_snake_case)]

use super::guard::{bad, bytes_in, guard, template_in, write_out};
use crate::token::{self, error::Error, DeriveParams};
use pkcs11_sys::*;

#[no_mangle]
pub unsafe extern "C" fn C_GenerateKeyPair(
    hSession: CK_SESSION_HANDLE,
    pMechanism: CK_MECHANISM_PTR,
    pPublicKeyTemplate: CK_ATTRIBUTE_PTR,
    ulPublicKeyAttributeCount: CK_ULONG,
    pPrivateKeyTemplate: CK_ATTRIBUTE_PTR,
    ulPrivateKeyAttributeCount: CK_ULONG,
    phPublicKey: CK_OBJECT_HANDLE_PTR,
    phPrivateKey: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    guard("C_GenerateKeyPair", || {
        let token = token::current()?;
        if pMechanism.is_null() || phPublicKey.is_null() || phPrivateKey.is_null() {
            return Err(bad("C_GenerateKeyPair: NULL mechanism or output pointer"));
        }
        // SAFETY: checked non-NULL; the caller's CK_MECHANISM.
        let mechanism = unsafe { pMechanism.read_unaligned() };
        // SAFETY: template_in checks NULL and bounds; the caller promises the counts.
        let public = unsafe { template_in(pPublicKeyTemplate, ulPublicKeyAttributeCount) }?;
        // SAFETY: as above.
        let private = unsafe { template_in(pPrivateKeyTemplate, ulPrivateKeyAttributeCount) }?;
        let (pub_handle, priv_handle) =
            token.generate_key_pair(hSession, mechanism.mechanism, &public, &private)?;
        // SAFETY: both checked non-NULL above.
        unsafe {
            write_out(phPublicKey, pub_handle, "phPublicKey")?;
            write_out(phPrivateKey, priv_handle, "phPrivateKey")
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_DeriveKey(
    hSession: CK_SESSION_HANDLE,
    pMechanism: CK_MECHANISM_PTR,
    hBaseKey: CK_OBJECT_HANDLE,
    pTemplate: CK_ATTRIBUTE_PTR,
    ulAttributeCount: CK_ULONG,
    phKey: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    guard("C_DeriveKey", || {
        let token = token::current()?;
        if pMechanism.is_null() || phKey.is_null() {
            return Err(bad("C_DeriveKey: NULL mechanism or phKey"));
        }
        // SAFETY: checked non-NULL; the caller's CK_MECHANISM.
        let mechanism = unsafe { pMechanism.read_unaligned() };
        let params = if mechanism.mechanism == CKM_ECDH1_DERIVE {
            // SAFETY: the mechanism's parameter block is the caller's, checked inside.
            Some(unsafe { ecdh_params(&mechanism) }?)
        } else if mechanism.mechanism == crate::token::CKM_SE050_ATTEST {
            // The vendor attestation mechanism's parameter is the nonce (token/attest.rs),
            // carried in `public_data`.
            // SAFETY: the caller promises pParameter covers ulParameterLen bytes.
            let nonce = unsafe {
                bytes_in(
                    mechanism.pParameter as CK_BYTE_PTR,
                    mechanism.ulParameterLen,
                    "CKM_SE050_ATTEST needs the nonce as its parameter",
                )
            }
            .map_err(|_| Error(CKR_MECHANISM_PARAM_INVALID))?;
            Some(DeriveParams {
                kdf: CKD_NULL,
                shared_data: Vec::new(),
                public_data: nonce,
            })
        } else {
            None
        };
        // SAFETY: template_in checks NULL and bounds; the caller promises the count.
        let template = unsafe { template_in(pTemplate, ulAttributeCount) }?;
        let handle = token.derive(
            hSession,
            mechanism.mechanism,
            params.as_ref(),
            hBaseKey,
            &template,
        )?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(phKey, handle, "phKey") }
    })
}

/// Copies a CK_ECDH1_DERIVE_PARAMS out of the caller's memory, checking its size and pointers.
///
/// # Safety
/// `mechanism.pParameter` must be NULL or valid for `ulParameterLen` bytes, and the data
/// pointers inside valid for their lengths.
unsafe fn ecdh_params(mechanism: &CK_MECHANISM) -> Result<DeriveParams, Error> {
    if mechanism.pParameter.is_null()
        || mechanism.ulParameterLen as usize != std::mem::size_of::<CK_ECDH1_DERIVE_PARAMS>()
    {
        log::error!(
            "CKM_ECDH1_DERIVE needs a CK_ECDH1_DERIVE_PARAMS ({} bytes), got {} bytes",
            std::mem::size_of::<CK_ECDH1_DERIVE_PARAMS>(),
            mechanism.ulParameterLen
        );
        return Err(Error(CKR_MECHANISM_PARAM_INVALID));
    }
    // SAFETY: non-NULL and exactly the struct's size, per the checks above.
    let raw = unsafe { (mechanism.pParameter as *const CK_ECDH1_DERIVE_PARAMS).read_unaligned() };
    // SAFETY: the caller promises the data pointers cover their lengths.
    let public_data =
        unsafe { bytes_in(raw.pPublicData, raw.ulPublicDataLen, "pPublicData is NULL") }
            .map_err(|_| Error(CKR_MECHANISM_PARAM_INVALID))?;
    // SAFETY: as above.
    let shared_data =
        unsafe { bytes_in(raw.pSharedData, raw.ulSharedDataLen, "pSharedData is NULL") }
            .map_err(|_| Error(CKR_MECHANISM_PARAM_INVALID))?;
    Ok(DeriveParams {
        kdf: raw.kdf,
        shared_data,
        public_data,
    })
}
