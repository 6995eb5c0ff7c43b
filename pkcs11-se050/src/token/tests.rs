//! The token layer on the real virtual SE050 (a temporary state file), without the C ABI.

use super::attributes::{ulong_value, Template};
use super::objects::{split_handle, Half};
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
    assert_eq!(split_handle(private).map(|(_, h)| h), Some(Half::Private));
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
    assert_eq!(found, vec![private]);
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
            private,
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
        private,
        &Template::new(vec![(CKA_LABEL, b"renamed".to_vec())]),
    )
    .unwrap();
    assert_eq!(
        find(&a, sa, vec![(CKA_LABEL, b"renamed".to_vec())]).len(),
        2
    );

    // Deleted through one view: the other's derive fails cleanly, its search drops it.
    a.destroy(sa, public).unwrap();
    let gone = b.derive(
        sb,
        CKM_ECDH1_DERIVE,
        Some(&derive),
        private,
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
