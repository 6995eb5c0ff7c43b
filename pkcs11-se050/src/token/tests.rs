//! The token layer on the real virtual SE050 (a temporary state file), without the C ABI.

use super::attributes::{ulong_value, Template};
use super::handles::{split_handle, Half};
use super::{DeriveParams, Token};
use crate::config::Config;
use pkcs11_sys::*;
use x25519_dalek::{PublicKey, StaticSecret};

type Entries = Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>;

fn token(dir: &tempfile::TempDir) -> Token {
    let text = format!(
        "transport = \"virtual\"\nvirtual_state = \"{}\"\n",
        dir.path().join("chip.state").display()
    );
    let config = Config::parse(&text, None).unwrap();
    Token::open(config, Box::new(super::open_chip)).unwrap()
}

fn params() -> Vec<u8> {
    vec![0x06, 0x03, 0x2B, 0x65, 0x6E]
}

fn generate(
    t: &Token,
    s: CK_SESSION_HANDLE,
    public: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
    private: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
) -> super::error::Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
    t.generate_key_pair(
        s,
        CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
        &Template::new(public),
        &Template::new(private),
    )
}

fn value(t: &Token, s: CK_SESSION_HANDLE, h: CK_OBJECT_HANDLE, a: CK_ATTRIBUTE_TYPE) -> Vec<u8> {
    let answer = t.attributes(s, h, &[a]).unwrap().remove(0);
    match answer.revealed() {
        Some(v) => v.to_vec(),
        None => panic!("{answer:?}"),
    }
}

fn find(
    t: &Token,
    s: CK_SESSION_HANDLE,
    template: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
) -> Vec<CK_OBJECT_HANDLE> {
    t.find_init(s, &Template::new(template)).unwrap();
    let found = t.find_next(s, 100).unwrap();
    t.find_final(s).unwrap();
    found
}

#[test]
fn two_views_of_one_chip_share_keys_labels_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (token(&dir), token(&dir));
    let sa = a
        .open_session(0, CKF_SERIAL_SESSION | CKF_RW_SESSION)
        .unwrap();
    let sb = b
        .open_session(0, CKF_SERIAL_SESSION | CKF_RW_SESSION)
        .unwrap();
    // Debian 12 pkcs11-tool's malformed curve name is accepted.
    let (public, private) = generate(
        &a,
        sa,
        vec![
            (CKA_EC_PARAMS, b"\x13\x0bcurve25519".to_vec()),
            (CKA_LABEL, b"wg0".to_vec()),
        ],
        vec![(CKA_DERIVE, vec![1]), (CKA_LABEL, b"wg0".to_vec())],
    )
    .unwrap();
    assert_eq!(split_handle(private), Some(Half::Private));
    let point = value(&a, sa, public, CKA_EC_POINT);
    let token_public = PublicKey::from(<[u8; 32]>::try_from(&point[2..]).unwrap());

    // The other view finds it by label, and its derive agrees with x25519-dalek.
    let found = find(
        &b,
        sb,
        vec![
            (CKA_LABEL, b"wg0".to_vec()),
            (CKA_CLASS, ulong_value(CKO_PRIVATE_KEY)),
        ],
    );
    // Handles are numbered per process: b has its own for the same key.
    assert_eq!(found.len(), 1);
    let b_private = found[0];
    assert_eq!(split_handle(b_private), Some(Half::Private));
    let peer = StaticSecret::random_from_rng(rand_core::OsRng);
    let derive = DeriveParams {
        kdf: CKD_NULL,
        shared_data: vec![],
        public_data: PublicKey::from(&peer).as_bytes().to_vec(),
    };
    let secret = b
        .derive(
            sb,
            CKM_ECDH1_DERIVE,
            Some(&derive),
            b_private,
            &Template::default(),
        )
        .unwrap();
    assert_eq!(
        value(&b, sb, secret, CKA_VALUE),
        peer.diffie_hellman(&token_public).as_bytes()
    );

    // A label set through one view is read from the chip by the other.
    b.set_attributes(
        sb,
        b_private,
        &Template::new(vec![(CKA_LABEL, b"renamed".to_vec())]),
    )
    .unwrap();
    assert_eq!(
        find(&a, sa, vec![(CKA_LABEL, b"renamed".to_vec())]).len(),
        2
    );

    // Deleted through one view (private half, then public half, as cleanup code does): the
    // other's derive fails cleanly, its search drops it.
    a.destroy(sa, private).unwrap();
    a.destroy(sa, public).unwrap();
    let gone = b.derive(
        sb,
        CKM_ECDH1_DERIVE,
        Some(&derive),
        b_private,
        &Template::default(),
    );
    assert_eq!(gone.unwrap_err().rv(), CKR_KEY_HANDLE_INVALID);
    assert!(find(&b, sb, vec![])
        .iter()
        .all(|h| split_handle(*h).is_none()));
    // The metadata record went with the key: only derived secrets remain anywhere.
    let mut cache = a.cache.lock();
    a.refresh(&mut cache).unwrap();
    assert!(cache.pairs.is_empty());
    assert_eq!(
        cache.ids().filter(|id| *id < 0x7FFF_0000).count(),
        0,
        "no record left behind on the chip"
    );
}

#[test]
fn key_generation_templates_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir);
    let s = t
        .open_session(0, CKF_SERIAL_SESSION | CKF_RW_SESSION)
        .unwrap();
    let ec = || (CKA_EC_PARAMS, params());
    let cases: Vec<(Entries, Entries, CK_RV)> = vec![
        (vec![], vec![], CKR_TEMPLATE_INCOMPLETE),
        (
            vec![ec(), (CKA_VERIFY, vec![1])],
            vec![],
            CKR_ATTRIBUTE_VALUE_INVALID,
        ),
        (
            vec![ec()],
            vec![(CKA_SIGN, vec![1])],
            CKR_ATTRIBUTE_VALUE_INVALID,
        ),
        (
            vec![ec()],
            vec![(CKA_EXTRACTABLE, vec![1])],
            CKR_ATTRIBUTE_VALUE_INVALID,
        ),
        (
            vec![ec()],
            vec![(CKA_DERIVE, vec![0])],
            CKR_ATTRIBUTE_VALUE_INVALID,
        ),
        (
            vec![ec(), (CKA_TOKEN, vec![0])],
            vec![],
            CKR_ATTRIBUTE_VALUE_INVALID,
        ),
        (
            vec![ec(), (CKA_LABEL, b"a".to_vec())],
            vec![(CKA_LABEL, b"b".to_vec())],
            CKR_TEMPLATE_INCONSISTENT,
        ),
        (
            vec![ec(), (CKA_KEY_TYPE, ulong_value(CKK_EC))],
            vec![],
            CKR_TEMPLATE_INCONSISTENT,
        ),
        (
            vec![ec(), (CKA_CLASS, ulong_value(CKO_PRIVATE_KEY))],
            vec![],
            CKR_TEMPLATE_INCONSISTENT,
        ),
        (
            vec![ec(), (CKA_MODULUS_BITS, ulong_value(2048))],
            vec![],
            CKR_ATTRIBUTE_TYPE_INVALID,
        ),
        (
            vec![(CKA_EC_PARAMS, vec![0x06, 0x03, 0x2B, 0x65, 0x70])],
            vec![],
            CKR_CURVE_NOT_SUPPORTED,
        ),
        (
            vec![ec(), (CKA_LABEL, vec![b'x'; 200])],
            vec![],
            CKR_ATTRIBUTE_VALUE_INVALID,
        ),
    ];
    for (public, private, want) in cases {
        let got = generate(&t, s, public.clone(), private.clone())
            .unwrap_err()
            .rv();
        assert_eq!(got, want, "public {public:?} private {private:?}");
    }
    let mut cache = t.cache.lock();
    t.refresh(&mut cache).unwrap();
    assert_eq!(
        cache.ids().filter(|id| *id < 0x7FFF_0000).count(),
        0,
        "no refused template touched the chip"
    );
}

/// Conformance finding: another process deletes a pair and generates a new one at the same
/// object id. The first process's old handles must not name the new key: the private handle
/// does not derive with it, the public handle does not report a key, before and after a search.
#[test]
fn handles_stay_bound_to_the_key_they_were_made_for() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (token(&dir), token(&dir));
    let rw = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    let (sa, sb) = (
        a.open_session(0, rw).unwrap(),
        b.open_session(0, rw).unwrap(),
    );
    let id = || (CKA_ID, vec![0x50, 0, 0, 0x42]);
    let (old_public, old_private) = generate(
        &a,
        sa,
        vec![(CKA_EC_PARAMS, params()), id()],
        vec![(CKA_DERIVE, vec![1]), id()],
    )
    .unwrap();
    let old_point = value(&a, sa, old_public, CKA_EC_POINT);

    // Process b replaces the pair at the same object id (CKA_ID names it).
    let found = find(&b, sb, vec![(CKA_ID, id().1)]);
    assert_eq!(found.len(), 2);
    for h in found {
        b.destroy(sb, h).unwrap();
    }
    let (new_public, _) = generate(
        &b,
        sb,
        vec![(CKA_EC_PARAMS, params()), id()],
        vec![(CKA_DERIVE, vec![1]), id()],
    )
    .unwrap();
    let new_point = value(&b, sb, new_public, CKA_EC_POINT);
    assert_ne!(old_point, new_point);

    let peer = StaticSecret::random_from_rng(rand_core::OsRng);
    let derive = DeriveParams {
        kdf: CKD_NULL,
        shared_data: vec![],
        public_data: PublicKey::from(&peer).as_bytes().to_vec(),
    };
    let attempt =
        |t: &Token, s, h| t.derive(s, CKM_ECDH1_DERIVE, Some(&derive), h, &Template::default());
    // Without a search in between: the derive path checks the key itself.
    assert_eq!(
        attempt(&a, sa, old_private).unwrap_err().rv(),
        CKR_KEY_HANDLE_INVALID
    );
    // After a search: the old handles name nothing; the search finds the new key by new handles.
    let found = find(&a, sa, vec![(CKA_ID, id().1)]);
    assert_eq!(found.len(), 2);
    assert!(!found.contains(&old_private) && !found.contains(&old_public));
    assert_eq!(
        a.attributes(sa, old_public, &[CKA_EC_POINT])
            .unwrap_err()
            .rv(),
        CKR_OBJECT_HANDLE_INVALID
    );
    assert_eq!(
        attempt(&a, sa, old_private).unwrap_err().rv(),
        CKR_KEY_HANDLE_INVALID
    );
    let new_private = found
        .into_iter()
        .find(|h| split_handle(*h) == Some(Half::Private))
        .unwrap();
    let secret = attempt(&a, sa, new_private).unwrap();
    let new_key = PublicKey::from(<[u8; 32]>::try_from(&new_point[2..]).unwrap());
    assert_eq!(
        value(&a, sa, secret, CKA_VALUE),
        peer.diffie_hellman(&new_key).as_bytes()
    );
}

/// Conformance finding: destroying one half of a pair leaves the other half's handle valid,
/// in either order, and in another process too; the second destroy succeeds.
#[test]
fn destroying_one_half_keeps_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (token(&dir), token(&dir));
    let rw = CKF_SERIAL_SESSION | CKF_RW_SESSION;
    let (sa, sb) = (
        a.open_session(0, rw).unwrap(),
        b.open_session(0, rw).unwrap(),
    );
    let label = || (CKA_LABEL, b"halves".to_vec());
    let make = || {
        generate(
            &a,
            sa,
            vec![(CKA_EC_PARAMS, params()), label()],
            vec![(CKA_DERIVE, vec![1]), label()],
        )
        .unwrap()
    };

    // Private first: the public key lives on (in its metadata record), here and in b.
    let (public, private) = make();
    let point = value(&a, sa, public, CKA_EC_POINT);
    a.destroy(sa, private).unwrap();
    assert_eq!(value(&a, sa, public, CKA_EC_POINT), point);
    assert_eq!(value(&a, sa, public, CKA_LABEL), b"halves");
    let in_b = find(&b, sb, vec![label()]);
    assert_eq!(in_b.len(), 1, "only the public half is left");
    assert_eq!(
        value(&b, sb, in_b[0], CKA_CLASS),
        ulong_value(CKO_PUBLIC_KEY)
    );
    assert_eq!(value(&b, sb, in_b[0], CKA_EC_POINT), point);
    assert_eq!(
        a.attributes(sa, private, &[CKA_CLASS]).unwrap_err().rv(),
        CKR_OBJECT_HANDLE_INVALID
    );
    a.destroy(sa, public).unwrap();
    assert!(find(&b, sb, vec![label()]).is_empty());

    // Public first: the private key still derives.
    let (public, private) = make();
    a.destroy(sa, public).unwrap();
    let peer = StaticSecret::random_from_rng(rand_core::OsRng);
    let derive = DeriveParams {
        kdf: CKD_NULL,
        shared_data: vec![],
        public_data: PublicKey::from(&peer).as_bytes().to_vec(),
    };
    a.derive(
        sa,
        CKM_ECDH1_DERIVE,
        Some(&derive),
        private,
        &Template::default(),
    )
    .unwrap();
    let in_b = find(&b, sb, vec![label()]);
    assert_eq!(in_b.len(), 1, "only the private half is left");
    assert_eq!(
        value(&b, sb, in_b[0], CKA_CLASS),
        ulong_value(CKO_PRIVATE_KEY)
    );
    a.destroy(sa, private).unwrap();
    assert!(find(&b, sb, vec![label()]).is_empty());
    // Nothing of ours left on the chip.
    let mut cache = a.cache.lock();
    a.refresh(&mut cache).unwrap();
    assert_eq!(cache.ids().filter(|id| *id < 0x7FFF_0000).count(), 0);
}
