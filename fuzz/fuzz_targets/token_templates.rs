//! The token's attribute-template handling behind C_GenerateKeyPair, C_DeriveKey,
//! C_FindObjectsInit (+ C_FindObjects) and C_GetAttributeValue, through the C ABI in this
//! process, on a virtual SE050 (no latency). Templates are structure-aware: attribute types
//! from the ones the token knows (or any number), values of every shape and length, with the
//! pointer contract the caller must keep (a length always covers its buffer). Outcome: a
//! CK_RV for every call (a panic aborts the run: libfuzzer-sys's panic hook fires before the
//! ABI guard can catch it), a secret never readable, no object left behind.
#![no_main]

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pkcs11_se050::abi::{
    C_DeriveKey, C_DestroyObject, C_FindObjects, C_FindObjectsFinal, C_FindObjectsInit,
    C_GenerateKeyPair, C_GetAttributeValue, C_Initialize, C_OpenSession,
};
use pkcs11_sys::*;

const TYPES: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_CLASS,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_LABEL,
    CKA_VALUE,
    CKA_KEY_TYPE,
    CKA_ID,
    CKA_SENSITIVE,
    CKA_DERIVE,
    CKA_EC_PARAMS,
    CKA_EC_POINT,
    CKA_EXTRACTABLE,
    CKA_VALUE_LEN,
    CKA_LOCAL,
    CKA_NEVER_EXTRACTABLE,
    CKA_ALWAYS_SENSITIVE,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_ALLOWED_MECHANISMS,
    CKA_KEY_GEN_MECHANISM,
    CKA_UNIQUE_ID,
    CKA_PUBLIC_KEY_INFO,
    CKA_START_DATE,
    CKA_END_DATE,
    CKA_SUBJECT,
    CKA_TRUSTED,
    CKA_ALWAYS_AUTHENTICATE,
];

#[derive(Arbitrary, Debug)]
enum Type {
    Known(u8),
    Any(u64),
}

impl Type {
    fn get(&self) -> CK_ATTRIBUTE_TYPE {
        match self {
            Type::Known(i) => TYPES[*i as usize % TYPES.len()],
            Type::Any(t) => *t as CK_ATTRIBUTE_TYPE,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Value {
    Bool(u8),
    Ulong(u64),
    /// The X25519 OID, its name as a printable string, or an EC point of 32 bytes.
    Curve(u8),
    Bytes(Vec<u8>),
    Null,
}

#[derive(Arbitrary, Debug)]
struct Attr {
    kind: Type,
    value: Value,
}

#[derive(Arbitrary, Debug)]
enum Handle {
    BasePrivate,
    BasePublic,
    Created(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Generate {
        mechanism: Option<u64>,
        public: Vec<Attr>,
        private: Vec<Attr>,
    },
    Derive {
        mechanism: Option<u64>,
        base: Handle,
        template: Vec<Attr>,
        kdf: u8,
        peer: Vec<u8>,
        shared: Vec<u8>,
        params: bool,
    },
    Find {
        template: Vec<Attr>,
        max: u8,
    },
    Get {
        object: Handle,
        /// (type, buffer size; None asks for the size with a NULL pValue)
        queries: Vec<(Type, Option<u16>)>,
    },
}

/// Attributes as the C side holds them: the values live as long as the template.
struct Template {
    /// Owns what the pValue pointers point into.
    _values: Vec<Vec<u8>>,
    attrs: Vec<CK_ATTRIBUTE>,
}

fn template(attrs: &[Attr]) -> Template {
    let mut values: Vec<Vec<u8>> = Vec::new();
    let mut kinds = Vec::new();
    for a in attrs.iter().take(24) {
        let bytes = match &a.value {
            Value::Bool(b) => vec![*b],
            Value::Ulong(v) => (*v as CK_ULONG).to_ne_bytes().to_vec(),
            Value::Curve(i) => match i % 3 {
                0 => vec![0x06, 0x03, 0x2B, 0x65, 0x6E],
                1 => b"\x13\x0ccurve25519".to_vec(),
                _ => {
                    let mut p = vec![0x04, 0x20];
                    p.extend((0..32).map(|j| j as u8 ^ i));
                    p
                }
            },
            Value::Bytes(b) => b.iter().take(300).copied().collect(),
            Value::Null => vec![],
        };
        kinds.push((a.kind.get(), matches!(a.value, Value::Null)));
        values.push(bytes);
    }
    let attrs = kinds
        .iter()
        .zip(values.iter_mut())
        .map(|((kind, null), value)| CK_ATTRIBUTE {
            type_: *kind,
            pValue: if *null {
                null_mut()
            } else {
                value.as_mut_ptr() as *mut c_void
            },
            ulValueLen: value.len() as CK_ULONG,
        })
        .collect();
    Template {
        _values: values,
        attrs,
    }
}

struct Fixture {
    session: CK_SESSION_HANDLE,
    public: CK_OBJECT_HANDLE,
    private: CK_OBJECT_HANDLE,
    _dir: tempfile::TempDir,
}

fn generate(
    session: CK_SESSION_HANDLE,
    mechanism: CK_ULONG,
    public: &mut Template,
    private: &mut Template,
) -> (CK_RV, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    let mut mech = CK_MECHANISM {
        mechanism,
        pParameter: null_mut(),
        ulParameterLen: 0,
    };
    let (mut pubh, mut privh) = (0, 0);
    // SAFETY: every pointer is valid for its count or length.
    let rv = unsafe {
        C_GenerateKeyPair(
            session,
            &mut mech,
            public.attrs.as_mut_ptr(),
            public.attrs.len() as CK_ULONG,
            private.attrs.as_mut_ptr(),
            private.attrs.len() as CK_ULONG,
            &mut pubh,
            &mut privh,
        )
    };
    (rv, pubh, privh)
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("pkcs11-se050.toml");
        std::fs::write(
            &conf,
            format!(
                "transport = \"virtual\"\nvirtual_state = \"{}\"\nvirtual_latency_ms = 0\n",
                dir.path().join("se050.state").display()
            ),
        )
        .unwrap();
        std::env::set_var("PKCS11_SE050_CONF", &conf);
        // SAFETY: NULL arguments are allowed; out pointers are valid.
        unsafe {
            assert_eq!(C_Initialize(null_mut()), CKR_OK);
            let mut session = 0;
            assert_eq!(
                C_OpenSession(
                    0,
                    CKF_SERIAL_SESSION | CKF_RW_SESSION,
                    null_mut(),
                    None,
                    &mut session
                ),
                CKR_OK
            );
            let yes = Attr {
                kind: Type::Known(8),
                value: Value::Bool(1),
            };
            let oid = Attr {
                kind: Type::Known(9),
                value: Value::Curve(0),
            };
            let (rv, public, private) = generate(
                session,
                CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
                &mut template(&[oid]),
                &mut template(&[yes]),
            );
            assert_eq!(rv, CKR_OK);
            Fixture {
                session,
                public,
                private,
                _dir: dir,
            }
        }
    })
}

fn handle(h: &Handle, f: &Fixture, created: &[CK_OBJECT_HANDLE]) -> CK_OBJECT_HANDLE {
    match h {
        Handle::BasePrivate => f.private,
        Handle::BasePublic => f.public,
        Handle::Created(i) if !created.is_empty() => created[*i as usize % created.len()],
        Handle::Created(_) => f.private,
        Handle::Any(x) => *x as CK_OBJECT_HANDLE,
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let f = fixture();
    let mut created: Vec<CK_OBJECT_HANDLE> = Vec::new();
    for op in ops.into_iter().take(6) {
        match op {
            Op::Generate {
                mechanism,
                public,
                private,
            } => {
                let mech = mechanism.map_or(CKM_EC_MONTGOMERY_KEY_PAIR_GEN, |m| m as CK_ULONG);
                let (rv, p, q) = generate(
                    f.session,
                    mech,
                    &mut template(&public),
                    &mut template(&private),
                );
                if rv == CKR_OK {
                    created.extend([p, q]);
                }
            }
            Op::Derive {
                mechanism,
                base,
                template: t,
                kdf,
                peer,
                shared,
                params,
            } => {
                let mut t = template(&t);
                let mut peer: Vec<u8> = peer.into_iter().take(80).collect();
                let mut shared: Vec<u8> = shared.into_iter().take(80).collect();
                let mut p = CK_ECDH1_DERIVE_PARAMS {
                    kdf: [CKD_NULL, CKD_SHA256_KDF, kdf as CK_ULONG][kdf as usize % 3],
                    ulSharedDataLen: shared.len() as CK_ULONG,
                    pSharedData: if shared.is_empty() {
                        null_mut()
                    } else {
                        shared.as_mut_ptr()
                    },
                    ulPublicDataLen: peer.len() as CK_ULONG,
                    pPublicData: if peer.is_empty() {
                        null_mut()
                    } else {
                        peer.as_mut_ptr()
                    },
                };
                let mut mech = CK_MECHANISM {
                    mechanism: mechanism.map_or(CKM_ECDH1_DERIVE, |m| m as CK_ULONG),
                    pParameter: if params {
                        &mut p as *mut _ as *mut c_void
                    } else {
                        null_mut()
                    },
                    ulParameterLen: if params {
                        std::mem::size_of::<CK_ECDH1_DERIVE_PARAMS>() as CK_ULONG
                    } else {
                        0
                    },
                };
                let mut key = 0;
                // SAFETY: every pointer is valid for its count or length.
                let rv = unsafe {
                    C_DeriveKey(
                        f.session,
                        &mut mech,
                        handle(&base, f, &created),
                        t.attrs.as_mut_ptr(),
                        t.attrs.len() as CK_ULONG,
                        &mut key,
                    )
                };
                if rv == CKR_OK {
                    created.push(key);
                }
            }
            Op::Find { template: t, max } => {
                let mut t = template(&t);
                // SAFETY: as above.
                let rv = unsafe {
                    C_FindObjectsInit(f.session, t.attrs.as_mut_ptr(), t.attrs.len() as CK_ULONG)
                };
                if rv == CKR_OK {
                    let mut found = vec![0 as CK_OBJECT_HANDLE; usize::from(max)];
                    let mut count = 0;
                    // SAFETY: `found` has `max` entries.
                    unsafe {
                        let _ = C_FindObjects(
                            f.session,
                            found.as_mut_ptr(),
                            found.len() as CK_ULONG,
                            &mut count,
                        );
                        assert!(count as usize <= found.len());
                        assert_eq!(C_FindObjectsFinal(f.session), CKR_OK);
                    }
                }
            }
            Op::Get { object, queries } => {
                let mut buffers: Vec<Vec<u8>> = queries
                    .iter()
                    .take(16)
                    .map(|(_, size)| vec![0xA5u8; size.map_or(0, |s| usize::from(s) % 2048)])
                    .collect();
                let mut attrs: Vec<CK_ATTRIBUTE> = queries
                    .iter()
                    .zip(buffers.iter_mut())
                    .map(|((kind, size), buffer)| CK_ATTRIBUTE {
                        type_: kind.get(),
                        pValue: if size.is_none() {
                            null_mut()
                        } else {
                            buffer.as_mut_ptr() as *mut c_void
                        },
                        ulValueLen: buffer.len() as CK_ULONG,
                    })
                    .collect();
                let h = handle(&object, f, &created);
                // SAFETY: every pValue covers its ulValueLen.
                let _ = unsafe {
                    C_GetAttributeValue(f.session, h, attrs.as_mut_ptr(), attrs.len() as CK_ULONG)
                };
                for (a, buffer) in attrs.iter().zip(&buffers) {
                    if a.ulValueLen != CK_UNAVAILABLE_INFORMATION && !a.pValue.is_null() {
                        assert!(
                            a.ulValueLen as usize <= buffer.len(),
                            "wrote past the buffer"
                        );
                    }
                    // The private key's value never leaves the chip.
                    if h == f.private && a.type_ == CKA_VALUE {
                        assert_eq!(
                            a.ulValueLen, CK_UNAVAILABLE_INFORMATION,
                            "private CKA_VALUE readable"
                        );
                    }
                }
            }
        }
    }
    for h in created {
        // SAFETY: a plain handle.
        let _ = unsafe { C_DestroyObject(f.session, h) };
    }
});
