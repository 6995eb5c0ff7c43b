//! The curve commands at the APDU level, bytes written by hand from NXP's builders
//! (se05x_APDU_impl.h: `Se05x_API_ReadECCurveList`, `Se05x_API_CreateECCurve`,
//! `Se05x_API_SetECCurveParam`, `Se05x_API_GetECCurveId`); P-256's parameters and NXP's curve
//! creation are in test_support.rs (the EC and attestation tests need them too).

use super::test_support::{
    create_p256, exchange, hex, hx, selected, send, set_param, tlvs, A, B, G, N, PRIME,
};
use super::*;

/// ReadECCurveList `80 02 0B 25`, Case 4 without data (Le 00): the 17 SetIndicators.
fn curve_list(chip: &mut VirtualApplet) -> Vec<u8> {
    let (answer, sw) = exchange(chip, &hx("80 02 0B 25 00"));
    assert_eq!(sw, 0x9000);
    tlvs(&answer).require(TAG_1).unwrap().to_vec()
}

#[test]
fn a_fresh_chip_lists_no_curve_and_refuses_p256_keys_until_it_is_created() {
    let mut chip = selected();
    assert_eq!(curve_list(&mut chip), [0x01; 17], "17 entries, all NOT_SET");
    let generate = "80 01 61 00 09 41 04 00000030 42 01 03";
    assert_eq!(send(&mut chip, generate, false).1, 0x6985);
    // Created but with parameters missing: still NOT_SET, still refused.
    assert_eq!(send(&mut chip, "80 01 0B 04 03 41 01 03", false).1, 0x9000);
    assert_eq!(set_param(&mut chip, "03", "01", A), 0x9000);
    assert_eq!(curve_list(&mut chip)[2], 0x01);
    assert_eq!(send(&mut chip, generate, false).1, 0x6985);
    for (param, value) in [("02", B), ("04", G), ("08", N), ("10", PRIME)] {
        assert_eq!(set_param(&mut chip, "03", param, value), 0x9000);
    }
    let mut expected = [0x01; 17];
    expected[2] = 0x02;
    assert_eq!(curve_list(&mut chip), expected, "P-256 (03) third, SET");
    assert_eq!(send(&mut chip, generate, false).1, 0x9000);
    // Ed25519 is built in: its keys need no curve.
    let fresh = &mut selected();
    let ed = "80 01 61 00 09 41 04 00000031 42 01 40";
    assert_eq!(send(fresh, ed, false).1, 0x9000);
}

#[test]
fn curve_commands_refuse_what_the_chip_would() {
    let mut chip = selected();
    // A parameter before the curve exists; an unknown curve; a built-in one.
    assert_eq!(set_param(&mut chip, "03", "01", A), 0x6985);
    assert_eq!(send(&mut chip, "80 01 0B 04 03 41 01 12", false).1, 0x6A80);
    assert_eq!(send(&mut chip, "80 01 0B 04 03 41 01 40", false).1, 0x6985);
    assert_eq!(send(&mut chip, "80 01 0B 04 03 41 01 03", false).1, 0x9000);
    // Twice: "If curve is already created, Se05x_API_CreateECCurve fails" (NXP sss).
    assert_eq!(send(&mut chip, "80 01 0B 04 03 41 01 03", false).1, 0x6985);
    // A parameter that is not P-256's, and a parameter id that is none.
    let wrong_b = format!("{}00", &B[..62]);
    assert_eq!(set_param(&mut chip, "03", "02", &wrong_b), 0x6A80);
    assert_eq!(set_param(&mut chip, "03", "03", A), 0x6A80);
    assert_eq!(
        curve_list(&mut chip)[2],
        0x01,
        "nothing set by the refusals"
    );
}

#[test]
fn created_curves_persist_in_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chip");
    let mut chip = VirtualApplet::open(&path, Duration::ZERO).unwrap();
    assert_eq!(exchange(&mut chip, &select_bytes()).1, 0x9000);
    create_p256(&mut chip);
    drop(chip);
    let mut again = VirtualApplet::open(&path, Duration::ZERO).unwrap();
    assert_eq!(exchange(&mut again, &select_bytes()).1, 0x9000);
    assert_eq!(curve_list(&mut again)[2], 0x02);
    let generate = "80 01 61 00 09 41 04 00000032 42 01 03";
    assert_eq!(send(&mut again, generate, false).1, 0x9000);
}

#[test]
fn get_ec_curve_id_names_each_keys_curve() {
    let mut chip = selected();
    create_p256(&mut chip);
    for (id, curve) in [("00000040", "03"), ("00000041", "40"), ("00000042", "41")] {
        let generate = format!("80 01 61 00 09 41 04 {id} 42 01 {curve}");
        assert_eq!(send(&mut chip, &generate, false).1, 0x9000);
        // GetECCurveId `80 02 0B 36`, 41 04 id, Case 4.
        let (answer, sw) = send(&mut chip, &format!("80 02 0B 36 06 41 04 {id} 00"), true);
        assert_eq!((sw, answer), (0x9000, hx(&format!("41 01 {curve}"))));
    }
    // No such object; an object that is no EC key (the unique id, a binary file).
    assert_eq!(
        send(&mut chip, "80 02 0B 36 06 41 04 00000043 00", true).1,
        0x6A80
    );
    assert_eq!(
        send(&mut chip, "80 02 0B 36 06 41 04 7FFF0206 00", true).1,
        0x6985
    );
}

#[test]
fn p256_parameters_computed_from_rustcrypto_are_sec2s() {
    for (param, value) in [(0x01, A), (0x02, B), (0x04, G), (0x08, N), (0x10, PRIME)] {
        assert_eq!(
            crate::ec::p256_parameter(param),
            Some(hx(value)),
            "{param:02X}"
        );
    }
}

/// DeleteAll "Delete[s] all Secure Objects, delete[s] all curves and Crypto Objects" (NXP
/// se05x_APDU_apis.h, `Se05x_API_DeleteAll`), from a session of the factory-reset UserID.
#[test]
fn delete_all_deletes_the_curves() {
    let mut chip = selected();
    create_p256(&mut chip);
    // WriteUserID 7FFF0205 (RESERVED_ID_FACTORY_RESET), value "1234".
    let write = "80 41 07 00 0C 41 04 7FFF0205 42 04 31323334";
    assert_eq!(send(&mut chip, write, false).1, 0x9000);
    let (answer, sw) = send(&mut chip, "80 04 00 1B 06 41 04 7FFF0205 00", true);
    assert_eq!(sw, 0x9000);
    let session = hex(tlvs(&answer).require(TAG_1).unwrap());
    // ProcessSessionCmd (80 05 00 00): 10 session id, 41 the inner command.
    let wrapped = |inner: &str| {
        let inner = hx(inner);
        format!(
            "80 05 00 00 {:02X} 10 08 {session} 41 {:02X} {}",
            10 + 2 + inner.len(),
            inner.len(),
            hex(&inner)
        )
    };
    let verify = wrapped("80 04 00 2C 06 41 04 31323334");
    assert_eq!(send(&mut chip, &verify, false).1, 0x9000);
    // DeleteAll `80 04 00 2A`, Case 1.
    assert_eq!(send(&mut chip, &wrapped("80 04 00 2A"), false).1, 0x9000);
    assert_eq!(curve_list(&mut chip), [0x01; 17]);
}
