//! P-256 and Ed25519 commands (issue 22), as `applet::Se050` emits them, next to NXP's bytes
//! for the same call, and the answers parsed with published vectors: RFC 8032 section 7.1
//! TEST 2 (Ed25519) and RFC 6979 A.2.5 (P-256, SHA-256, message "sample"), each checked here
//! against RustCrypto / dalek as well, so a mistyped vector cannot pass.
//!
//! NXP = NXP/plug-and-trust @ 9721d640; builders in hostlib/hostLib/se05x_03_xx_xx/
//! se05x_APDU_impl.h, constants in hostlib/hostLib/inc/se05x_enums.h and se05x_const.h.

use super::applet_commands::{chip, id, nxp_but_le, same_as_nxp, sent};
use super::{hex, to_hex};
use crate::applet::ec_keys::p256_params;
use crate::applet::protocol::*;
use crate::applet::{EcCurve, PolicyEntry};

const KEY: u32 = 0x7000_0010;

/// RFC 8032 7.1 TEST 2.
const ED_SECRET: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const ED_PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const ED_MESSAGE: &str = "72";
const ED_SIGNATURE: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
                            085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

/// RFC 6979 A.2.5: P-256 key, and the SHA-256 signature of "sample".
const P256_PUBLIC: &str = "04 60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6\
                           7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299";
const P256_R: &str = "EFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716";
const P256_S: &str = "F7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8";

fn reversed_halves(signature: &[u8]) -> String {
    let mut s = signature.to_vec();
    s[..32].reverse();
    s[32..].reverse();
    to_hex(&s)
}

#[test]
fn the_published_vectors_are_what_rustcrypto_and_dalek_say() {
    use ed25519_dalek::{Signer, SigningKey};
    let secret: [u8; 32] = hex(ED_SECRET).try_into().unwrap();
    let key = SigningKey::from_bytes(&secret);
    assert_eq!(key.verifying_key().to_bytes().to_vec(), hex(ED_PUBLIC));
    assert_eq!(
        key.sign(&hex(ED_MESSAGE)).to_bytes().to_vec(),
        hex(ED_SIGNATURE)
    );

    use p256::ecdsa::{signature::Verifier, Signature, VerifyingKey};
    let public = VerifyingKey::from_sec1_bytes(&hex(P256_PUBLIC)).unwrap();
    let signature = Signature::from_slice(&hex(&format!("{P256_R}{P256_S}"))).unwrap();
    public.verify(b"sample", &signature).unwrap();
}

/// ReadECCurveList: NXP `Se05x_API_ReadECCurveList` (`80 02 0B 25`, `kSE05x_P1_CURVE`,
/// `kSE05x_P2_LIST`), `DoAPDUTxRx_s_Case4` without data: header and a lone `00`. The answer
/// is one `SE05x_SetIndicator_t` per curve id (02 SET, 01 NOT_SET), P-256 (03) third.
/// Ed25519 needs no curve (`sss_se05x_create_curve_if_needed`: "ECC_ED_25519 is always preset").
#[test]
fn p256_generation_with_the_curve_present_is_nxp_list_then_writeeckey() {
    let mut chip = chip(&["41 05 0101020101 9000", "9000"]);
    chip.generate_ec_with_policy(id(KEY), EcCurve::NistP256, &[])
        .unwrap();
    let sent = sent(&mut chip);
    assert_eq!(sent.len(), 2, "no curve creation when the list says SET");
    same_as_nxp("ReadECCurveList", &sent[0], "80 02 0B 25 00");
    // NXP `Se05x_API_WriteECKey` with `kSE05x_ECCurve_NIST_P256` (0x03), Case3.
    same_as_nxp(
        "WriteECKey (generate P-256)",
        &sent[1],
        "80 01 61 00 09  41 04 70000010  42 01 03",
    );
}

/// When ReadECCurveList says NOT_SET: NXP `Se05x_API_CreateCurve_prime256v1`
/// (hostlib/hostLib/se05x/src/se05x_ECC_curves.c `PROCESS_ECC_CURVE`): CreateECCurve
/// `80 01 0B 04` 41 curve, then SetECCurveParam `80 01 0B 40` 41 curve 42 param 43 value for
/// a (01), b (02), G (04, `04 || x || y`), n (08), prime (10); all Case3.
#[test]
fn p256_generation_without_the_curve_creates_it_as_nxp() {
    let mut chip = chip(
        &["41 05 0101010101 9000"; 1]
            .into_iter()
            .chain(["9000"; 7])
            .collect::<Vec<_>>(),
    );
    chip.generate_ec_with_policy(id(KEY), EcCurve::NistP256, &[])
        .unwrap();
    let sent = sent(&mut chip);
    assert_eq!(sent.len(), 8);
    same_as_nxp("CreateECCurve", &sent[1], "80 01 0B 04 03 41 01 03");
    let param = |p: u8, value: &[u8]| {
        format!(
            "80 01 0B 40 {:02X} 41 01 03 42 01 {p:02X} 43 {:02X} {}",
            6 + 2 + value.len(),
            value.len(),
            to_hex(value)
        )
    };
    same_as_nxp("SetECCurveParam a", &sent[2], &param(0x01, &p256_params::A));
    same_as_nxp("SetECCurveParam b", &sent[3], &param(0x02, &p256_params::B));
    same_as_nxp(
        "SetECCurveParam G",
        &sent[4],
        &param(0x04, &p256_params::generator()),
    );
    same_as_nxp(
        "SetECCurveParam n",
        &sent[5],
        &param(0x08, &p256_params::ORDER),
    );
    same_as_nxp(
        "SetECCurveParam prime",
        &sent[6],
        &param(0x10, &p256_params::PRIME),
    );
    same_as_nxp(
        "WriteECKey",
        &sent[7],
        "80 01 61 00 09 41 04 70000010 42 01 03",
    );
}

/// Ed25519 with the user's policy, sign and attestation allowed: WriteECKey with
/// `kSE05x_ECCurve_ECC_ED_25519` (0x40); `POLICY_OBJ_ALLOW_SIGN` 0x10000000,
/// `_READ` 0x00200000, `_DELETE` 0x00040000, `_ATTESTATION` 0x00008000 (se05x_const.h).
#[test]
fn ed25519_generation_is_nxp_writeeckey_without_curve_lookup() {
    let mut chip = chip(&["9000"]);
    let policy = [PolicyEntry {
        auth_object: 0x7AFF_0001,
        access: POLICY_ALLOW_SIGN
            | POLICY_ALLOW_READ
            | POLICY_ALLOW_DELETE
            | POLICY_ALLOW_ATTESTATION,
    }];
    chip.generate_ec_with_policy(id(KEY), EcCurve::Ed25519, &policy)
        .unwrap();
    let sent = sent(&mut chip);
    assert_eq!(sent.len(), 1);
    same_as_nxp(
        "WriteECKey (generate Ed25519, policy)",
        &sent[0],
        "80 01 61 00 14  11 09 08 7AFF0001 10248000  41 04 70000010  42 01 40",
    );
}

/// ReadObject answers: P-256 `04 || X || Y` as is; Ed25519 reversed (NXP
/// `sss_se05x_key_store_get_key` reverses ECC_ED_25519 public keys as it does X25519).
#[test]
fn public_keys_are_read_in_the_order_nxp_converts_them() {
    let ed_chip_order = {
        let mut k = hex(ED_PUBLIC);
        k.reverse();
        to_hex(&k)
    };
    let mut chip = chip(&[
        &format!("41 41 {P256_PUBLIC} 9000"),
        &format!("41 20 {ed_chip_order} 9000"),
        "41 41 02 ... 9000"
            .replace(" ... ", &"00".repeat(64))
            .as_str(),
    ]);
    assert_eq!(
        chip.read_ec_public(id(KEY), EcCurve::NistP256).unwrap(),
        hex(P256_PUBLIC)
    );
    assert_eq!(
        chip.read_ec_public(id(KEY), EcCurve::Ed25519).unwrap(),
        hex(ED_PUBLIC)
    );
    let err = chip.read_ec_public(id(KEY), EcCurve::NistP256).unwrap_err();
    assert!(err.to_string().contains("not 04"), "{err}");
}

/// ECDSASign: NXP `Se05x_API_ECDSASign` (`80 03 0C 09`, 41 id, 42 `kSE05x_ECSignatureAlgo_SHA_256`
/// 0x21, 43 digest; `DoAPDUTxRx_s_Case4`: no Le; the host adds `00`). The chip's DER answer
/// (here RFC 6979's signature, whose r and s have their high bit set: DER pads each with 00)
/// becomes r || s.
#[test]
fn ecdsa_sign_is_nxp_ecdsasign_and_der_becomes_r_s() {
    let der = format!("30 46 02 21 00 {P256_R} 02 21 00 {P256_S}");
    let mut chip = chip(&[&format!("41 48 {der} 9000")]);
    let digest: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(b"sample").into()
    };
    let signature = chip.ecdsa_sign_digest(id(KEY), &digest).unwrap();
    assert_eq!(to_hex(&signature), format!("{P256_R}{P256_S}"));
    nxp_but_le(
        "ECDSASign",
        &sent(&mut chip)[0],
        &format!(
            "80 03 0C 09 2B 41 04 70000010 42 01 21 43 20 {} 00",
            to_hex(&digest)
        ),
        &format!(
            "80 03 0C 09 2B 41 04 70000010 42 01 21 43 20 {}",
            to_hex(&digest)
        ),
    );
}

/// EdDSASign: NXP `Se05x_API_EdDSASign` (`80 03 0C 09`, 41 id, 42
/// `kSE05x_EDSignatureAlgo_ED25519PURE_SHA_512` 0xA3, 43 message; Case4, no Le). The answer's
/// R and S come reversed (NXP `sss_se05x_asymmetric_sign`, "Revert Endianness" per half).
#[test]
fn eddsa_sign_is_nxp_eddsasign_with_each_half_reversed() {
    let mut chip = chip(&[&format!(
        "41 40 {} 9000",
        reversed_halves(&hex(ED_SIGNATURE))
    )]);
    let signature = chip.eddsa_sign(id(KEY), &hex(ED_MESSAGE)).unwrap();
    assert_eq!(signature.to_vec(), hex(ED_SIGNATURE));
    nxp_but_le(
        "EdDSASign",
        &sent(&mut chip)[0],
        "80 03 0C 09 0C 41 04 70000010 42 01 A3 43 01 72 00",
        "80 03 0C 09 0C 41 04 70000010 42 01 A3 43 01 72",
    );
}

/// A message the chip cannot take in one APDU never reaches it.
#[test]
fn eddsa_message_too_long_is_refused_before_the_chip() {
    let mut chip = chip(&[]);
    let long = vec![0u8; crate::applet::sign::MAX_EDDSA_MESSAGE + 1];
    assert!(chip.eddsa_sign(id(KEY), &long).is_err());
    assert!(sent(&mut chip).is_empty());
}

/// P-256 ECDH: NXP `Se05x_API_ECGenSharedSecret` (Case4_ext: `00 00 49` Lc, Le `00 00`) with
/// the peer's uncompressed point not reversed (`sss_se05x_derive_key_dh` reverses only
/// Montgomery keys); the host sends it short with Le `00`. The answer is the x coordinate.
#[test]
fn p256_ecdh_is_nxp_ecdh_without_reversal() {
    let x = "00".to_string() + &"AB".repeat(31);
    let mut chip = chip(&[&format!("41 20 {x} 9000")]);
    let secret = chip.ecdh_p256(id(KEY), &hex(P256_PUBLIC)).unwrap();
    assert_eq!(to_hex(&*secret), x);
    nxp_but_le(
        "ECDH P-256",
        &sent(&mut chip)[0],
        &format!("80 03 01 0F 49 41 04 70000010 42 41 {P256_PUBLIC} 00"),
        &format!("80 03 01 0F 000049 41 04 70000010 42 41 {P256_PUBLIC} 0000"),
    );
}

/// GetECCurveId: NXP `Se05x_API_GetECCurveId` (`80 02 0B 36`, `kSE05x_P2_ID`; 41 id; Case4,
/// no Le): answered by `tlvGet_U8(TAG_1)`.
#[test]
fn get_ec_curve_id_is_nxp_get_ec_curve_id() {
    let mut chip = chip(&["41 01 40 9000"]);
    assert_eq!(chip.ec_curve_id(id(KEY)).unwrap(), CURVE_ED25519);
    nxp_but_le(
        "GetECCurveId",
        &sent(&mut chip)[0],
        "80 02 0B 36 06 41 04 70000010 00",
        "80 02 0B 36 06 41 04 70000010",
    );
}

/// A chip that refuses ReadECCurveList (6D00 no such instruction, 6A86 wrong P1/P2, 6982):
/// the generation stops there with the chip's refusal, as NXP's `sss_se05x_create_curve_if_needed`
/// returns it; no WriteECKey is sent on a guess.
#[test]
fn p256_generation_stops_when_the_chip_refuses_the_curve_list() {
    for refusal in ["6D00", "6A86", "6982"] {
        let mut chip = chip(&[refusal, "9000"]);
        let error = chip
            .generate_ec_with_policy(id(KEY), EcCurve::NistP256, &[])
            .unwrap_err();
        assert!(error.to_string().contains("ReadECCurveList"), "{error}");
        assert_eq!(sent_count(&mut chip), 1, "after {refusal}");
    }
}

fn sent_count(chip: &mut crate::applet::Se050<super::Recorder>) -> usize {
    sent(chip).len()
}
