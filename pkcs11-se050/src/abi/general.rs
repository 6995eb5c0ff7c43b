//! General-purpose functions (PKCS#11 5.4): C_Initialize, C_Finalize, C_GetInfo.

#![allow(non_snake_case)]

use super::guard::{bad, guard, padded, version, write_out};
use crate::token::{self, error::Error};
use pkcs11_sys::*;

#[no_mangle]
pub unsafe extern "C" fn C_Initialize(pInitArgs: CK_VOID_PTR) -> CK_RV {
    guard("C_Initialize", || {
        if !pInitArgs.is_null() {
            // SAFETY: non-NULL pInitArgs points to a CK_C_INITIALIZE_ARGS (PKCS#11 5.4).
            let args = unsafe { (pInitArgs as *const CK_C_INITIALIZE_ARGS).read_unaligned() };
            check_init_args(&args)?;
        }
        token::initialize()
    })
}

/// The rules of PKCS#11 5.4 for C_Initialize's argument.
fn check_init_args(args: &CK_C_INITIALIZE_ARGS) -> Result<(), Error> {
    if !args.pReserved.is_null() {
        return Err(bad("CK_C_INITIALIZE_ARGS.pReserved must be NULL"));
    }
    let given = [
        args.CreateMutex.is_some(),
        args.DestroyMutex.is_some(),
        args.LockMutex.is_some(),
        args.UnlockMutex.is_some(),
    ];
    let all = given.iter().all(|g| *g);
    if given.iter().any(|g| *g) && !all {
        return Err(bad("mutex callbacks must be given all four or none"));
    }
    // We lock with the OS's primitives. With callbacks but without CKF_OS_LOCKING_OK the
    // caller insists on its own mutexes, which this module does not use.
    if all && args.flags & CKF_OS_LOCKING_OK == 0 {
        log::error!("C_Initialize: the application requires its own mutex callbacks; this module only uses OS locking");
        return Err(Error(CKR_CANT_LOCK));
    }
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn C_Finalize(pReserved: CK_VOID_PTR) -> CK_RV {
    guard("C_Finalize", || {
        if !pReserved.is_null() {
            return Err(bad("C_Finalize: pReserved must be NULL"));
        }
        token::finalize()
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetInfo(pInfo: CK_INFO_PTR) -> CK_RV {
    guard("C_GetInfo", || {
        token::current()?;
        let info = CK_INFO {
            cryptokiVersion: version(token::info::CRYPTOKI_VERSION),
            manufacturerID: padded(token::info::LIBRARY_MANUFACTURER),
            flags: 0,
            libraryDescription: padded(token::info::LIBRARY_DESCRIPTION),
            libraryVersion: version(token::info::library_version()),
        };
        // SAFETY: pInfo is NULL (refused) or the caller's CK_INFO.
        unsafe { write_out(pInfo, info, "C_GetInfo: pInfo is NULL") }
    })
}
