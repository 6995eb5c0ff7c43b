//! The TLV length forms, host encoder and parser against NXP's `tlvSet_u8buf` and
//! `tlvGet_u8buf` (hostlib/hostLib/se05x/src/se05x_tlv.c): a length up to 0x7F in one byte,
//! up to 0xFF as `81 LL`, up to 0xFFFF as `82 HH LL`; the parser takes exactly these forms.

use super::*;
use crate::apdu::{tlv, Tlvs};

/// (value length, the header NXP's `tlvSet_u8buf` writes before the value for tag 0x44).
const NXP_HEADERS: [(usize, &str); 8] = [
    (0, "44 00"),
    (1, "44 01"),
    (0x7F, "44 7F"),
    (0x80, "44 81 80"),
    (0xFF, "44 81 FF"),
    (0x100, "44 82 01 00"),
    (300, "44 82 01 2C"),
    (871, "44 82 03 67"),
];

#[test]
fn tlv_length_forms_match_nxp_tlvset_u8buf() {
    for (len, header) in NXP_HEADERS {
        let value: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut host = Vec::new();
        tlv::push(&mut host, 0x44, &value);
        let mut expected = hex(header);
        expected.extend_from_slice(&value);
        assert_bytes(&format!("TLV of {len} bytes"), &host, &expected);
        assert_eq!(tlv::encoded_len(len), expected.len(), "encoded_len({len})");
    }
}

/// `tlvSet_U8`, `tlvSet_U16`, `tlvSet_U32`: fixed one-byte lengths, values big-endian.
#[test]
fn fixed_size_tlvs_match_nxp_tlvset_u8_u16_u32() {
    let mut host = Vec::new();
    tlv::push(&mut host, 0x41, &0x7AFF_0001u32.to_be_bytes());
    tlv::push(&mut host, 0x42, &0x012Cu16.to_be_bytes());
    tlv::push(&mut host, 0x43, &[0xFF]);
    assert_bytes(
        "tlvSet_U32, tlvSet_U16, tlvSet_U8",
        &host,
        &hex("41 04 7AFF0001  42 02 012C  43 01 FF"),
    );
}

/// What `tlvGet_u8buf` reads the host reads; what it refuses (`80`, `83`: no such form) the
/// host refuses.
#[test]
fn tlv_parser_takes_the_forms_nxp_tlvget_u8buf_takes() {
    for (len, header) in NXP_HEADERS {
        let mut bytes = hex(header);
        bytes.extend((0..len).map(|i| i as u8));
        let tlvs = Tlvs::parse(&bytes).unwrap_or_else(|e| panic!("{len} bytes: {e}"));
        assert_eq!(tlvs.require(0x44).unwrap().len(), len);
    }
    assert!(Tlvs::parse(&hex("41 80")).is_err());
    assert!(Tlvs::parse(&hex("41 83 00 00 01 00")).is_err());
    assert!(
        Tlvs::parse(&hex("41 82 01 2C 00")).is_err(),
        "truncated value"
    );
}
