//! The C ABI: the entry points a PKCS#11 host finds with dlsym, grouped as the spec groups
//! them (general, slot and token, session, object, key, random; the rest unsupported).
//!
//! Each entry point checks its raw arguments, copies them into safe values, calls the token
//! layer, and copies results back; `guard` turns a panic into CKR_GENERAL_ERROR. This module
//! and its children are the only place with `unsafe`.
//!
//! Both interfaces are offered: "PKCS 11" 3.0 (C_GetInterface, what cryptoki and OpenSC try
//! first) and 2.40 (C_GetFunctionList).

#![allow(non_snake_case)]
// The entry points are `unsafe extern "C"`: their callers promise what the PKCS#11 spec says
// about each pointer. Inside them every unsafe operation still needs its own block and reason.
#![deny(unsafe_op_in_unsafe_fn)]
// Their `# Safety` contract is the PKCS#11 specification's, for every function alike.
#![allow(clippy::missing_safety_doc)]

mod general;
mod guard;
mod key;
mod object;
mod random;
mod session;
mod sign;
mod slot;
mod unsupported;

pub use general::*;
pub use key::*;
pub use object::*;
pub use random::*;
pub use session::*;
pub use sign::*;
pub use slot::*;
pub use unsupported::*;

use guard::{bad, guard};
use pkcs11_sys::{
    CKR_BUFFER_TOO_SMALL, CK_CHAR, CK_FLAGS, CK_FUNCTION_LIST, CK_FUNCTION_LIST_3_0,
    CK_FUNCTION_LIST_PTR, CK_FUNCTION_LIST_PTR_PTR, CK_INTERFACE, CK_INTERFACE_PTR,
    CK_INTERFACE_PTR_PTR, CK_RV, CK_ULONG, CK_ULONG_PTR, CK_UTF8CHAR_PTR, CK_VERSION,
    CK_VERSION_PTR, CK_VOID_PTR,
};

/// The two function lists: PKCS#11 3.0 extends the 2.40 list, in the same order, with the 3.0
/// functions, so each 2.40 entry is named once here.
macro_rules! function_lists {
    ([$($v2:ident),* $(,)?], [$($v3:ident),* $(,)?]) => {
        static FUNCTIONS_2_40: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
            version: CK_VERSION { major: 2, minor: 40 },
            $($v2: Some($v2),)*
        };
        static FUNCTIONS_3_0: CK_FUNCTION_LIST_3_0 = CK_FUNCTION_LIST_3_0 {
            version: CK_VERSION { major: 3, minor: 0 },
            $($v2: Some($v2),)*
            $($v3: Some($v3),)*
        };
    };
}

function_lists!(
    [
        C_Initialize,
        C_Finalize,
        C_GetInfo,
        C_GetFunctionList,
        C_GetSlotList,
        C_GetSlotInfo,
        C_GetTokenInfo,
        C_GetMechanismList,
        C_GetMechanismInfo,
        C_InitToken,
        C_InitPIN,
        C_SetPIN,
        C_OpenSession,
        C_CloseSession,
        C_CloseAllSessions,
        C_GetSessionInfo,
        C_GetOperationState,
        C_SetOperationState,
        C_Login,
        C_Logout,
        C_CreateObject,
        C_CopyObject,
        C_DestroyObject,
        C_GetObjectSize,
        C_GetAttributeValue,
        C_SetAttributeValue,
        C_FindObjectsInit,
        C_FindObjects,
        C_FindObjectsFinal,
        C_EncryptInit,
        C_Encrypt,
        C_EncryptUpdate,
        C_EncryptFinal,
        C_DecryptInit,
        C_Decrypt,
        C_DecryptUpdate,
        C_DecryptFinal,
        C_DigestInit,
        C_Digest,
        C_DigestUpdate,
        C_DigestKey,
        C_DigestFinal,
        C_SignInit,
        C_Sign,
        C_SignUpdate,
        C_SignFinal,
        C_SignRecoverInit,
        C_SignRecover,
        C_VerifyInit,
        C_Verify,
        C_VerifyUpdate,
        C_VerifyFinal,
        C_VerifyRecoverInit,
        C_VerifyRecover,
        C_DigestEncryptUpdate,
        C_DecryptDigestUpdate,
        C_SignEncryptUpdate,
        C_DecryptVerifyUpdate,
        C_GenerateKey,
        C_GenerateKeyPair,
        C_WrapKey,
        C_UnwrapKey,
        C_DeriveKey,
        C_SeedRandom,
        C_GenerateRandom,
        C_GetFunctionStatus,
        C_CancelFunction,
        C_WaitForSlotEvent,
    ],
    [
        C_GetInterfaceList,
        C_GetInterface,
        C_LoginUser,
        C_SessionCancel,
        C_MessageEncryptInit,
        C_EncryptMessage,
        C_EncryptMessageBegin,
        C_EncryptMessageNext,
        C_MessageEncryptFinal,
        C_MessageDecryptInit,
        C_DecryptMessage,
        C_DecryptMessageBegin,
        C_DecryptMessageNext,
        C_MessageDecryptFinal,
        C_MessageSignInit,
        C_SignMessage,
        C_SignMessageBegin,
        C_SignMessageNext,
        C_MessageSignFinal,
        C_MessageVerifyInit,
        C_VerifyMessage,
        C_VerifyMessageBegin,
        C_VerifyMessageNext,
        C_MessageVerifyFinal,
    ]
);

/// The interface name, NUL-terminated, as the spec spells it.
static INTERFACE_NAME: &[u8; 8] = b"PKCS 11\0";

/// A CK_INTERFACE in a static. It lives in writable memory (UnsafeCell) because callers are
/// handed a pointer to it and some write through it: OpenSC's pkcs11-spy stores its own function
/// list into the interface it is given. In read-only memory that write is a SIGSEGV.
struct Interface(std::cell::UnsafeCell<CK_INTERFACE>);
// SAFETY: this module never writes through the cell; it only reads the pointers, which point to
// immutable statics. A caller that writes (pkcs11-spy, once, while initialising) does so under its
// own synchronisation, as the spec leaves the returned structure to the caller.
unsafe impl Sync for Interface {}

impl Interface {
    const fn new(function_list: CK_VOID_PTR) -> Self {
        Interface(std::cell::UnsafeCell::new(CK_INTERFACE {
            pInterfaceName: INTERFACE_NAME.as_ptr() as *mut CK_CHAR,
            pFunctionList: function_list,
            flags: 0,
        }))
    }

    fn get(&self) -> CK_INTERFACE {
        // SAFETY: a plain read of a Copy struct; see the Sync impl for writers.
        unsafe { self.0.get().read() }
    }
}

static INTERFACES: [Interface; 2] = [
    Interface::new(&FUNCTIONS_3_0 as *const CK_FUNCTION_LIST_3_0 as CK_VOID_PTR),
    Interface::new(&FUNCTIONS_2_40 as *const CK_FUNCTION_LIST as CK_VOID_PTR),
];

fn interface_version(interface: &Interface) -> CK_VERSION {
    // SAFETY: every pFunctionList in INTERFACES points to a function list starting with its
    // CK_VERSION (both list types begin with that field).
    unsafe { (interface.get().pFunctionList as *const CK_VERSION).read() }
}

#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(ppFunctionList: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    guard("C_GetFunctionList", || {
        if ppFunctionList.is_null() {
            return Err(bad("C_GetFunctionList: ppFunctionList is NULL"));
        }
        // SAFETY: checked non-NULL; the list is a static the caller only reads.
        unsafe {
            *ppFunctionList = &FUNCTIONS_2_40 as *const CK_FUNCTION_LIST as CK_FUNCTION_LIST_PTR
        };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetInterfaceList(
    pInterfacesList: CK_INTERFACE_PTR,
    pulCount: CK_ULONG_PTR,
) -> CK_RV {
    guard("C_GetInterfaceList", || {
        if pulCount.is_null() {
            return Err(bad("C_GetInterfaceList: pulCount is NULL"));
        }
        let n = INTERFACES.len() as CK_ULONG;
        // SAFETY: pulCount checked non-NULL; the caller's CK_ULONG.
        let room = unsafe { pulCount.read_unaligned() };
        // SAFETY: as above.
        unsafe { pulCount.write_unaligned(n) };
        if pInterfacesList.is_null() {
            return Ok(());
        }
        if room < n {
            return Err(crate::token::error::Error(CKR_BUFFER_TOO_SMALL));
        }
        for (i, interface) in INTERFACES.iter().enumerate() {
            // SAFETY: the caller's array has room >= n entries.
            unsafe { pInterfacesList.add(i).write_unaligned(interface.get()) };
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetInterface(
    pInterfaceName: CK_UTF8CHAR_PTR,
    pVersion: CK_VERSION_PTR,
    ppInterface: CK_INTERFACE_PTR_PTR,
    flags: CK_FLAGS,
) -> CK_RV {
    guard("C_GetInterface", || {
        if ppInterface.is_null() {
            return Err(bad("C_GetInterface: ppInterface is NULL"));
        }
        if !pInterfaceName.is_null() {
            // SAFETY: a non-NULL name is a NUL-terminated string (PKCS#11 5.4).
            let name =
                unsafe { std::ffi::CStr::from_ptr(pInterfaceName as *const std::ffi::c_char) };
            if name.to_bytes() != &INTERFACE_NAME[..7] {
                return Err(bad("C_GetInterface: unknown interface name"));
            }
        }
        let wanted = if pVersion.is_null() {
            None
        } else {
            // SAFETY: non-NULL pVersion points to the caller's CK_VERSION.
            Some(unsafe { pVersion.read_unaligned() })
        };
        let found = INTERFACES.iter().find(|interface| {
            let v = interface_version(interface);
            let version_ok = wanted.is_none_or(|w| w.major == v.major && w.minor == v.minor);
            version_ok && interface.get().flags & flags == flags
        });
        match found {
            Some(interface) => {
                // SAFETY: checked non-NULL; the interface is a static in writable memory.
                unsafe { *ppInterface = interface.0.get() };
                Ok(())
            }
            None => Err(bad(
                "C_GetInterface: no interface with that version and flags",
            )),
        }
    })
}

/// The module's own logger (quiet by default, `$PKCS11_SE050_LOG`), for the crate's command-line
/// tool: the same static logger the module uses, so the tool needs no logging crate of its own.
pub fn init_logging() {
    guard::init_logging();
}
