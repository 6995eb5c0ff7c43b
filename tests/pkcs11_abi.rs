//! The raw C ABI of the built .so, the way a C host calls it: NULL pointers, bad handles, short
//! buffers, C_Initialize argument rules, both interfaces, fork. Each test in its own process.

#[path = "pkcs11_harness.rs"]
mod harness;

use harness::{isolated, module_path};
use pkcs11_sys::*;
use std::ffi::{c_void, CString};
use std::ptr::{null, null_mut};

/// The module loaded with dlopen, and its 3.0 function list.
struct Module {
    list: &'static CK_FUNCTION_LIST_3_0,
    lib: *mut c_void,
}

impl Module {
    fn load() -> Module {
        let path = CString::new(module_path().to_str().unwrap()).unwrap();
        // SAFETY: dlopen with a valid C string; the library stays loaded for the process.
        let lib = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!lib.is_null(), "dlopen failed");
        let name = CString::new("C_GetInterface").unwrap();
        // SAFETY: looking up an exported symbol of the loaded library.
        let sym = unsafe { libc::dlsym(lib, name.as_ptr()) };
        assert!(!sym.is_null(), "C_GetInterface is exported");
        // SAFETY: the symbol is C_GetInterface with the PKCS#11 3.0 signature.
        let get_interface: unsafe extern "C" fn(
            CK_UTF8CHAR_PTR,
            CK_VERSION_PTR,
            CK_INTERFACE_PTR_PTR,
            CK_FLAGS,
        ) -> CK_RV = unsafe { std::mem::transmute(sym) };
        let mut interface: CK_INTERFACE_PTR = null_mut();
        // SAFETY: NULL name and version select the default interface; out pointer valid.
        assert_eq!(
            unsafe { get_interface(null_mut(), null_mut(), &mut interface, 0) },
            CKR_OK
        );
        // SAFETY: the module returned a pointer to its static interface.
        let interface = unsafe { &*interface };
        // SAFETY: the default interface is "PKCS 11" 3.0, whose list is a CK_FUNCTION_LIST_3_0.
        let list = unsafe { &*(interface.pFunctionList as *const CK_FUNCTION_LIST_3_0) };
        assert_eq!((list.version.major, list.version.minor), (3, 0));
        Module { list, lib }
    }

    fn symbol(&self, name: &str) -> *mut c_void {
        let name = CString::new(name).unwrap();
        // SAFETY: looking up an exported symbol of the loaded library.
        unsafe { libc::dlsym(self.lib, name.as_ptr()) }
    }

    fn init(&self) {
        // SAFETY: NULL arguments are allowed for C_Initialize.
        assert_eq!(
            unsafe { self.list.C_Initialize.unwrap()(null_mut()) },
            CKR_OK
        );
    }

    fn open_rw(&self) -> CK_SESSION_HANDLE {
        let mut s = 0;
        // SAFETY: valid out pointer.
        let rv = unsafe {
            self.list.C_OpenSession.unwrap()(
                0,
                CKF_SERIAL_SESSION | CKF_RW_SESSION,
                null_mut(),
                None,
                &mut s,
            )
        };
        assert_eq!(rv, CKR_OK);
        s
    }

    /// An X25519 pair; returns (public, private).
    fn generate(&self, session: CK_SESSION_HANDLE) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
        let params = [0x06u8, 0x03, 0x2B, 0x65, 0x6E];
        let yes: CK_BBOOL = CK_TRUE;
        let public = [attr(CKA_EC_PARAMS, params.as_ptr(), params.len())];
        let private = [attr(CKA_DERIVE, &yes, 1)];
        let mut mech = CK_MECHANISM {
            mechanism: CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        let (mut pubh, mut privh) = (0, 0);
        // SAFETY: all pointers valid for the call.
        let rv = unsafe {
            self.list.C_GenerateKeyPair.unwrap()(
                session,
                &mut mech,
                public.as_ptr() as *mut _,
                1,
                private.as_ptr() as *mut _,
                1,
                &mut pubh,
                &mut privh,
            )
        };
        assert_eq!(rv, CKR_OK);
        (pubh, privh)
    }
}

fn attr<T>(t: CK_ATTRIBUTE_TYPE, value: *const T, len: usize) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: t,
        pValue: value as *mut c_void,
        ulValueLen: len as CK_ULONG,
    }
}

#[test]
fn initialize_argument_rules() {
    isolated("initialize_argument_rules", "", |_, _| {
        let m = Module::load();
        let f = m.list;
        // SAFETY (whole block): every pointer passed is valid or deliberately NULL, as tested.
        unsafe {
            let mut info: CK_INFO = std::mem::zeroed();
            assert_eq!(
                f.C_GetInfo.unwrap()(&mut info),
                CKR_CRYPTOKI_NOT_INITIALIZED
            );
            assert_eq!(
                f.C_Finalize.unwrap()(null_mut()),
                CKR_CRYPTOKI_NOT_INITIALIZED
            );
            let mut args: CK_C_INITIALIZE_ARGS = std::mem::zeroed();
            let mut dummy = 0u8;
            args.pReserved = &mut dummy as *mut u8 as *mut c_void;
            assert_eq!(
                f.C_Initialize.unwrap()(&mut args as *mut _ as *mut c_void),
                CKR_ARGUMENTS_BAD
            );
            args.pReserved = null_mut();
            unsafe extern "C" fn create(_: CK_VOID_PTR_PTR) -> CK_RV {
                CKR_OK
            }
            unsafe extern "C" fn other(_: CK_VOID_PTR) -> CK_RV {
                CKR_OK
            }
            args.CreateMutex = Some(create);
            assert_eq!(
                f.C_Initialize.unwrap()(&mut args as *mut _ as *mut c_void),
                CKR_ARGUMENTS_BAD,
                "some callbacks"
            );
            args.DestroyMutex = Some(other);
            args.LockMutex = Some(other);
            args.UnlockMutex = Some(other);
            assert_eq!(
                f.C_Initialize.unwrap()(&mut args as *mut _ as *mut c_void),
                CKR_CANT_LOCK,
                "own mutexes only"
            );
            // p11-kit's way: callbacks and CKF_OS_LOCKING_OK.
            args.flags = CKF_OS_LOCKING_OK;
            assert_eq!(
                f.C_Initialize.unwrap()(&mut args as *mut _ as *mut c_void),
                CKR_OK
            );
            assert_eq!(
                f.C_Initialize.unwrap()(null_mut()),
                CKR_CRYPTOKI_ALREADY_INITIALIZED
            );
            assert_eq!(f.C_GetInfo.unwrap()(null_mut()), CKR_ARGUMENTS_BAD);
            assert_eq!(f.C_GetInfo.unwrap()(&mut info), CKR_OK);
            assert_eq!(&info.manufacturerID[..12], b"pkcs11-se050");
            assert_eq!(
                f.C_Finalize.unwrap()(&mut dummy as *mut u8 as *mut c_void),
                CKR_ARGUMENTS_BAD
            );
            assert_eq!(f.C_Finalize.unwrap()(null_mut()), CKR_OK);
            let mut s = 0;
            assert_eq!(
                f.C_OpenSession.unwrap()(0, CKF_SERIAL_SESSION, null_mut(), None, &mut s),
                CKR_CRYPTOKI_NOT_INITIALIZED
            );
        }
    });
}

#[test]
fn interfaces_and_function_lists() {
    isolated("interfaces_and_function_lists", "", |_, _| {
        let m = Module::load();
        // SAFETY (whole block): pointers valid or deliberately NULL.
        unsafe {
            let list_fn: unsafe extern "C" fn(CK_INTERFACE_PTR, CK_ULONG_PTR) -> CK_RV =
                std::mem::transmute(m.symbol("C_GetInterfaceList"));
            let mut count = 0;
            assert_eq!(list_fn(null_mut(), &mut count), CKR_OK);
            assert_eq!(count, 2);
            let mut interfaces: [CK_INTERFACE; 2] = std::mem::zeroed();
            let mut small = 1;
            assert_eq!(
                list_fn(interfaces.as_mut_ptr(), &mut small),
                CKR_BUFFER_TOO_SMALL
            );
            assert_eq!(small, 2);
            assert_eq!(list_fn(interfaces.as_mut_ptr(), &mut count), CKR_OK);
            assert_eq!(
                list_fn(interfaces.as_mut_ptr(), null_mut()),
                CKR_ARGUMENTS_BAD
            );
            for i in &interfaces {
                assert_eq!(
                    std::ffi::CStr::from_ptr(i.pInterfaceName as *const _).to_bytes(),
                    b"PKCS 11"
                );
            }
            let get: unsafe extern "C" fn(
                CK_UTF8CHAR_PTR,
                CK_VERSION_PTR,
                CK_INTERFACE_PTR_PTR,
                CK_FLAGS,
            ) -> CK_RV = std::mem::transmute(m.symbol("C_GetInterface"));
            let mut out: CK_INTERFACE_PTR = null_mut();
            let mut v240 = CK_VERSION {
                major: 2,
                minor: 40,
            };
            let name = c"PKCS 11".as_ptr() as *mut u8;
            assert_eq!(get(name, &mut v240, &mut out, 0), CKR_OK);
            let list = &*((*out).pFunctionList as *const CK_FUNCTION_LIST);
            assert_eq!((list.version.major, list.version.minor), (2, 40));
            let mut v9 = CK_VERSION { major: 9, minor: 9 };
            assert_eq!(get(name, &mut v9, &mut out, 0), CKR_ARGUMENTS_BAD);
            assert_eq!(
                get(c"PKCS 12".as_ptr() as *mut u8, null_mut(), &mut out, 0),
                CKR_ARGUMENTS_BAD
            );
            assert_eq!(get(name, null_mut(), null_mut(), 0), CKR_ARGUMENTS_BAD);
            assert_eq!(
                get(name, null_mut(), &mut out, CKF_INTERFACE_FORK_SAFE),
                CKR_ARGUMENTS_BAD
            );
            let get_list: unsafe extern "C" fn(CK_FUNCTION_LIST_PTR_PTR) -> CK_RV =
                std::mem::transmute(m.symbol("C_GetFunctionList"));
            assert_eq!(get_list(null_mut()), CKR_ARGUMENTS_BAD);
            let mut l: CK_FUNCTION_LIST_PTR = null_mut();
            assert_eq!(get_list(&mut l), CKR_OK);
            assert_eq!(((*l).version.major, (*l).version.minor), (2, 40));
            // Every slot of both lists is filled, and the unimplemented ones say so.
            let words = std::mem::size_of::<CK_FUNCTION_LIST_3_0>() / std::mem::size_of::<usize>();
            let raw = std::slice::from_raw_parts(m.list as *const _ as *const usize, words);
            assert!(
                raw[1..].iter().all(|p| *p != 0),
                "no NULL entry in the 3.0 list"
            );
            m.init();
            let s = m.open_rw();
            let mut mech = CK_MECHANISM {
                mechanism: CKM_SHA256,
                pParameter: null_mut(),
                ulParameterLen: 0,
            };
            assert_eq!(
                m.list.C_DigestInit.unwrap()(s, &mut mech),
                CKR_FUNCTION_NOT_SUPPORTED
            );
            assert_eq!(
                m.list.C_EncryptMessage.unwrap()(
                    s,
                    null_mut(),
                    0,
                    null_mut(),
                    0,
                    null_mut(),
                    0,
                    null_mut(),
                    null_mut()
                ),
                CKR_FUNCTION_NOT_SUPPORTED
            );
        }
    });
}

#[test]
fn null_pointers_bad_handles_and_short_buffers() {
    isolated("null_pointers_bad_handles_and_short_buffers", "", |_, _| {
        let m = Module::load();
        let f = m.list;
        m.init();
        // SAFETY (whole block): pointers valid or deliberately NULL, as each line tests.
        unsafe {
            assert_eq!(
                f.C_GetSlotList.unwrap()(CK_TRUE, null_mut(), null_mut()),
                CKR_ARGUMENTS_BAD
            );
            let mut count = 0;
            let mut slots = [99 as CK_SLOT_ID; 2];
            assert_eq!(
                f.C_GetSlotList.unwrap()(CK_TRUE, slots.as_mut_ptr(), &mut count),
                CKR_BUFFER_TOO_SMALL
            );
            assert_eq!(count, 1);
            assert_eq!(
                f.C_GetSlotList.unwrap()(CK_TRUE, slots.as_mut_ptr(), &mut count),
                CKR_OK
            );
            assert_eq!(slots[0], 0);
            let mut token: CK_TOKEN_INFO = std::mem::zeroed();
            assert_eq!(
                f.C_GetTokenInfo.unwrap()(7, &mut token),
                CKR_SLOT_ID_INVALID
            );
            assert_eq!(f.C_GetTokenInfo.unwrap()(0, null_mut()), CKR_ARGUMENTS_BAD);
            assert_eq!(f.C_GetTokenInfo.unwrap()(0, &mut token), CKR_OK);
            assert_eq!(&token.label[..4], b"e2e ");
            assert_eq!(
                f.C_GetMechanismInfo.unwrap()(0, CKM_ECDH1_DERIVE, null_mut()),
                CKR_ARGUMENTS_BAD
            );
            let mut s = 0;
            assert_eq!(
                f.C_OpenSession.unwrap()(0, CKF_SERIAL_SESSION, null_mut(), None, null_mut()),
                CKR_ARGUMENTS_BAD
            );
            assert_eq!(
                f.C_OpenSession.unwrap()(0, 0, null_mut(), None, &mut s),
                CKR_SESSION_PARALLEL_NOT_SUPPORTED
            );
            assert_eq!(
                f.C_OpenSession.unwrap()(3, CKF_SERIAL_SESSION, null_mut(), None, &mut s),
                CKR_SLOT_ID_INVALID
            );
            assert_eq!(f.C_CloseSession.unwrap()(12345), CKR_SESSION_HANDLE_INVALID);
            let s = m.open_rw();
            let (public, private) = m.generate(s);

            // Templates with NULL where data is promised, and no place for the public handle.
            let mut mech = CK_MECHANISM {
                mechanism: CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
                pParameter: null_mut(),
                ulParameterLen: 0,
            };
            let (mut a, mut b) = (0, 0);
            let broken = [attr::<u8>(CKA_LABEL, null(), 5)];
            let bad_calls: [(
                &str,
                CK_MECHANISM_PTR,
                CK_ATTRIBUTE_PTR,
                CK_ULONG,
                CK_OBJECT_HANDLE_PTR,
            ); 4] = [
                ("NULL mechanism", null_mut(), null_mut(), 0, &mut a),
                (
                    "NULL template of 2 entries",
                    &mut mech,
                    null_mut(),
                    2,
                    &mut a,
                ),
                (
                    "NULL value of 5 bytes",
                    &mut mech,
                    broken.as_ptr() as *mut _,
                    1,
                    &mut a,
                ),
                ("NULL public handle", &mut mech, null_mut(), 0, null_mut()),
            ];
            for (what, mechanism, public, public_count, public_handle) in bad_calls {
                assert_eq!(
                    f.C_GenerateKeyPair.unwrap()(
                        s,
                        mechanism,
                        public,
                        public_count,
                        null_mut(),
                        0,
                        public_handle,
                        &mut b
                    ),
                    CKR_ARGUMENTS_BAD,
                    "{what}"
                );
            }

            // C_GetAttributeValue: every entry answered, problems reported per entry.
            let mut label = [0u8; 2];
            let mut class: CK_ULONG = 0;
            let mut value = [0u8; 32];
            let mut template = [
                attr(CKA_CLASS, &raw mut class, std::mem::size_of::<CK_ULONG>()),
                attr(CKA_LABEL, label.as_mut_ptr(), label.len()),
                attr(CKA_VALUE, value.as_mut_ptr(), value.len()),
                attr(CKA_MODULUS, value.as_mut_ptr(), value.len()),
                attr::<u8>(CKA_EC_PARAMS, null(), 0),
            ];
            let rv = f.C_GetAttributeValue.unwrap()(
                s,
                private,
                template.as_mut_ptr(),
                template.len() as CK_ULONG,
            );
            assert!(
                [
                    CKR_BUFFER_TOO_SMALL,
                    CKR_ATTRIBUTE_SENSITIVE,
                    CKR_ATTRIBUTE_TYPE_INVALID
                ]
                .contains(&rv),
                "{rv:#x}"
            );
            assert_eq!(class, CKO_PRIVATE_KEY);
            assert_eq!(
                template[0].ulValueLen,
                std::mem::size_of::<CK_ULONG>() as CK_ULONG
            );
            assert_eq!(
                template[1].ulValueLen, CK_UNAVAILABLE_INFORMATION,
                "label too long for 2 bytes"
            );
            assert_eq!(
                template[2].ulValueLen, CK_UNAVAILABLE_INFORMATION,
                "sensitive"
            );
            assert_eq!(
                template[3].ulValueLen, CK_UNAVAILABLE_INFORMATION,
                "no such attribute"
            );
            assert_eq!(template[4].ulValueLen, 5, "length query with NULL pValue");
            assert_eq!(
                f.C_GetAttributeValue.unwrap()(s, private, null_mut(), 3),
                CKR_ARGUMENTS_BAD
            );
            assert_eq!(
                f.C_GetAttributeValue.unwrap()(s, 0xdead_beef, template.as_mut_ptr(), 1),
                CKR_OBJECT_HANDLE_INVALID
            );
            assert_eq!(
                f.C_GetAttributeValue.unwrap()(999, private, template.as_mut_ptr(), 1),
                CKR_SESSION_HANDLE_INVALID
            );

            // C_DeriveKey parameter checks.
            let peer = [9u8; 32];
            let mut params = CK_ECDH1_DERIVE_PARAMS {
                kdf: CKD_NULL,
                ulSharedDataLen: 0,
                pSharedData: null_mut(),
                ulPublicDataLen: 32,
                pPublicData: peer.as_ptr() as *mut u8,
            };
            let size = std::mem::size_of::<CK_ECDH1_DERIVE_PARAMS>() as CK_ULONG;
            // Changed through this pointer only, which the mechanism hands to the module.
            let pp: *mut CK_ECDH1_DERIVE_PARAMS = &raw mut params;
            let mut dmech = CK_MECHANISM {
                mechanism: CKM_ECDH1_DERIVE,
                pParameter: pp as *mut c_void,
                ulParameterLen: size,
            };
            let mut key = 0;
            assert_eq!(
                f.C_DeriveKey.unwrap()(s, &mut dmech, private, null_mut(), 0, &mut key),
                CKR_OK
            );
            assert_eq!(
                f.C_DeriveKey.unwrap()(s, &mut dmech, private, null_mut(), 0, null_mut()),
                CKR_ARGUMENTS_BAD
            );
            assert_eq!(
                f.C_DeriveKey.unwrap()(s, null_mut(), private, null_mut(), 0, &mut key),
                CKR_ARGUMENTS_BAD
            );
            assert_eq!(
                f.C_DeriveKey.unwrap()(s, &mut dmech, 0x1234, null_mut(), 0, &mut key),
                CKR_KEY_HANDLE_INVALID
            );
            assert_eq!(
                f.C_DeriveKey.unwrap()(s, &mut dmech, public, null_mut(), 0, &mut key),
                CKR_KEY_TYPE_INCONSISTENT
            );
            dmech.ulParameterLen = size - 8;
            assert_eq!(
                f.C_DeriveKey.unwrap()(s, &mut dmech, private, null_mut(), 0, &mut key),
                CKR_MECHANISM_PARAM_INVALID
            );
            dmech.ulParameterLen = size;
            (*pp).pPublicData = null_mut();
            assert_eq!(
                f.C_DeriveKey.unwrap()(s, &mut dmech, private, null_mut(), 0, &mut key),
                CKR_MECHANISM_PARAM_INVALID
            );
            (*pp).pPublicData = peer.as_ptr() as *mut u8;
            (*pp).kdf = CKD_SHA256_KDF;
            assert_eq!(
                f.C_DeriveKey.unwrap()(s, &mut dmech, private, null_mut(), 0, &mut key),
                CKR_MECHANISM_PARAM_INVALID
            );
            (*pp).kdf = CKD_NULL;
            dmech.pParameter = null_mut();
            assert_eq!(
                f.C_DeriveKey.unwrap()(s, &mut dmech, private, null_mut(), 0, &mut key),
                CKR_MECHANISM_PARAM_INVALID
            );
            dmech.mechanism = CKM_DH_PKCS_DERIVE;
            assert_eq!(
                f.C_DeriveKey.unwrap()(s, &mut dmech, private, null_mut(), 0, &mut key),
                CKR_MECHANISM_INVALID
            );

            // Searches and random.
            let mut found = [0 as CK_OBJECT_HANDLE; 4];
            let mut n = 0;
            assert_eq!(
                f.C_FindObjects.unwrap()(s, found.as_mut_ptr(), 4, &mut n),
                CKR_OPERATION_NOT_INITIALIZED
            );
            assert_eq!(f.C_FindObjectsInit.unwrap()(s, null_mut(), 0), CKR_OK);
            assert_eq!(
                f.C_FindObjectsInit.unwrap()(s, null_mut(), 0),
                CKR_OPERATION_ACTIVE
            );
            assert_eq!(
                f.C_FindObjects.unwrap()(s, found.as_mut_ptr(), 4, null_mut()),
                CKR_ARGUMENTS_BAD
            );
            assert_eq!(
                f.C_FindObjects.unwrap()(s, found.as_mut_ptr(), 1, &mut n),
                CKR_OK
            );
            assert_eq!(n, 1);
            assert_eq!(
                f.C_FindObjects.unwrap()(s, found.as_mut_ptr(), 4, &mut n),
                CKR_OK
            );
            assert_eq!(n, 2, "the other half of the pair and the derived secret");
            assert_eq!(f.C_FindObjectsFinal.unwrap()(s), CKR_OK);
            assert_eq!(
                f.C_FindObjectsFinal.unwrap()(s),
                CKR_OPERATION_NOT_INITIALIZED
            );
            assert_eq!(
                f.C_GenerateRandom.unwrap()(s, null_mut(), 16),
                CKR_ARGUMENTS_BAD
            );
            let mut random = [0u8; 600];
            assert_eq!(
                f.C_GenerateRandom.unwrap()(s, random.as_mut_ptr(), 600),
                CKR_OK
            );
            assert!(random.iter().any(|b| *b != 0));
            assert_eq!(
                f.C_Login.unwrap()(s, CKU_USER, null_mut(), 4),
                CKR_ARGUMENTS_BAD
            );
            assert_eq!(
                f.C_Login.unwrap()(s, 77, null_mut(), 0),
                CKR_USER_TYPE_INVALID
            );
            assert_eq!(f.C_Logout.unwrap()(s), CKR_USER_NOT_LOGGED_IN);
            assert_eq!(f.C_CloseAllSessions.unwrap()(0), CKR_OK);
            assert_eq!(
                f.C_GenerateRandom.unwrap()(s, random.as_mut_ptr(), 1),
                CKR_SESSION_HANDLE_INVALID
            );
        }
    });
}

/// Findings of PKCS#11 conformance suites: the legacy parallel-function calls answer
/// CKR_FUNCTION_NOT_PARALLEL, and copying an object whose CKA_COPYABLE is false is
/// CKR_ACTION_PROHIBITED (both were CKR_FUNCTION_NOT_SUPPORTED).
#[test]
fn legacy_parallel_calls_and_copying_a_non_copyable_object() {
    isolated(
        "legacy_parallel_calls_and_copying_a_non_copyable_object",
        "",
        |_, _| {
            let m = Module::load();
            let f = m.list;
            m.init();
            let s = m.open_rw();
            let (public, private) = m.generate(s);
            // SAFETY (whole block): pointers valid or deliberately NULL, as each line tests.
            unsafe {
                assert_eq!(f.C_GetFunctionStatus.unwrap()(s), CKR_FUNCTION_NOT_PARALLEL);
                assert_eq!(f.C_CancelFunction.unwrap()(s), CKR_FUNCTION_NOT_PARALLEL);
                let mut copy = 0;
                for object in [public, private] {
                    assert_eq!(
                        f.C_CopyObject.unwrap()(s, object, null_mut(), 0, &mut copy),
                        CKR_ACTION_PROHIBITED
                    );
                }
                assert_eq!(
                    f.C_CopyObject.unwrap()(s, 0xdead, null_mut(), 0, &mut copy),
                    CKR_OBJECT_HANDLE_INVALID
                );
                assert_eq!(
                    f.C_CopyObject.unwrap()(s, public, null_mut(), 0, null_mut()),
                    CKR_ARGUMENTS_BAD
                );
                assert_eq!(copy, 0, "no handle written");
            }
        },
    );
}

/// A C host that loads the module, calls C_GetFunctionList (which sets up logging) and unloads it,
/// `cycles` times, under valgrind: the bytes definitely and indirectly lost.
fn bytes_lost_over_unload_cycles(dir: &std::path::Path, cycles: u32) -> (u64, String) {
    let source = dir.join("unload.c");
    std::fs::write(
        &source,
        r#"#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
typedef unsigned long (*get_list_fn)(void **);
int main(int argc, char **argv) {
    for (int i = 0; i < atoi(argv[2]); i++) {
        void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!lib) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
        get_list_fn get = (get_list_fn)dlsym(lib, "C_GetFunctionList");
        void *list = 0;
        if (!get || get(&list) != 0 || !list) { fprintf(stderr, "C_GetFunctionList\n"); return 3; }
        if (dlclose(lib) != 0) { fprintf(stderr, "dlclose: %s\n", dlerror()); return 4; }
    }
    return 0;
}
"#,
    )
    .unwrap();
    let program = dir.join("unload");
    let cc = std::process::Command::new("cc")
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .arg("-ldl")
        .status()
        .expect("cc (build-essential) is needed");
    assert!(cc.success());
    let out = std::process::Command::new("valgrind")
        .args(["--leak-check=full", "--error-exitcode=0"])
        .arg(&program)
        .arg(module_path())
        .arg(cycles.to_string())
        .output()
        .expect("valgrind is needed (scripts/install-deps)");
    let report = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "the host program failed:\n{report}");
    let lost = |kind: &str| -> u64 {
        report
            .lines()
            .find_map(|l| l.split_once(&format!("{kind} lost: ")))
            .map(|(_, rest)| {
                rest.split(' ')
                    .next()
                    .unwrap()
                    .replace(',', "")
                    .parse()
                    .unwrap()
            })
            .unwrap_or(0)
    };
    assert!(
        report.contains("HEAP SUMMARY"),
        "no valgrind report:\n{report}"
    );
    (lost("definitely") + lost("indirectly"), report)
}

/// The logger made at the first C_GetFunctionList is freed with the module: 0 bytes lost per
/// dlclose under valgrind (a boxed env_logger lost 232 bytes each time).
#[test]
fn unloading_the_module_loses_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    for cycles in [1, 3] {
        let (lost, report) = bytes_lost_over_unload_cycles(dir.path(), cycles);
        assert_eq!(
            lost, 0,
            "{cycles} load/unload cycles lost {lost} bytes:\n{report}"
        );
    }
}

#[test]
fn forked_child_initialises_its_own_link() {
    isolated("forked_child_initialises_its_own_link", "", |_, _| {
        let m = Module::load();
        let f = m.list;
        m.init();
        let s = m.open_rw();
        m.generate(s);
        // SAFETY (whole block): fork in a test process; the child only calls the module and
        // leaves with _exit, never returning into the test harness.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork");
            if pid == 0 {
                let mut random = [0u8; 8];
                let code = if f.C_GenerateRandom.unwrap()(s, random.as_mut_ptr(), 8)
                    != CKR_CRYPTOKI_NOT_INITIALIZED
                {
                    10
                } else if f.C_Initialize.unwrap()(null_mut()) != CKR_OK {
                    11
                } else {
                    let mut cs = 0;
                    let rv =
                        f.C_OpenSession.unwrap()(0, CKF_SERIAL_SESSION, null_mut(), None, &mut cs);
                    if rv != CKR_OK
                        || f.C_GenerateRandom.unwrap()(cs, random.as_mut_ptr(), 8) != CKR_OK
                    {
                        12
                    } else {
                        0
                    }
                };
                libc::_exit(code);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFEXITED(status), "child died: {status}");
            assert_eq!(
                libc::WEXITSTATUS(status),
                0,
                "child failed at step {}",
                libc::WEXITSTATUS(status)
            );
            // The parent's link is untouched by what the child did.
            let mut random = [0u8; 8];
            assert_eq!(
                f.C_GenerateRandom.unwrap()(s, random.as_mut_ptr(), 8),
                CKR_OK
            );
        }
    });
}
