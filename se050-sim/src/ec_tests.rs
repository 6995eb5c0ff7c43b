//! The chip's P-256 and Ed25519 arithmetic against published vectors.

use super::*;

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte): the chip's answers are
/// the RFC's values with the public key, R and S each reversed (see the module comment).
#[test]
fn ed25519_rfc8032_vectors_in_the_chips_order() {
    let cases = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
    ];
    for (private, public, message, signature) in cases {
        let private: [u8; 32] = unhex(private).try_into().unwrap();
        let mut public = unhex(public);
        public.reverse();
        assert_eq!(ed25519_public_chip_order(&private).to_vec(), public);
        let mut expected = unhex(signature);
        expected[..32].reverse();
        expected[32..].reverse();
        assert_eq!(
            ed25519_sign_chip_order(&private, &unhex(message)).to_vec(),
            expected
        );
    }
}

/// RFC 6979 A.2.5 (P-256, SHA-256, message "sample"): the key's public point and the
/// deterministic signature, DER-encoded as the chip answers it.
#[test]
fn p256_rfc6979_sample_vector() {
    use sha2::Digest;
    let private = unhex("C9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721");
    let (private, public) = p256_from_private(&private).unwrap();
    let mut expected_public = vec![0x04];
    expected_public.extend(unhex(
        "60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6",
    ));
    expected_public.extend(unhex(
        "7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299",
    ));
    assert_eq!(public.to_vec(), expected_public);
    let hash = sha2::Sha256::digest(b"sample");
    let der = p256_sign_prehash(&private, &hash).unwrap();
    let r = unhex("EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716");
    let s = unhex("F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8");
    // SEQUENCE { INTEGER r (leading 00: r's top bit is set), INTEGER s (likewise) }.
    let mut expected = vec![0x30, 0x46, 0x02, 0x21, 0x00];
    expected.extend(&r);
    expected.extend([0x02, 0x21, 0x00]);
    expected.extend(&s);
    assert_eq!(der, expected);
}

/// NIST CAVP, KAS ECC CDH primitive test vectors (ecccdhtestvectors), P-256, COUNT = 0.
#[test]
fn p256_ecdh_cavp_vector() {
    let d = unhex("7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534");
    let (private, public) = p256_from_private(&d).unwrap();
    let mut qiut = vec![0x04];
    qiut.extend(unhex(
        "ead218590119e8876b29146ff89ca61770c4edbbf97d38ce385ed281d8a6b230",
    ));
    qiut.extend(unhex(
        "28af61281fd35e2fa7002523acc85a429cb06ee6648325389f59edfce1405141",
    ));
    assert_eq!(public.to_vec(), qiut);
    let mut peer = vec![0x04];
    peer.extend(unhex(
        "700c48f77f56584c5cc632ca65640db91b6bacce3a4df6b42ce7cc838833d287",
    ));
    peer.extend(unhex(
        "db71e509e3fd9b060ddb20ba5c51dcc5948d46fbf640dfe0441782cab85fa4ac",
    ));
    let shared = p256_ecdh(&private, &peer).unwrap();
    assert_eq!(
        shared.to_vec(),
        unhex("46fc62106420ff012e54a434fbdd2d25ccc5852060561e68040dd7778997bd7b")
    );
    // A point off the curve, and a compressed point, are refused.
    let mut off = peer.clone();
    off[64] ^= 1;
    assert!(p256_ecdh(&private, &off).is_none());
    assert!(p256_ecdh(&private, &peer[..33]).is_none());
}

#[test]
fn invalid_p256_scalars_are_refused() {
    assert!(p256_from_private(&[0; 32]).is_none());
    assert!(p256_from_private(&[0xFF; 32]).is_none());
    assert!(p256_from_private(&[1; 31]).is_none());
}
