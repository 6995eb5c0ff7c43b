//! Tests only: what the applet's test files share. Commands written by hand as hex (Lc
//! checked), sent to an in-memory applet; and the P-256 curve creation NXP's middleware sends
//! before a chip's first P-256 key (`Se05x_API_CreateCurve_prime256v1`), with P-256's
//! parameters as SEC 2 (and NXP's `se05x_ecc_curves_values.h`) print them, in the order of
//! NXP's `PROCESS_ECC_CURVE`: a, b, G, n, prime.

use super::*;

/// Bytes from hex with spaces; for a command, Lc (short form, 5th byte) is checked against the
/// data that follows, so that a slip in a hand-written command shows.
pub(super) fn hx(text: &str) -> Vec<u8> {
    let s: String = text.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Sends a short case-3/4 APDU written by hand (Lc checked; `le`: whether a trailing 00 is Le).
pub(super) fn send(applet: &mut VirtualApplet, text: &str, le: bool) -> (Vec<u8>, u16) {
    let bytes = hx(text);
    let lc = bytes[4] as usize;
    assert_eq!(
        bytes.len(),
        5 + lc + usize::from(le),
        "hand-written Lc of {text}"
    );
    exchange(applet, &bytes)
}

pub(super) fn exchange(applet: &mut VirtualApplet, bytes: &[u8]) -> (Vec<u8>, u16) {
    let r = applet.process(bytes).response;
    let sw = u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]]);
    (r[..r.len() - 2].to_vec(), sw)
}

pub(super) fn selected() -> VirtualApplet {
    let mut applet = VirtualApplet::in_memory();
    let (_, sw) = exchange(&mut applet, &select_bytes());
    assert_eq!(sw, 0x9000);
    applet
}

pub(super) fn tlvs(bytes: &[u8]) -> Tlvs<'_> {
    Tlvs::parse(bytes).unwrap()
}

pub(super) const A: &str = "FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFC";
pub(super) const B: &str = "5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B";
pub(super) const G: &str = "04 6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296\
                 4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5";
pub(super) const N: &str = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";
pub(super) const PRIME: &str = "FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF";

/// SetECCurveParam `80 01 0B 40`: 41 01 curve, 42 01 parameter, 43 LL value (Case 3).
pub(super) fn set_param(chip: &mut VirtualApplet, curve: &str, param: &str, value: &str) -> u16 {
    let value = hx(value);
    let lc = 3 + 3 + 2 + value.len();
    let command = format!(
        "80 01 0B 40 {lc:02X} 41 01 {curve} 42 01 {param} 43 {:02X} {}",
        value.len(),
        hex(&value)
    );
    send(chip, &command, false).1
}

/// What NXP's `Se05x_API_CreateCurve_prime256v1` sends: CreateECCurve `80 01 0B 04` 41 01 03,
/// then the five parameters.
pub(super) fn create_p256(chip: &mut VirtualApplet) {
    assert_eq!(send(chip, "80 01 0B 04 03 41 01 03", false).1, 0x9000);
    for (param, value) in [("01", A), ("02", B), ("04", G), ("08", N), ("10", PRIME)] {
        assert_eq!(
            set_param(chip, "03", param, value),
            0x9000,
            "parameter {param}"
        );
    }
}
