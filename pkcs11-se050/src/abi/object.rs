//! Object management (PKCS#11 5.7): attributes, search, destruction.

#![allow(non_snake_case)]

use super::guard::{bad, guard, template_in, write_out};
use crate::token::attributes::AttrValue;
use crate::token::{self, error::Error};
use pkcs11_sys::*;

/// C_CreateObject: X.509 certificates, stored on the chip (token/certificate.rs).
#[no_mangle]
pub unsafe extern "C" fn C_CreateObject(
    hSession: CK_SESSION_HANDLE,
    pTemplate: CK_ATTRIBUTE_PTR,
    ulCount: CK_ULONG,
    phObject: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    guard("C_CreateObject", || {
        let token = token::current()?;
        if phObject.is_null() {
            return Err(bad("C_CreateObject: phObject is NULL"));
        }
        // SAFETY: template_in checks NULL and bounds; the caller promises the count.
        let template = unsafe { template_in(pTemplate, ulCount) }?;
        let handle = token.create_object(hSession, &template)?;
        // SAFETY: checked non-NULL above.
        unsafe { write_out(phObject, handle, "phObject") }
    })
}

/// No object of this token is copyable (CKA_COPYABLE false): a valid object gets
/// CKR_ACTION_PROHIBITED, as PKCS#11 3.0 section 4.4 says.
#[no_mangle]
pub unsafe extern "C" fn C_CopyObject(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    _pTemplate: CK_ATTRIBUTE_PTR,
    _ulCount: CK_ULONG,
    phNewObject: CK_OBJECT_HANDLE_PTR,
) -> CK_RV {
    guard("C_CopyObject", || {
        if phNewObject.is_null() {
            return Err(bad("C_CopyObject: phNewObject is NULL"));
        }
        token::current()?.copy_object(hSession, hObject)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_DestroyObject(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_DestroyObject", || {
        token::current()?.destroy(hSession, hObject)
    })
}

/// Every entry is answered, as PKCS#11 5.7 requires: a value that fits is copied; a NULL
/// pValue gets the length; otherwise ulValueLen becomes CK_UNAVAILABLE_INFORMATION and the
/// call returns the problem (sensitive, invalid type, or buffer too small).
#[no_mangle]
pub unsafe extern "C" fn C_GetAttributeValue(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    pTemplate: CK_ATTRIBUTE_PTR,
    ulCount: CK_ULONG,
) -> CK_RV {
    guard("C_GetAttributeValue", || {
        let token = token::current()?;
        if pTemplate.is_null() && ulCount != 0 {
            return Err(bad("C_GetAttributeValue: pTemplate is NULL"));
        }
        if ulCount > 1024 {
            return Err(bad("C_GetAttributeValue: implausible ulCount"));
        }
        let template: &mut [CK_ATTRIBUTE] = if ulCount == 0 {
            &mut []
        } else {
            // SAFETY: non-NULL, and the caller promises ulCount writable entries.
            unsafe { std::slice::from_raw_parts_mut(pTemplate, ulCount as usize) }
        };
        let types: Vec<CK_ATTRIBUTE_TYPE> = template.iter().map(|a| a.type_).collect();
        let values = token.attributes(hSession, hObject, &types)?;
        let mut rv = CKR_OK;
        for (entry, value) in template.iter_mut().zip(values) {
            match &value {
                AttrValue::Value(_) | AttrValue::Secret(_) => {
                    // A secret's copy here wipes itself when dropped; the copy into pValue is
                    // the caller's to wipe.
                    let bytes = value.revealed().unwrap_or_default();
                    if entry.pValue.is_null() {
                        entry.ulValueLen = bytes.len() as CK_ULONG;
                    } else if entry.ulValueLen >= bytes.len() as CK_ULONG {
                        // SAFETY: the caller's buffer has ulValueLen >= len writable bytes.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                bytes.as_ptr(),
                                entry.pValue as *mut u8,
                                bytes.len(),
                            )
                        };
                        entry.ulValueLen = bytes.len() as CK_ULONG;
                    } else {
                        entry.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        rv = CKR_BUFFER_TOO_SMALL;
                    }
                }
                AttrValue::Sensitive => {
                    entry.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    rv = CKR_ATTRIBUTE_SENSITIVE;
                }
                AttrValue::Invalid => {
                    entry.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    rv = CKR_ATTRIBUTE_TYPE_INVALID;
                }
            }
        }
        match rv {
            CKR_OK => Ok(()),
            rv => Err(Error(rv)),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SetAttributeValue(
    hSession: CK_SESSION_HANDLE,
    hObject: CK_OBJECT_HANDLE,
    pTemplate: CK_ATTRIBUTE_PTR,
    ulCount: CK_ULONG,
) -> CK_RV {
    guard("C_SetAttributeValue", || {
        let token = token::current()?;
        // SAFETY: template_in checks NULL and bounds; the caller promises ulCount entries.
        let template = unsafe { template_in(pTemplate, ulCount) }?;
        token.set_attributes(hSession, hObject, &template)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsInit(
    hSession: CK_SESSION_HANDLE,
    pTemplate: CK_ATTRIBUTE_PTR,
    ulCount: CK_ULONG,
) -> CK_RV {
    guard("C_FindObjectsInit", || {
        let token = token::current()?;
        // SAFETY: template_in checks NULL and bounds; the caller promises ulCount entries.
        let template = unsafe { template_in(pTemplate, ulCount) }?;
        token.find_init(hSession, &template)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_FindObjects(
    hSession: CK_SESSION_HANDLE,
    phObject: CK_OBJECT_HANDLE_PTR,
    ulMaxObjectCount: CK_ULONG,
    pulObjectCount: CK_ULONG_PTR,
) -> CK_RV {
    guard("C_FindObjects", || {
        let token = token::current()?;
        if pulObjectCount.is_null() || (phObject.is_null() && ulMaxObjectCount != 0) {
            return Err(bad("C_FindObjects: NULL output pointer"));
        }
        let found = token.find_next(hSession, ulMaxObjectCount.min(1 << 20) as usize)?;
        for (i, handle) in found.iter().enumerate() {
            // SAFETY: the caller's array holds ulMaxObjectCount >= found.len() entries.
            unsafe { phObject.add(i).write_unaligned(*handle) };
        }
        // SAFETY: checked non-NULL above.
        unsafe { write_out(pulObjectCount, found.len() as CK_ULONG, "pulObjectCount") }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsFinal(hSession: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_FindObjectsFinal", || {
        token::current()?.find_final(hSession)
    })
}
