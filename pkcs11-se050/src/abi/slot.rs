//! Slot and token management (PKCS#11 5.5).

#![allow(non_snake_case)]

use super::guard::{bad, guard, padded, ulong_list_out, version, write_out};
use crate::token::{self, SLOT_ID};
use pkcs11_sys::*;

#[no_mangle]
pub unsafe extern "C" fn C_GetSlotList(
    _tokenPresent: CK_BBOOL,
    pSlotList: CK_SLOT_ID_PTR,
    pulCount: CK_ULONG_PTR,
) -> CK_RV {
    guard("C_GetSlotList", || {
        token::current()?;
        // The one slot always holds its token.
        // SAFETY: pulCount is checked for NULL inside; pSlotList NULL or sized *pulCount.
        unsafe { ulong_list_out(pSlotList, pulCount, &[SLOT_ID]) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetSlotInfo(slotID: CK_SLOT_ID, pInfo: CK_SLOT_INFO_PTR) -> CK_RV {
    guard("C_GetSlotInfo", || {
        let info = token::current()?.slot_info(slotID)?;
        let out = CK_SLOT_INFO {
            slotDescription: padded(&info.description),
            manufacturerID: padded(&info.manufacturer),
            flags: info.flags,
            hardwareVersion: version(info.hardware_version),
            firmwareVersion: version(info.firmware_version),
        };
        // SAFETY: pInfo is NULL (refused) or the caller's CK_SLOT_INFO.
        unsafe { write_out(pInfo, out, "C_GetSlotInfo: pInfo is NULL") }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetTokenInfo(slotID: CK_SLOT_ID, pInfo: CK_TOKEN_INFO_PTR) -> CK_RV {
    guard("C_GetTokenInfo", || {
        let info = token::current()?.token_info(slotID)?;
        let out = CK_TOKEN_INFO {
            label: padded(&info.label),
            manufacturerID: padded(&info.manufacturer),
            model: padded(&info.model),
            serialNumber: padded(&info.serial),
            flags: info.flags,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: info.session_count as CK_ULONG,
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: info.rw_session_count as CK_ULONG,
            // A PIN is a UserID value on the chip: 4 to 16 bytes.
            ulMaxPinLen: crate::token::pin::MAX_PIN_LEN as CK_ULONG,
            ulMinPinLen: crate::token::pin::MIN_PIN_LEN as CK_ULONG,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: version(info.hardware_version),
            firmwareVersion: version(info.firmware_version),
            utcTime: [b' '; 16],
        };
        // SAFETY: pInfo is NULL (refused) or the caller's CK_TOKEN_INFO.
        unsafe { write_out(pInfo, out, "C_GetTokenInfo: pInfo is NULL") }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismList(
    slotID: CK_SLOT_ID,
    pMechanismList: CK_MECHANISM_TYPE_PTR,
    pulCount: CK_ULONG_PTR,
) -> CK_RV {
    guard("C_GetMechanismList", || {
        token::current()?.check_slot(slotID)?;
        let list: Vec<CK_MECHANISM_TYPE> = token::MECHANISMS.iter().map(|(m, _)| *m).collect();
        // SAFETY: pulCount is checked for NULL inside; the list NULL or sized *pulCount.
        unsafe { ulong_list_out(pMechanismList, pulCount, &list) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slotID: CK_SLOT_ID,
    type_: CK_MECHANISM_TYPE,
    pInfo: CK_MECHANISM_INFO_PTR,
) -> CK_RV {
    guard("C_GetMechanismInfo", || {
        if pInfo.is_null() {
            return Err(bad("C_GetMechanismInfo: pInfo is NULL"));
        }
        let info = token::current()?.mechanism_info(slotID, type_)?;
        let out = CK_MECHANISM_INFO {
            ulMinKeySize: info.min_key_size,
            ulMaxKeySize: info.max_key_size,
            flags: info.flags,
        };
        // SAFETY: pInfo checked non-NULL; the caller's CK_MECHANISM_INFO.
        unsafe { write_out(pInfo, out, "C_GetMechanismInfo: pInfo is NULL") }
    })
}
