//! Signing (PKCS#11 5.11): C_SignInit, C_Sign, C_SignUpdate, C_SignFinal (token/sign.rs).

#![allow(non_snake_case)]

use super::guard::{bad, bytes_in, guard, write_out};
use crate::token::{self, error::Error};
use pkcs11_sys::*;

#[no_mangle]
pub unsafe extern "C" fn C_SignInit(
    hSession: CK_SESSION_HANDLE,
    pMechanism: CK_MECHANISM_PTR,
    hKey: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_SignInit", || {
        let token = token::current()?;
        if pMechanism.is_null() {
            return Err(bad("C_SignInit: NULL mechanism"));
        }
        // SAFETY: checked non-NULL; the caller's CK_MECHANISM.
        let mechanism = unsafe { pMechanism.read_unaligned() };
        // SAFETY: the parameter block is the caller's, checked inside.
        unsafe { check_parameter(&mechanism) }?;
        token.sign_init(hSession, mechanism.mechanism, hKey)
    })
}

/// ECDSA takes no parameter; EdDSA an optional CK_EDDSA_PARAMS that must ask for plain
/// Ed25519 (no prehash, no context): the chip has nothing else.
///
/// # Safety
/// `mechanism.pParameter` must be NULL or valid for `ulParameterLen` bytes.
unsafe fn check_parameter(mechanism: &CK_MECHANISM) -> Result<(), Error> {
    if mechanism.pParameter.is_null() || mechanism.ulParameterLen == 0 {
        return Ok(());
    }
    if mechanism.mechanism == CKM_EDDSA
        && mechanism.ulParameterLen as usize == std::mem::size_of::<CK_EDDSA_PARAMS>()
    {
        // SAFETY: non-NULL and exactly the struct's size.
        let params = unsafe { (mechanism.pParameter as *const CK_EDDSA_PARAMS).read_unaligned() };
        if params.phFlag == CK_FALSE && params.ulContextDataLen == 0 {
            return Ok(());
        }
        log::error!(
            "CKM_EDDSA with Ed25519ph or a context: the chip signs plain Ed25519 (RFC 8032 \
             PureEdDSA) only"
        );
        return Err(Error(CKR_MECHANISM_PARAM_INVALID));
    }
    log::error!(
        "mechanism {:#x} takes no parameter here; got {} bytes",
        mechanism.mechanism,
        mechanism.ulParameterLen
    );
    Err(Error(CKR_MECHANISM_PARAM_INVALID))
}

/// The PKCS#11 output convention (5.2): NULL asks for the length; a short buffer gets
/// CKR_BUFFER_TOO_SMALL and the length; both leave the operation active.
///
/// # Safety
/// `out` NULL or writable for `*out_len` bytes; `out_len` NULL or writable.
unsafe fn signature_out(
    token: &token::Token,
    session: CK_SESSION_HANDLE,
    out: CK_BYTE_PTR,
    out_len: CK_ULONG_PTR,
    sign: impl FnOnce() -> Result<Vec<u8>, Error>,
) -> Result<(), Error> {
    if out_len.is_null() {
        return Err(bad("pulSignatureLen is NULL"));
    }
    let needed = token.sign_len(session)?;
    if out.is_null() {
        // SAFETY: checked non-NULL.
        return unsafe { write_out(out_len, needed as CK_ULONG, "pulSignatureLen") };
    }
    // SAFETY: checked non-NULL; the caller's length.
    let room = unsafe { out_len.read_unaligned() } as usize;
    if room < needed {
        // SAFETY: checked non-NULL.
        unsafe { write_out(out_len, needed as CK_ULONG, "pulSignatureLen") }?;
        return Err(Error(CKR_BUFFER_TOO_SMALL));
    }
    let signature = sign()?;
    // SAFETY: `out` is non-NULL and holds at least `room` >= signature.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(signature.as_ptr(), out, signature.len()) };
    // SAFETY: checked non-NULL.
    unsafe { write_out(out_len, signature.len() as CK_ULONG, "pulSignatureLen") }
}

#[no_mangle]
pub unsafe extern "C" fn C_Sign(
    hSession: CK_SESSION_HANDLE,
    pData: CK_BYTE_PTR,
    ulDataLen: CK_ULONG,
    pSignature: CK_BYTE_PTR,
    pulSignatureLen: CK_ULONG_PTR,
) -> CK_RV {
    guard("C_Sign", || {
        let token = token::current()?;
        // SAFETY: the caller promises ulDataLen readable bytes.
        let data = unsafe { bytes_in(pData, ulDataLen, "C_Sign: pData is NULL") }?;
        // SAFETY: the caller's output buffer and length, per PKCS#11.
        unsafe {
            signature_out(&token, hSession, pSignature, pulSignatureLen, || {
                token.sign(hSession, &data)
            })
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SignUpdate(
    hSession: CK_SESSION_HANDLE,
    pPart: CK_BYTE_PTR,
    ulPartLen: CK_ULONG,
) -> CK_RV {
    guard("C_SignUpdate", || {
        let token = token::current()?;
        // SAFETY: the caller promises ulPartLen readable bytes.
        let part = unsafe { bytes_in(pPart, ulPartLen, "C_SignUpdate: pPart is NULL") }?;
        token.sign_update(hSession, &part)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SignFinal(
    hSession: CK_SESSION_HANDLE,
    pSignature: CK_BYTE_PTR,
    pulSignatureLen: CK_ULONG_PTR,
) -> CK_RV {
    guard("C_SignFinal", || {
        let token = token::current()?;
        // SAFETY: the caller's output buffer and length, per PKCS#11.
        unsafe {
            signature_out(&token, hSession, pSignature, pulSignatureLen, || {
                token.sign_final(hSession)
            })
        }
    })
}
