//! Random number generation (PKCS#11 5.15): from the chip's generator.

#![allow(non_snake_case)]

use super::guard::{bad, guard};
use crate::token::{self, error::Error};
use pkcs11_sys::*;

#[no_mangle]
pub unsafe extern "C" fn C_SeedRandom(
    hSession: CK_SESSION_HANDLE,
    _pSeed: CK_BYTE_PTR,
    _ulSeedLen: CK_ULONG,
) -> CK_RV {
    guard("C_SeedRandom", || {
        token::current()?.session_info(hSession)?;
        // The chip's generator takes no seed from the host.
        Err(Error(CKR_RANDOM_SEED_NOT_SUPPORTED))
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GenerateRandom(
    hSession: CK_SESSION_HANDLE,
    RandomData: CK_BYTE_PTR,
    ulRandomLen: CK_ULONG,
) -> CK_RV {
    guard("C_GenerateRandom", || {
        let token = token::current()?;
        if ulRandomLen == 0 {
            return token.session_info(hSession).map(|_| ());
        }
        if RandomData.is_null() {
            return Err(bad("C_GenerateRandom: RandomData is NULL"));
        }
        if ulRandomLen > 1 << 20 {
            return Err(bad("C_GenerateRandom: more than 1 MiB at once"));
        }
        // SAFETY: non-NULL, and the caller promises ulRandomLen writable bytes.
        let out = unsafe { std::slice::from_raw_parts_mut(RandomData, ulRandomLen as usize) };
        token.generate_random(hSession, out)
    })
}
