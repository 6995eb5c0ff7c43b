//! The attested read (issue 21), as `applet::Se050::read_with_attestation` sends it, next to
//! NXP's bytes for the same call, and the answer kept exactly as the chip returned it.
//!
//! NXP (plug-and-trust @ 9721d640): `sss_se05x_key_store_get_key_attst` calls
//! `Se05x_API_ReadObject_W_Attst` (applet 3.x; `_V2` on 7.2+, same command) with offset 0 and
//! length 0 (left out by `TLVSET_U16Optional`), attestID `SSS_SE05X_RESID_ATTESTATION_KEY`
//! (0xF0000012), attestAlgo `kSE05x_AttestationAlgo_EC_SHA_256` (0x21), the 16-byte random;
//! header `kSE05x_CLA, kSE05x_INS_READ_With_Attestation` (0x02 | 0x20), `DoAPDUTxRx_s_Case4_ext`:
//! extended Lc, Le `00 00`. The host asks for 889 bytes (`03 79`), as for ReadObject.

use super::applet_commands::{chip, nxp_but_le, sent};
use super::*;
use crate::applet::ObjectId;

const FRESHNESS: [u8; 16] = [
    0x8C, 0x56, 0xAC, 0x55, 0xC9, 0xBD, 0xE3, 0xB4, 0x1A, 0xEB, 0xC3, 0xC7, 0x00, 0x2E, 0xB0, 0x34,
];

#[test]
fn attested_read_is_nxp_se05x_api_readobject_w_attst() {
    // An applet 3.x answer (values from the virtual chip's layout; not checked here: the
    // verifier's tests check signatures). It is kept byte for byte, status word included.
    let answer = "41 02 AABB 42 01 01 43 0C 000000000000000000000000 9000";
    let mut chip = chip(&[answer]);
    let read = chip
        .read_with_attestation(ObjectId::new(0x7000_0010).unwrap(), &FRESHNESS)
        .unwrap();
    let f = to_hex(&FRESHNESS);
    nxp_but_le(
        "ReadObject with attestation",
        &sent(&mut chip)[0],
        &format!(
            "80 22 00 00 00 00 21  41 04 70000010  45 04 F0000012  46 01 21  47 10 {f}  03 79"
        ),
        &format!(
            "80 22 00 00 00 00 21  41 04 70000010  45 04 F0000012  46 01 21  47 10 {f}  00 00"
        ),
    );
    assert_bytes(
        "the answer as the chip returned it",
        &read.response,
        &hex(answer),
    );
    assert_eq!(
        read.command,
        hex(&format!(
            "80 22 00 00 00 00 21  41 04 70000010  45 04 F0000012  46 01 21  47 10 {f}  03 79"
        ))
    );
}

#[test]
fn a_refused_attested_read_is_an_error_not_evidence() {
    let mut chip = chip(&["6986"]);
    assert!(chip
        .read_with_attestation(ObjectId::new(0x7000_0010).unwrap(), &FRESHNESS)
        .is_err());
}
