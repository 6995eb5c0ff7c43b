//! The built libpkcs11_se050.so through cryptoki 0.12, as a Rust PKCS#11 application uses it.
//! Each test runs in its own process with its own virtual SE050 (see pkcs11_harness.rs).

#[path = "pkcs11_harness.rs"]
mod harness;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use harness::{isolated, module_path, role, run_role, TestChip};
use pkcs11_se050::virtual_se050::counters::read_counters;
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

const OID_X25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x6E];

fn init() -> Pkcs11 {
    let pkcs11 = Pkcs11::new(module_path()).expect("load the module");
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    pkcs11
}

fn rw_session(pkcs11: &Pkcs11) -> Session {
    let slot = pkcs11.get_slots_with_token().unwrap()[0];
    pkcs11.open_rw_session(slot).unwrap()
}

/// Generates a pair the way a program that knows X25519 would; returns (public, private).
fn generate(session: &Session, label: &str, id: Option<&[u8]>) -> (ObjectHandle, ObjectHandle) {
    let mut public = vec![
        Attribute::Token(true),
        Attribute::EcParams(OID_X25519.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let mut private = vec![
        Attribute::Token(true),
        Attribute::Derive(true),
        Attribute::Sensitive(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if let Some(id) = id {
        public.push(Attribute::Id(id.to_vec()));
        private.push(Attribute::Id(id.to_vec()));
    }
    session
        .generate_key_pair(&Mechanism::EccMontgomeryKeyPairGen, &public, &private)
        .expect("generate X25519 pair")
}

fn public_key(session: &Session, public: ObjectHandle) -> [u8; 32] {
    let attrs = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .unwrap();
    let Attribute::EcPoint(point) = &attrs[0] else {
        panic!("no EC point")
    };
    match point.len() {
        34 => {
            assert_eq!(&point[..2], &[0x04, 0x20], "DER OCTET STRING header");
            point[2..].try_into().unwrap()
        }
        32 => point.as_slice().try_into().unwrap(),
        n => panic!("EC point of {n} bytes"),
    }
}

/// C_DeriveKey with `peer` and an extractable template; returns the value read back.
fn derive(
    session: &Session,
    private: ObjectHandle,
    peer: &[u8],
    len: Option<u32>,
) -> Result<Vec<u8>, Error> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    if let Some(len) = len {
        // CKA_VALUE_LEN is a CK_ULONG: 32 bits on armhf, so the test asks for what fits both.
        template.push(Attribute::ValueLen(pkcs11_sys::CK_ULONG::from(len).into()));
    }
    let mechanism = Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), peer));
    let secret = session.derive_key(&mechanism, private, &template)?;
    let attrs = session.get_attributes(secret, &[AttributeType::Value])?;
    session.destroy_object(secret)?;
    match &attrs[0] {
        Attribute::Value(v) => Ok(v.clone()),
        other => panic!("unexpected {other:?}"),
    }
}

fn rv(result: Result<impl std::fmt::Debug, Error>) -> RvError {
    match result {
        Err(Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

#[test]
fn info_slot_token_and_mechanisms() {
    isolated("info_slot_token_and_mechanisms", "", |_, _| {
        let pkcs11 = init();
        let info = pkcs11.get_library_info().unwrap();
        assert_eq!(info.cryptoki_version().major(), 3);
        let slots = pkcs11.get_slots_with_token().unwrap();
        assert_eq!(slots.len(), 1);
        let token = pkcs11.get_token_info(slots[0]).unwrap();
        assert_eq!(token.label(), "e2e");
        // The virtual chip says what it is, wherever one looks.
        assert_eq!(token.manufacturer_id(), "pkcs11-se050 virtual (software)");
        assert_eq!(token.model(), "VIRTUAL SE050");
        let slot_info = pkcs11.get_slot_info(slots[0]).unwrap();
        assert!(!slot_info.hardware_slot(), "{slot_info:?}");
        let serial = token.serial_number();
        assert!(
            serial.len() == 16 && serial.chars().all(|c| c.is_ascii_hexdigit()),
            "{serial}"
        );
        // cryptoki leaves vendor-defined mechanisms (CKM_SE050_ATTEST, docs/fleet.md)
        // out of this list; tests/attestation.rs uses that one.
        let mechanisms = pkcs11.get_mechanism_list(slots[0]).unwrap();
        assert_eq!(
            mechanisms,
            vec![
                MechanismType::ECC_MONTGOMERY_KEY_PAIR_GEN,
                MechanismType::ECDH1_DERIVE,
                // P-256 and Ed25519 (issue 22; tests/pkcs11_ec.rs)
                MechanismType::ECC_KEY_PAIR_GEN,
                MechanismType::ECDSA,
                MechanismType::ECDSA_SHA1,
                MechanismType::ECDSA_SHA256,
                MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
                MechanismType::EDDSA,
            ]
        );
        let gen = pkcs11
            .get_mechanism_info(slots[0], MechanismType::ECC_MONTGOMERY_KEY_PAIR_GEN)
            .unwrap();
        assert!(gen.generate_key_pair() && !gen.hardware() && !gen.derive());
        assert_eq!((gen.min_key_size(), gen.max_key_size()), (255, 255));
        let dh = pkcs11
            .get_mechanism_info(slots[0], MechanismType::ECDH1_DERIVE)
            .unwrap();
        assert!(dh.derive() && !dh.hardware() && !dh.generate_key_pair());
        assert_eq!(
            rv(pkcs11.get_mechanism_info(slots[0], MechanismType::AES_CBC)),
            RvError::MechanismInvalid
        );
    });
}

#[test]
fn generated_pair_has_full_attribute_sets() {
    isolated("generated_pair_has_full_attribute_sets", "", |_, _| {
        let pkcs11 = init();
        let session = rw_session(&pkcs11);
        let (public, private) = generate(&session, "wg0", None);
        use AttributeType as T;
        let want_private = [
            (T::Class, Attribute::Class(ObjectClass::PRIVATE_KEY)),
            (T::KeyType, Attribute::KeyType(KeyType::EC_MONTGOMERY)),
            (T::Token, Attribute::Token(true)),
            (T::Private, Attribute::Private(true)),
            (T::Modifiable, Attribute::Modifiable(true)),
            (T::Label, Attribute::Label(b"wg0".to_vec())),
            (T::Local, Attribute::Local(true)),
            (
                T::KeyGenMechanism,
                Attribute::KeyGenMechanism(MechanismType::ECC_MONTGOMERY_KEY_PAIR_GEN),
            ),
            (T::Derive, Attribute::Derive(true)),
            (T::Sign, Attribute::Sign(false)),
            (T::EcParams, Attribute::EcParams(OID_X25519.to_vec())),
            (T::Sensitive, Attribute::Sensitive(true)),
            (T::AlwaysSensitive, Attribute::AlwaysSensitive(true)),
            (T::Extractable, Attribute::Extractable(false)),
            (T::NeverExtractable, Attribute::NeverExtractable(true)),
        ];
        for (t, want) in want_private {
            let got = session.get_attributes(private, &[t]).unwrap();
            assert_eq!(got, vec![want], "private {t:?}");
        }
        let want_public = [
            (T::Class, Attribute::Class(ObjectClass::PUBLIC_KEY)),
            (T::KeyType, Attribute::KeyType(KeyType::EC_MONTGOMERY)),
            (T::Private, Attribute::Private(false)),
            (T::Label, Attribute::Label(b"wg0".to_vec())),
            (T::Verify, Attribute::Verify(false)),
        ];
        for (t, want) in want_public {
            assert_eq!(
                session.get_attributes(public, &[t]).unwrap(),
                vec![want],
                "public {t:?}"
            );
        }
        let id_private = session.get_attributes(private, &[T::Id]).unwrap();
        let id_public = session.get_attributes(public, &[T::Id]).unwrap();
        assert_eq!(id_private, id_public, "a pair shares its CKA_ID");
        let Attribute::Id(id) = &id_private[0] else {
            panic!()
        };
        assert_eq!(id.len(), 4, "default CKA_ID is the 4-byte object id");
        public_key(&session, public);

        // Per-attribute answers, every entry processed (what cryptoki's two passes rely on).
        let info = session
            .get_attribute_info(
                private,
                &[T::Value, T::Label, T::EcPoint, T::Derive, T::Modulus],
            )
            .unwrap();
        let want = [
            AttributeInfo::Sensitive,
            AttributeInfo::Available(3),
            AttributeInfo::TypeInvalid,
            AttributeInfo::Available(1),
            AttributeInfo::TypeInvalid,
        ];
        assert_eq!(format!("{info:?}"), format!("{want:?}"));
        // get_attributes skips what is unavailable and returns the rest.
        let got = session
            .get_attributes(private, &[T::Value, T::Label])
            .unwrap();
        assert_eq!(got, vec![Attribute::Label(b"wg0".to_vec())]);
    });
}

#[test]
fn derive_agrees_with_x25519_dalek_for_raw_and_der_peer_keys() {
    isolated(
        "derive_agrees_with_x25519_dalek_for_raw_and_der_peer_keys",
        "",
        |_, state| {
            let pkcs11 = init();
            let session = rw_session(&pkcs11);
            let (public, private) = generate(&session, "wg0", None);
            let token_public = PublicKey::from(public_key(&session, public));
            for round in 0..4 {
                let peer = StaticSecret::random_from_rng(rand_core::OsRng);
                let peer_public = PublicKey::from(&peer);
                let expected = peer.diffie_hellman(&token_public);
                let before = read_counters(state);
                let raw = derive(&session, private, peer_public.as_bytes(), None).unwrap();
                let after = read_counters(state);
                assert_eq!(raw, expected.as_bytes(), "round {round}: raw peer key");
                assert_eq!(
                    after.ecdh - before.ecdh,
                    1,
                    "exactly one ECDH on the chip per derive"
                );
                assert_eq!(
                    after.apdus - before.apdus,
                    2,
                    "and no other chip round trip than reading the public key (the handle's \
                     key must still be the one it was made for)"
                );
                let mut der = vec![0x04, 0x20];
                der.extend_from_slice(peer_public.as_bytes());
                assert_eq!(
                    derive(&session, private, &der, None).unwrap(),
                    expected.as_bytes(),
                    "DER peer key"
                );
                assert_eq!(
                    derive(&session, private, &der, Some(16)).unwrap(),
                    &expected.as_bytes()[..16]
                );
            }
        },
    );
}

#[test]
fn derive_refusals() {
    isolated("derive_refusals", "", |_, state| {
        let pkcs11 = init();
        let session = rw_session(&pkcs11);
        let (public, private) = generate(&session, "wg0", None);
        let peer = PublicKey::from(&StaticSecret::random_from_rng(rand_core::OsRng));
        // A low-order point gives all zeros: refused (after the one ECDH that found out).
        assert_eq!(
            rv(derive(&session, private, &[0u8; 32], None)),
            RvError::FunctionFailed
        );
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(
            rv(derive(&session, private, &one, None)),
            RvError::FunctionFailed
        );
        // Wrong base key, wrong peer lengths, too long a value: refused before the chip is used.
        let before = read_counters(state).ecdh;
        assert_eq!(
            rv(derive(&session, public, peer.as_bytes(), None)),
            RvError::KeyTypeInconsistent
        );
        assert_eq!(
            rv(derive(&session, private, &peer.as_bytes()[..31], None)),
            RvError::MechanismParamInvalid
        );
        assert_eq!(
            rv(derive(&session, private, &[0x04, 0x21, 0, 0], None)),
            RvError::MechanismParamInvalid
        );
        assert_eq!(
            rv(derive(&session, private, peer.as_bytes(), Some(33))),
            RvError::TemplateInconsistent
        );
        assert_eq!(
            read_counters(state).ecdh,
            before,
            "no ECDH for refused calls"
        );
        // A sensitive derived key does not reveal its value.
        let mechanism =
            Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), peer.as_bytes()));
        let secret = session
            .derive_key(
                &mechanism,
                private,
                &[Attribute::Sensitive(true), Attribute::ValueLen(32.into())],
            )
            .unwrap();
        let info = session
            .get_attribute_info(secret, &[AttributeType::Value])
            .unwrap();
        assert_eq!(
            format!("{info:?}"),
            format!("{:?}", [AttributeInfo::Sensitive])
        );
        assert_eq!(
            session
                .get_attributes(secret, &[AttributeType::KeyType, AttributeType::ValueLen])
                .unwrap(),
            vec![
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::ValueLen(32.into())
            ]
        );
        session.destroy_object(secret).unwrap();
        assert_eq!(
            rv(session.destroy_object(secret)),
            RvError::ObjectHandleInvalid
        );
        // Key generation refusals.
        let sign = session.generate_key_pair(
            &Mechanism::EccMontgomeryKeyPairGen,
            &[Attribute::EcParams(OID_X25519.to_vec())],
            &[Attribute::Sign(true)],
        );
        assert_eq!(rv(sign), RvError::AttributeValueInvalid);
        let p256 = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
        let curve = session.generate_key_pair(
            &Mechanism::EccMontgomeryKeyPairGen,
            &[Attribute::EcParams(p256.to_vec())],
            &[],
        );
        assert_eq!(rv(curve), RvError::CurveNotSupported);
        let slot = pkcs11.get_slots_with_token().unwrap()[0];
        let ro = pkcs11.open_ro_session(slot).unwrap();
        let in_ro = ro.generate_key_pair(
            &Mechanism::EccMontgomeryKeyPairGen,
            &[Attribute::EcParams(OID_X25519.to_vec())],
            &[],
        );
        assert_eq!(rv(in_ro), RvError::SessionReadOnly);
        // But derivation works in a read-only session.
        derive(&ro, private, peer.as_bytes(), None).unwrap();
        // Signing exists (P-256, Ed25519) but not with a digest mechanism, nor with X25519.
        assert_eq!(
            rv(ro.sign(&Mechanism::Sha256, private, b"x")),
            RvError::MechanismInvalid
        );
        assert_eq!(
            rv(ro.sign(&Mechanism::Ecdsa, private, &[0; 32])),
            RvError::KeyTypeInconsistent
        );
    });
}

#[test]
fn labels_ids_find_set_and_destroy() {
    isolated("labels_ids_find_set_and_destroy", "", |_, _| {
        let pkcs11 = init();
        let session = rw_session(&pkcs11);
        let (_, a_priv) = generate(&session, "alpha", Some(b"id-alpha"));
        let (b_pub, b_priv) = generate(&session, "beta", Some(&[0x10, 0x00, 0x00, 0x42]));
        let find = |t: Vec<Attribute>| session.find_objects(&t).unwrap();
        assert_eq!(find(vec![Attribute::Label(b"alpha".to_vec())]).len(), 2);
        assert_eq!(
            find(vec![
                Attribute::Label(b"alpha".to_vec()),
                Attribute::Class(ObjectClass::PRIVATE_KEY)
            ]),
            vec![a_priv]
        );
        assert_eq!(
            find(vec![
                Attribute::Id(vec![0x10, 0, 0, 0x42]),
                Attribute::Class(ObjectClass::PUBLIC_KEY)
            ]),
            vec![b_pub]
        );
        assert_eq!(
            find(vec![Attribute::KeyType(KeyType::EC_MONTGOMERY)]).len(),
            4
        );
        assert!(find(vec![Attribute::Label(b"gamma".to_vec())]).is_empty());
        // A public key is found by its point given raw or DER-wrapped.
        let point = public_key(&session, b_pub).to_vec();
        assert_eq!(find(vec![Attribute::EcPoint(point.clone())]), vec![b_pub]);
        let der = [&[0x04, 0x20][..], &point].concat();
        assert_eq!(find(vec![Attribute::EcPoint(der)]), vec![b_pub]);
        // A 4-byte CKA_ID names the object id: asking for it again is refused.
        let again = session.generate_key_pair(
            &Mechanism::EccMontgomeryKeyPairGen,
            &[
                Attribute::EcParams(OID_X25519.to_vec()),
                Attribute::Id(vec![0x10, 0, 0, 0x42]),
            ],
            &[],
        );
        assert_eq!(rv(again), RvError::AttributeValueInvalid);
        // Label and id changes apply to both halves.
        session
            .update_attributes(
                b_priv,
                &[
                    Attribute::Label(b"gamma".to_vec()),
                    Attribute::Id(b"new".to_vec()),
                ],
            )
            .unwrap();
        assert_eq!(
            find(vec![
                Attribute::Label(b"gamma".to_vec()),
                Attribute::Id(b"new".to_vec())
            ])
            .len(),
            2
        );
        assert_eq!(
            rv(session.update_attributes(b_priv, &[Attribute::Derive(false)])),
            RvError::AttributeReadOnly
        );
        // Each half is its own object: destroying the public half leaves the private one
        // (its handle included); destroying that too removes the pair from the chip.
        session.destroy_object(b_pub).unwrap();
        assert_eq!(
            find(vec![Attribute::Label(b"gamma".to_vec())]),
            vec![b_priv]
        );
        assert_eq!(
            rv(session.get_attributes(b_pub, &[AttributeType::Label])),
            RvError::ObjectHandleInvalid
        );
        session.destroy_object(b_priv).unwrap();
        assert!(find(vec![Attribute::Label(b"gamma".to_vec())]).is_empty());
        assert_eq!(
            rv(session.get_attributes(b_priv, &[AttributeType::Label])),
            RvError::ObjectHandleInvalid
        );
        assert_eq!(
            find(vec![Attribute::KeyType(KeyType::EC_MONTGOMERY)]).len(),
            2
        );
    });
}

#[test]
fn labels_persist_on_the_chip_across_processes() {
    const NAME: &str = "labels_persist_on_the_chip_across_processes";
    match role(NAME).as_deref() {
        None => {
            let chip = TestChip::new("");
            run_role(NAME, "generate", &chip, &[]);
            run_role(NAME, "check", &chip, &[]);
        }
        Some("generate") => {
            let pkcs11 = init();
            let session = rw_session(&pkcs11);
            let (_, private) = generate(&session, "first", Some(b"persisted"));
            session
                .update_attributes(private, &[Attribute::Label(b"renamed".to_vec())])
                .unwrap();
        }
        Some("check") => {
            let pkcs11 = init();
            let session = rw_session(&pkcs11);
            let template = [
                Attribute::Label(b"renamed".to_vec()),
                Attribute::Id(b"persisted".to_vec()),
            ];
            let found = session.find_objects(&template).unwrap();
            assert_eq!(
                found.len(),
                2,
                "label and id read back from the chip by a new process"
            );
        }
        Some(other) => panic!("unknown role {other}"),
    }
}

#[test]
fn many_threads_derive_at_once() {
    isolated("many_threads_derive_at_once", "", |_, state| {
        let pkcs11 = init();
        let session = rw_session(&pkcs11);
        let (public, private) = generate(&session, "wg0", None);
        let token_public = PublicKey::from(public_key(&session, public));
        let before = read_counters(state).ecdh;
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    let slot = pkcs11.get_slots_with_token().unwrap()[0];
                    let session = pkcs11.open_ro_session(slot).unwrap();
                    for _ in 0..10 {
                        let peer = StaticSecret::random_from_rng(rand_core::OsRng);
                        let got =
                            derive(&session, private, PublicKey::from(&peer).as_bytes(), None)
                                .unwrap();
                        assert_eq!(got, peer.diffie_hellman(&token_public).as_bytes());
                    }
                });
            }
        });
        assert_eq!(read_counters(state).ecdh - before, 80);
    });
}

#[test]
fn two_processes_share_one_chip() {
    const NAME: &str = "two_processes_share_one_chip";
    match role(NAME).as_deref() {
        None => {
            let chip = TestChip::new("");
            run_role(NAME, "setup", &chip, &[]);
            let spawn = |n: &str| {
                harness::role_command(NAME, "worker", &chip, &[("WORKER", n)])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn worker")
            };
            let (a, b) = (spawn("a"), spawn("b"));
            for child in [a, b] {
                harness::check_child(NAME, child.wait_with_output().unwrap());
            }
            run_role(NAME, "check", &chip, &[]);
        }
        Some("setup") => {
            let pkcs11 = init();
            generate(&rw_session(&pkcs11), "shared", None);
        }
        Some("worker") => two_process_worker(),
        Some("check") => {
            let pkcs11 = init();
            let session = rw_session(&pkcs11);
            for label in ["shared", "own-a", "own-b"] {
                let found = session
                    .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
                    .unwrap();
                assert_eq!(found.len(), 2, "{label}");
            }
        }
        Some(other) => panic!("unknown role {other}"),
    }
}

/// One of two processes deriving with the same chip key at once, and making a key of its own.
fn two_process_worker() {
    let name = std::env::var("WORKER").unwrap();
    let pkcs11 = init();
    let session = rw_session(&pkcs11);
    let shared = |class| {
        session
            .find_objects(&[
                Attribute::Label(b"shared".to_vec()),
                Attribute::Class(class),
            ])
            .unwrap()
    };
    let (private, public) = (
        shared(ObjectClass::PRIVATE_KEY),
        shared(ObjectClass::PUBLIC_KEY),
    );
    assert_eq!(
        (private.len(), public.len()),
        (1, 1),
        "the key made by another process is visible"
    );
    let token_public = PublicKey::from(public_key(&session, public[0]));
    for i in 0..20 {
        let peer = StaticSecret::random_from_rng(rand_core::OsRng);
        let got = derive(
            &session,
            private[0],
            PublicKey::from(&peer).as_bytes(),
            None,
        )
        .unwrap();
        assert_eq!(got, peer.diffie_hellman(&token_public).as_bytes());
        if i == 10 {
            generate(&session, &format!("own-{name}"), None);
        }
    }
}

#[test]
fn finalize_and_initialize_again() {
    isolated("finalize_and_initialize_again", "", |_, _| {
        let pkcs11 = Pkcs11::new(module_path()).unwrap();
        pkcs11
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        assert_eq!(
            rv(pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))),
            RvError::CryptokiAlreadyInitialized
        );
        let (public, private) = {
            let session = rw_session(&pkcs11);
            generate(&session, "survivor", None)
        };
        pkcs11.finalize().unwrap();
        // A new context on the same module: everything starts from scratch but the chip.
        let pkcs11 = init();
        let session = rw_session(&pkcs11);
        let found = session
            .find_objects(&[Attribute::Label(b"survivor".to_vec())])
            .unwrap();
        assert!(
            found.contains(&public) && found.contains(&private),
            "handles are stable: {found:?}"
        );
        let peer = StaticSecret::random_from_rng(rand_core::OsRng);
        let token_public = PublicKey::from(public_key(&session, public));
        let got = derive(&session, private, PublicKey::from(&peer).as_bytes(), None).unwrap();
        assert_eq!(got, peer.diffie_hellman(&token_public).as_bytes());
        // No user PIN on this token: no login needed, and none possible (PKCS#11).
        assert_eq!(
            rv(session.login(UserType::User, Some(&AuthPin::new("1234".into())))),
            RvError::UserPinNotInitialized
        );
        assert_eq!(rv(session.logout()), RvError::UserNotLoggedIn);
        assert_eq!(session.generate_random_vec(48).unwrap().len(), 48);
        assert_ne!(
            session.generate_random_vec(32).unwrap(),
            session.generate_random_vec(32).unwrap()
        );
    });
}

#[test]
fn raw_ec_point_config() {
    isolated("raw_ec_point_config", "ec_point = \"raw\"", |_, _| {
        let pkcs11 = init();
        let session = rw_session(&pkcs11);
        let (public, private) = generate(&session, "raw", None);
        let attrs = session
            .get_attributes(public, &[AttributeType::EcPoint])
            .unwrap();
        let Attribute::EcPoint(point) = &attrs[0] else {
            panic!()
        };
        assert_eq!(point.len(), 32, "raw 32 bytes with ec_point = \"raw\"");
        let peer = StaticSecret::random_from_rng(rand_core::OsRng);
        let got = derive(&session, private, PublicKey::from(&peer).as_bytes(), None).unwrap();
        assert_eq!(
            got,
            peer.diffie_hellman(&PublicKey::from(
                <[u8; 32]>::try_from(point.as_slice()).unwrap()
            ))
            .as_bytes()
        );
    });
}

#[test]
fn bad_config_fails_initialize_with_a_clear_message() {
    const NAME: &str = "bad_config_fails_initialize_with_a_clear_message";
    if role(NAME).is_some() {
        let pkcs11 = Pkcs11::new(module_path()).unwrap();
        let result = pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
        assert_eq!(rv(result), RvError::GeneralError);
        return;
    }
    let chip = TestChip::new("");
    std::fs::write(&chip.conf, "transport = \"usb\"\n").unwrap();
    let output = harness::role_command(NAME, "body", &chip, &[])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    harness::check_child(NAME, output);
    let conf = chip.conf.to_str().unwrap();
    assert!(
        stderr.contains("transport") && stderr.contains("usb") && stderr.contains(conf),
        "{stderr}"
    );
}

/// Pairs made by other tools (here: straight through the applet layer) appear with a label and
/// id derived from their object id; foreign binary files, even in the metadata range, are not
/// misread as labels.
#[test]
fn pairs_created_by_other_tools_are_visible() {
    isolated(
        "pairs_created_by_other_tools_are_visible",
        "",
        |_, state| {
            use pkcs11_se050::applet::ObjectId;
            use pkcs11_se050::device::{open, Transport};
            {
                let mut se050 = open(&Transport::Virtual {
                    state: state.to_path_buf(),
                    latency: Duration::ZERO,
                })
                .unwrap();
                se050
                    .generate_x25519(ObjectId::new(0x2018_1001).unwrap())
                    .unwrap();
                se050
                    .write_binary(ObjectId::new(0x7B18_1001).unwrap(), b"P11K not a record")
                    .unwrap();
                se050
                    .write_binary(ObjectId::new(0x0000_0100).unwrap(), &[0u8; 300])
                    .unwrap();
            }
            let pkcs11 = init();
            let session = rw_session(&pkcs11);
            let found = session
                .find_objects(&[Attribute::Label(b"se050:20181001".to_vec())])
                .unwrap();
            assert_eq!(found.len(), 2, "private and public of the foreign pair");
            let ids = session
                .find_objects(&[Attribute::Id(vec![0x20, 0x18, 0x10, 0x01])])
                .unwrap();
            assert_eq!(ids.len(), 2);
            let all = session.find_objects(&[]).unwrap();
            assert_eq!(all.len(), 2, "binary files are not keys: {all:?}");
            let private = session
                .find_objects(&[
                    Attribute::Label(b"se050:20181001".to_vec()),
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                ])
                .unwrap()[0];
            let attrs = session
                .get_attributes(private, &[AttributeType::Local])
                .unwrap();
            assert_eq!(
                attrs,
                vec![Attribute::Local(false)],
                "origin unknown for foreign pairs"
            );
            // Giving it a label writes a record; the key works.
            session
                .update_attributes(private, &[Attribute::Label(b"adopted".to_vec())])
                .unwrap();
            assert_eq!(
                session
                    .find_objects(&[Attribute::Label(b"adopted".to_vec())])
                    .unwrap()
                    .len(),
                2
            );
            let peer = StaticSecret::random_from_rng(rand_core::OsRng);
            derive(&session, private, PublicKey::from(&peer).as_bytes(), None).unwrap();
        },
    );
}

/// Another program deletes a key this process has cached: the next derive reports the handle
/// invalid (no wrong answer, no stale success), and a new search no longer shows it.
#[test]
fn key_deleted_elsewhere_is_noticed() {
    isolated("key_deleted_elsewhere_is_noticed", "", |_, state| {
        use pkcs11_se050::applet::ObjectId;
        use pkcs11_se050::device::{open, Transport};
        let pkcs11 = init();
        let session = rw_session(&pkcs11);
        let (_, private) = generate(&session, "doomed", Some(&[0x10, 0, 0, 7]));
        let peer = PublicKey::from(&StaticSecret::random_from_rng(rand_core::OsRng));
        derive(&session, private, peer.as_bytes(), None).unwrap();
        // Another link to the same chip, as another process would have.
        let mut other = open(&Transport::Virtual {
            state: state.to_path_buf(),
            latency: Duration::ZERO,
        })
        .unwrap();
        other.delete(ObjectId::new(0x1000_0007).unwrap()).unwrap();
        assert_eq!(
            rv(derive(&session, private, peer.as_bytes(), None)),
            RvError::KeyHandleInvalid
        );
        assert!(session
            .find_objects(&[Attribute::Label(b"doomed".to_vec())])
            .unwrap()
            .is_empty());
        // A pair created elsewhere shows up at the next search.
        other
            .generate_x25519(ObjectId::new(0x1000_0008).unwrap())
            .unwrap();
        assert_eq!(
            session
                .find_objects(&[Attribute::Id(vec![0x10, 0, 0, 8])])
                .unwrap()
                .len(),
            2
        );
        // A new pair at the deleted key's id gets its own label, not the stale record's.
        drop(other);
        generate(&session, "reborn", Some(&[0x10, 0, 0, 7]));
        assert_eq!(
            session
                .find_objects(&[Attribute::Label(b"reborn".to_vec())])
                .unwrap()
                .len(),
            2
        );
        assert!(session
            .find_objects(&[Attribute::Label(b"doomed".to_vec())])
            .unwrap()
            .is_empty());
    });
}

/// With a simulated 40 ms chip a derive waits for the chip (it really is asked each time) and
/// comes back (no hang).
#[test]
fn derive_waits_for_a_slow_chip() {
    isolated(
        "derive_waits_for_a_slow_chip",
        "virtual_latency_ms = 40",
        |_, _| {
            let pkcs11 = init();
            let session = rw_session(&pkcs11);
            let (_, private) = generate(&session, "slow", None);
            let peer = PublicKey::from(&StaticSecret::random_from_rng(rand_core::OsRng));
            derive(&session, private, peer.as_bytes(), None).unwrap();
            let start = Instant::now();
            derive(&session, private, peer.as_bytes(), None).unwrap();
            let took = start.elapsed();
            // The chip really was asked (a cache would answer at once); that it was asked
            // exactly once is counted, not timed, in
            // derive_agrees_with_x25519_dalek_for_raw_and_der_peer_keys.
            assert!(took >= Duration::from_millis(40), "{took:?}");
        },
    );
}

/// The chip's lock file is shared by every user of the module (0666), so any local process can
/// hold it. Such a hold must not hang a call: C_DeriveKey fails with CKR_DEVICE_ERROR once the
/// configured wait has passed, and the log line names the lock file and the process holding it.
/// Once the lock is free, the same session derives again.
#[test]
fn a_held_lock_fails_derive_in_bounded_time_and_names_its_holder() {
    const NAME: &str = "a_held_lock_fails_derive_in_bounded_time_and_names_its_holder";
    match role(NAME).as_deref() {
        None => {
            let chip = TestChip::new("lock_timeout_ms = 300");
            let output = harness::role_command(NAME, "body", &chip, &[])
                .output()
                .expect("run the test child");
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            harness::check_child(NAME, output);
            let lock = format!("{}.lock", chip.state.display());
            let line = stderr
                .lines()
                .find(|l| l.contains("CKR_DEVICE_ERROR"))
                .unwrap_or_else(|| panic!("no CKR_DEVICE_ERROR log line in:\n{stderr}"));
            assert!(
                line.contains(&lock)
                    && line.contains("held by another process after 300 ms")
                    && line.contains("held by process")
                    && line.contains("this process"),
                "{line}"
            );
        }
        Some("body") => {
            let state = std::path::PathBuf::from(std::env::var("PKCS11_E2E_STATE").unwrap());
            let pkcs11 = init();
            let session = rw_session(&pkcs11);
            let (public, private) = generate(&session, "locked-out", None);
            let token_public = PublicKey::from(public_key(&session, public));
            let peer = StaticSecret::random_from_rng(rand_core::OsRng);
            let peer_public = PublicKey::from(&peer);

            // Another open file description of the lock file, as another process would have.
            let lock = pkcs11_se050::device::lock::DeviceLock::open(
                &pkcs11_se050::device::lock::state_lock_path(&state),
            )
            .unwrap();
            let held = lock.acquire().unwrap();
            let started = Instant::now();
            let err = rv(derive(&session, private, peer_public.as_bytes(), None));
            let waited = started.elapsed();
            assert_eq!(err, RvError::DeviceError);
            assert!(
                waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
                "C_DeriveKey returned after {waited:?} with lock_timeout_ms = 300"
            );
            drop(held);
            let got = derive(&session, private, peer_public.as_bytes(), None).unwrap();
            assert_eq!(got, peer.diffie_hellman(&token_public).as_bytes());
        }
        Some(other) => panic!("unknown role {other}"),
    }
}
