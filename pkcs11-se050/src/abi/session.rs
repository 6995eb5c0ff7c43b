//! Session management (PKCS#11 5.6) and login.

#![allow(non_snake_case)]

use super::guard::{bad, guard, write_out};
use crate::token::{self, SLOT_ID};
use pkcs11_sys::*;

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
        // The PIN is not checked: the token has no PIN yet (see README).
        token::current()?.login(hSession, userType)
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
