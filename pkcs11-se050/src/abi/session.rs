//! Session management (PKCS#11 5.6) and login.

#![allow(non_snake_case)]

use super::guard::{bad, bytes_in, guard, write_out};
use crate::token::{self, SLOT_ID};
use pkcs11_sys::*;
use zeroize::Zeroizing;

#[no_mangle]
pub unsafe extern "C" fn C_OpenSession(
    slotID: CK_SLOT_ID,
    flags: CK_FLAGS,
    _pApplication: CK_VOID_PTR,
    _Notify: CK_NOTIFY,
    phSession: CK_SESSION_HANDLE_PTR,
) -> CK_RV {
    guard("C_OpenSession", || {
        if phSession.is_null() {
            return Err(bad("C_OpenSession: phSession is NULL"));
        }
        // Notify callbacks are never called: this token has no surrender points.
        let handle = token::current()?.open_session(slotID, flags)?;
        // SAFETY: phSession checked non-NULL; the caller's CK_SESSION_HANDLE.
        unsafe { write_out(phSession, handle, "C_OpenSession: phSession is NULL") }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_CloseSession(hSession: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_CloseSession", || {
        token::current()?.close_session(hSession)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_CloseAllSessions(slotID: CK_SLOT_ID) -> CK_RV {
    guard("C_CloseAllSessions", || {
        token::current()?.close_all_sessions(slotID)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetSessionInfo(
    hSession: CK_SESSION_HANDLE,
    pInfo: CK_SESSION_INFO_PTR,
) -> CK_RV {
    guard("C_GetSessionInfo", || {
        let (state, flags) = token::current()?.session_info(hSession)?;
        let info = CK_SESSION_INFO {
            slotID: SLOT_ID,
            state,
            flags,
            ulDeviceError: 0,
        };
        // SAFETY: pInfo is NULL (refused) or the caller's CK_SESSION_INFO.
        unsafe { write_out(pInfo, info, "C_GetSessionInfo: pInfo is NULL") }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_Login(
    hSession: CK_SESSION_HANDLE,
    userType: CK_USER_TYPE,
    pPin: CK_UTF8CHAR_PTR,
    ulPinLen: CK_ULONG,
) -> CK_RV {
    guard("C_Login", || {
        if pPin.is_null() && ulPinLen != 0 {
            return Err(bad("C_Login: pPin is NULL with a non-zero length"));
        }
        // SAFETY: pPin is NULL only with length 0 (checked), else ulPinLen readable bytes.
        let pin = Zeroizing::new(unsafe { bytes_in(pPin, ulPinLen, "C_Login: pPin")? });
        token::current()?.login(hSession, userType, &pin)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_LoginUser(
    hSession: CK_SESSION_HANDLE,
    userType: CK_USER_TYPE,
    pPin: CK_UTF8CHAR_PTR,
    ulPinLen: CK_ULONG,
    _pUsername: CK_UTF8CHAR_PTR,
    _ulUsernameLen: CK_ULONG,
) -> CK_RV {
    // SAFETY: the same pointer contract as C_Login, passed through unchanged.
    unsafe { C_Login(hSession, userType, pPin, ulPinLen) }
}

#[no_mangle]
pub unsafe extern "C" fn C_Logout(hSession: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_Logout", || token::current()?.logout(hSession))
}

#[no_mangle]
pub unsafe extern "C" fn C_InitToken(
    slotID: CK_SLOT_ID,
    pPin: CK_UTF8CHAR_PTR,
    ulPinLen: CK_ULONG,
    pLabel: CK_UTF8CHAR_PTR,
) -> CK_RV {
    guard("C_InitToken", || {
        if pPin.is_null() || pLabel.is_null() {
            return Err(bad("C_InitToken: pPin or pLabel is NULL"));
        }
        // SAFETY: pPin non-NULL, ulPinLen readable bytes; pLabel is 32 bytes (PKCS#11 5.5).
        let pin = Zeroizing::new(unsafe { bytes_in(pPin, ulPinLen, "C_InitToken: pPin")? });
        // SAFETY: as above.
        let label = unsafe { bytes_in(pLabel, 32, "C_InitToken: pLabel")? };
        let label = crate::token::pin::label_from_padded(&label);
        token::current()?.init_token(slotID, &pin, &label)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_InitPIN(
    hSession: CK_SESSION_HANDLE,
    pPin: CK_UTF8CHAR_PTR,
    ulPinLen: CK_ULONG,
) -> CK_RV {
    guard("C_InitPIN", || {
        if pPin.is_null() {
            // No protected authentication path on this token: the PIN must be given.
            return Err(bad("C_InitPIN: pPin is NULL"));
        }
        // SAFETY: pPin non-NULL, ulPinLen readable bytes.
        let pin = Zeroizing::new(unsafe { bytes_in(pPin, ulPinLen, "C_InitPIN: pPin")? });
        token::current()?.init_pin(hSession, &pin)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SetPIN(
    hSession: CK_SESSION_HANDLE,
    pOldPin: CK_UTF8CHAR_PTR,
    ulOldLen: CK_ULONG,
    pNewPin: CK_UTF8CHAR_PTR,
    ulNewLen: CK_ULONG,
) -> CK_RV {
    guard("C_SetPIN", || {
        if pOldPin.is_null() || pNewPin.is_null() {
            return Err(bad("C_SetPIN: pOldPin or pNewPin is NULL"));
        }
        // SAFETY: both non-NULL, with their lengths readable.
        let old = Zeroizing::new(unsafe { bytes_in(pOldPin, ulOldLen, "C_SetPIN: pOldPin")? });
        // SAFETY: as above.
        let new = Zeroizing::new(unsafe { bytes_in(pNewPin, ulNewLen, "C_SetPIN: pNewPin")? });
        token::current()?.set_pin(hSession, &old, &new)
    })
}
