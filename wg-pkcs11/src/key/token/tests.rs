use super::*;

/// The real libpkcs11_se050.so of this build on a virtual SE050 without added latency, shared
/// by every test here (a module is initialised once per process).
fn se050_module() -> PathBuf {
    super::virtual_se050_module::virtual_se050_module(0)
}

/// Token tests share the module's sessions; the one that closes them all runs alone.
static TOKEN_TESTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn uri(path_part: &str) -> Pkcs11Uri {
    let text = format!(
        "pkcs11:{path_part}?module-path={}",
        se050_module().display()
    );
    Pkcs11Uri::parse(&text).unwrap()
}

fn peer() -> (x25519_dalek::StaticSecret, [u8; 32]) {
    let secret = x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng);
    let public = *x25519_dalek::PublicKey::from(&secret).as_bytes();
    (secret, public)
}

#[test]
fn genkey_pubkey_and_dh_agree_with_x25519_dalek() {
    let _shared = TOKEN_TESTS.read().unwrap_or_else(|e| e.into_inner());
    let uri = uri("token=SE050;object=wg-dh");
    let generated = genkey(&uri).unwrap();
    assert_eq!(pubkey(&uri).unwrap(), generated);
    let key = TokenKey::open(&uri).unwrap();
    assert_eq!(key.public_key(), generated);
    assert!(key.description().contains("wg-dh"), "{}", key.description());
    // Several DHs on the one session, each against an independent software X25519.
    for _ in 0..3 {
        let (secret, public) = peer();
        let ours = key.diffie_hellman(&public).unwrap();
        let theirs = secret.diffie_hellman(&x25519_dalek::PublicKey::from(generated));
        assert_eq!(*ours, *theirs.as_bytes());
    }
    // The derived secrets did not stay behind in the token.
    let context = module_context(&se050_module()).unwrap();
    let slot = context.get_slots_with_token().unwrap()[0];
    let session = context.open_ro_session(slot).unwrap();
    let secrets = session
        .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
        .unwrap();
    assert!(
        secrets.is_empty(),
        "{} derived secret objects left behind",
        secrets.len()
    );
}

#[test]
fn dh_from_many_threads() {
    let _shared = TOKEN_TESTS.read().unwrap_or_else(|e| e.into_inner());
    let uri = uri("object=wg-threads");
    let public = genkey(&uri).unwrap();
    let key = Arc::new(TokenKey::open(&uri).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let key = key.clone();
            std::thread::spawn(move || {
                let (secret, peer_public) = peer();
                let ours = key.diffie_hellman(&peer_public).unwrap();
                let theirs = secret.diffie_hellman(&x25519_dalek::PublicKey::from(public));
                assert_eq!(*ours, *theirs.as_bytes());
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn low_order_peer_key_is_refused() {
    let _shared = TOKEN_TESTS.read().unwrap_or_else(|e| e.into_inner());
    let uri = uri("object=wg-low-order");
    genkey(&uri).unwrap();
    let key = TokenKey::open(&uri).unwrap();
    // The all-zero point and the order-8 point of RFC 7748's list: the DH result is zero.
    for bad in [[0u8; 32], {
        let mut p = [0u8; 32];
        p[0] = 1;
        p
    }] {
        assert!(
            key.diffie_hellman(&bad).is_err(),
            "low-order point accepted"
        );
    }
    // And the key still works afterwards.
    let (_, public) = peer();
    assert!(key.diffie_hellman(&public).is_ok());
}

#[test]
fn key_by_id_and_private_key_stays_inside() {
    let _shared = TOKEN_TESTS.read().unwrap_or_else(|e| e.into_inner());
    let uri_by_id = uri("id=%57%47%01;object=wg-by-id");
    let public = genkey(&uri_by_id).unwrap();
    let only_id = uri("id=%57%47%01");
    let key = TokenKey::open(&only_id).unwrap();
    assert_eq!(key.public_key(), public);
    let live = key.live.lock().unwrap();
    let live = live.as_ref().unwrap();
    let attributes = live
        .session
        .get_attributes(
            live.private_key,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Derive,
            ],
        )
        .unwrap();
    assert!(
        attributes.contains(&Attribute::Sensitive(true)),
        "{attributes:?}"
    );
    assert!(
        attributes.contains(&Attribute::Extractable(false)),
        "{attributes:?}"
    );
    assert!(
        attributes.contains(&Attribute::Derive(true)),
        "{attributes:?}"
    );
    let value = live
        .session
        .get_attributes(live.private_key, &[AttributeType::Value]);
    assert!(
        !matches!(value.as_deref(), Ok([Attribute::Value(_)])),
        "the private value came out: {value:?}"
    );
}

/// Close every session of the slot behind the key's back, as a token reset would.
fn close_all_sessions(module: &Path, slot: u64) {
    let path = std::ffi::CString::new(module.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: RTLD_NOLOAD only returns the handle of the library cryptoki already loaded;
    // C_CloseAllSessions has the PKCS#11 signature CK_RV (*)(CK_SLOT_ID), called with a
    // slot id the module reported.
    unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        assert!(!handle.is_null(), "module not loaded");
        let symbol = libc::dlsym(handle, c"C_CloseAllSessions".as_ptr());
        assert!(!symbol.is_null());
        let close: extern "C" fn(libc::c_ulong) -> libc::c_ulong = std::mem::transmute(symbol);
        assert_eq!(close(slot as libc::c_ulong), 0, "C_CloseAllSessions failed");
        libc::dlclose(handle);
    }
}

#[test]
fn a_lost_session_is_reopened() {
    let uri = uri("object=wg-reopen");
    let public = genkey(&uri).unwrap();
    let key = TokenKey::open(&uri).unwrap();
    let handle = |key: &TokenKey| key.live.lock().unwrap().as_ref().unwrap().session.handle();
    let before = handle(&key);
    {
        // No other test may hold a session while they are all closed.
        let _exclusive = TOKEN_TESTS.write().unwrap_or_else(|e| e.into_inner());
        close_all_sessions(&se050_module(), key.slot.id());
    }
    let (secret, peer_public) = peer();
    let ours = key
        .diffie_hellman(&peer_public)
        .expect("DH after the session was closed");
    let theirs = secret.diffie_hellman(&x25519_dalek::PublicKey::from(public));
    assert_eq!(*ours, *theirs.as_bytes());
    let after = handle(&key);
    assert_ne!(before, after, "the DH did not run on a new session");
}

#[test]
fn errors_name_what_is_missing() {
    let _shared = TOKEN_TESTS.read().unwrap_or_else(|e| e.into_inner());
    let uri_a = uri("object=wg-errors");
    genkey(&uri_a).unwrap();
    let again = genkey(&uri_a).unwrap_err();
    assert!(again.0.contains("already has a private key"), "{again}");
    let missing = TokenKey::open(&uri("object=wg-no-such-key")).unwrap_err();
    assert!(
        missing.0.contains("no X25519 private key matching")
            && missing.0.contains("wg-no-such-key"),
        "{missing}"
    );
    let wrong_token = TokenKey::open(&uri("token=NotThere;object=wg-errors")).unwrap_err();
    assert!(
        wrong_token.0.contains("tokens present: `SE050`"),
        "{wrong_token}"
    );
    let wrong_library =
        TokenKey::open(&uri("library-manufacturer=Nobody;object=wg-errors")).unwrap_err();
    assert!(
        wrong_library.0.contains("library attributes"),
        "{wrong_library}"
    );
}

#[test]
fn ec_point_forms() {
    let key = [7u8; 32];
    assert_eq!(parse_ec_point(&key).unwrap(), key);
    let mut der = vec![0x04, 0x20];
    der.extend_from_slice(&key);
    assert_eq!(parse_ec_point(&der).unwrap(), key);
    assert!(parse_ec_point(&der[..33])
        .unwrap_err()
        .0
        .contains("33 bytes"));
    assert!(parse_ec_point(&[]).is_err());
    let mut wrong_tag = der.clone();
    wrong_tag[0] = 0x03;
    assert!(parse_ec_point(&wrong_tag).is_err());
}

#[test]
fn missing_module_is_named() {
    let uri = Pkcs11Uri::parse("pkcs11:object=k?module-path=/nonexistent/libnothing.so").unwrap();
    let e = TokenKey::open(&uri).unwrap_err();
    assert!(e.0.contains("/nonexistent/libnothing.so"), "{e}");
}

#[test]
fn refuses_non_private_type_and_genkey_without_name() {
    let e = TokenKey::open(&Pkcs11Uri::parse("pkcs11:object=k;type=public").unwrap()).unwrap_err();
    assert!(e.0.contains("type=private"), "{e}");
    let e = genkey(&Pkcs11Uri::parse("pkcs11:token=x").unwrap()).unwrap_err();
    assert!(e.0.contains("object=LABEL or id=ID"), "{e}");
}

/// A module that loads but has no tokens: p11-kit's proxy with OpenSC and no readers.
#[test]
fn no_token_lists_what_is_there() {
    // OpenSC of this build's architecture (opensc-pkcs11:ARCH; scripts/install-deps).
    let opensc = format!("{}/opensc-pkcs11.so", crate::multiarch::pkcs11_module_dir());
    assert!(
        std::path::Path::new(&opensc).is_file(),
        "{opensc} is missing: scripts/install-deps installs OpenSC for this architecture"
    );
    let uri = Pkcs11Uri::parse(&format!(
        "pkcs11:token=NoSuchToken;object=k?module-path={opensc}"
    ))
    .unwrap();
    let e = TokenKey::open(&uri).unwrap_err();
    assert!(e.0.contains("no token matches"), "{e}");
    assert!(e.0.contains("NoSuchToken"), "{e}");
}
