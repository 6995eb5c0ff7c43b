//! The applet's answers to hand-built commands (no host driver involved).

use super::*;

fn sw(processed: &Processed) -> u16 {
    let r = &processed.response;
    u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]])
}

fn select_apdu() -> Vec<u8> {
    select_bytes()
}

fn selected() -> VirtualApplet {
    let mut applet = VirtualApplet::in_memory();
    assert_eq!(sw(&applet.process(&select_apdu())), 0x9000);
    applet
}

fn version_apdu() -> Vec<u8> {
    CommandApdu::new(CLA_IOT, INS_MGMT, 0, P2_VERSION, vec![], Some(256)).encode()
}

#[test]
fn select_answers_the_version_and_unknown_aids_6a82() {
    let mut applet = VirtualApplet::in_memory();
    let processed = applet.process(&select_apdu());
    assert_eq!(sw(&processed), 0x9000);
    assert_eq!(&processed.response[..7], &VIRTUAL_VERSION.to_bytes());
    assert!(VIRTUAL_VERSION.has_x25519());
    let mut other = IOT_APPLET_AID.to_vec();
    other[15] = 1;
    let wrong = CommandApdu::new(CLA_ISO, INS_SELECT, 0x04, 0x00, other, Some(256)).encode();
    assert_eq!(sw(&applet.process(&wrong)), 0x6A82);
    assert_eq!(sw(&applet.process(&version_apdu())), 0x6D00, "deselected");
}

#[test]
fn commands_before_select_or_after_reset_answer_6d00() {
    let mut applet = VirtualApplet::in_memory();
    assert_eq!(sw(&applet.process(&version_apdu())), 0x6D00);
    applet.process(&select_apdu());
    assert_eq!(sw(&applet.process(&version_apdu())), 0x9000);
    applet.reset();
    assert_eq!(sw(&applet.process(&version_apdu())), 0x6D00);
}

#[test]
fn class_instruction_and_parameter_errors() {
    let mut applet = selected();
    assert_eq!(sw(&applet.process(&[0x84, 0x04, 0x00, 0x20, 0x00])), 0x6982);
    assert_eq!(sw(&applet.process(&[0x10, 0x04, 0x00, 0x20, 0x00])), 0x6E00);
    assert_eq!(sw(&applet.process(&[0x80, 0x77, 0x00, 0x00, 0x00])), 0x6D00);
    assert_eq!(sw(&applet.process(&[0x00, 0xB0, 0x00, 0x00, 0x00])), 0x6D00);
    // Transient flag on WRITE: understood (transient.rs); without an object id, wrong data.
    assert_eq!(sw(&applet.process(&[0x80, 0x81, 0x61, 0x00, 0x00])), 0x6A80);
    assert_eq!(sw(&applet.process(&[0x80, 0x04, 0x00, 0x99, 0x00])), 0x6A86);
    assert_eq!(
        sw(&applet.process(&[0x80, 0x02, 0x00, 0x00])),
        0x6A80,
        "no object id"
    );
}

#[test]
fn malformed_apdus_and_tlvs() {
    let mut applet = selected();
    assert_eq!(sw(&applet.process(&[0x80, 0x04])), 0x6700);
    assert_eq!(
        sw(&applet.process(&[0x80, 0x04, 0x00, 0x27, 0x05, 0x41, 0x04])),
        0x6700
    );
    // Lc right, TLV inside truncated.
    assert_eq!(
        sw(&applet.process(&[0x80, 0x04, 0x00, 0x27, 0x02, 0x41, 0x04])),
        0x6A80
    );
    // Object id of 3 bytes, and id 0.
    let short_id = [0x80, 0x04, 0x00, 0x27, 0x05, 0x41, 0x03, 0, 0, 1];
    assert_eq!(sw(&applet.process(&short_id)), 0x6A80);
    let zero = [0x80, 0x04, 0x00, 0x27, 0x06, 0x41, 0x04, 0, 0, 0, 0];
    assert_eq!(sw(&applet.process(&zero)), 0x6A80);
    // More than 889 bytes of data.
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &[0; 900]);
    let long = CommandApdu::new(CLA_IOT, INS_MGMT, 0, P2_EXIST, data, None).encode();
    assert_eq!(sw(&applet.process(&long)), 0x6700);
}

#[test]
fn short_case4_without_le_and_extended_forms_are_accepted() {
    let mut applet = selected();
    // CheckObjectExists for the unique id, short case 4 without Le.
    let bare = [
        0x80, 0x04, 0x00, 0x27, 0x06, 0x41, 0x04, 0x7F, 0xFF, 0x02, 0x06,
    ];
    let processed = applet.process(&bare);
    assert_eq!(*processed.response, [0x41, 0x01, 0x01, 0x90, 0x00]);
    // The same, extended with Le.
    let mut apdu = CommandApdu::new(CLA_IOT, INS_MGMT, 0, P2_EXIST, bare[5..].to_vec(), Some(3));
    apdu.extended = true;
    assert_eq!(
        *applet.process(&apdu.encode()).response,
        [0x41, 0x01, 0x01, 0x90, 0x00]
    );
}

#[test]
fn a_response_longer_than_le_answers_6700() {
    let mut applet = selected();
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &100u16.to_be_bytes());
    let small_le =
        CommandApdu::new(CLA_IOT, INS_MGMT, 0, P2_RANDOM, data.clone(), Some(50)).encode();
    assert_eq!(sw(&applet.process(&small_le)), 0x6700);
    let fitting = CommandApdu::new(CLA_IOT, INS_MGMT, 0, P2_RANDOM, data, Some(102)).encode();
    assert_eq!(applet.process(&fitting).response.len(), 102 + 2);
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &886u16.to_be_bytes());
    let too_many = CommandApdu::new(CLA_IOT, INS_MGMT, 0, P2_RANDOM, data, Some(65536)).encode();
    assert_eq!(sw(&applet.process(&too_many)), 0x6700);
}

#[test]
fn ecdh_refuses_wrong_peer_length_and_non_key_objects() {
    let mut applet = selected();
    let ecdh = |id: u32, peer: &[u8]| {
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        tlv::push(&mut data, TAG_2, peer);
        CommandApdu::new(CLA_IOT, INS_CRYPTO, P1_EC, P2_DH, data, Some(256)).encode()
    };
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &0x10u32.to_be_bytes());
    tlv::push(&mut data, TAG_2, &[CURVE_X25519]);
    let generate = CommandApdu::new(CLA_IOT, INS_WRITE, 0x61, 0, data, None).encode();
    assert_eq!(sw(&applet.process(&generate)), 0x9000);
    assert_eq!(sw(&applet.process(&ecdh(0x10, &[9; 31]))), 0x6A80);
    assert_eq!(sw(&applet.process(&ecdh(0x10, &[9; 32]))), 0x9000);
    assert_eq!(sw(&applet.process(&ecdh(UNIQUE_ID, &[9; 32]))), 0x6985);
    assert_eq!(sw(&applet.process(&ecdh(0x11, &[9; 32]))), 0x6A80);
    // A curve this chip does not model (NIST P-224, 0x02) is wrong data.
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &0x12u32.to_be_bytes());
    tlv::push(&mut data, TAG_2, &[0x02]);
    let p224 = CommandApdu::new(CLA_IOT, INS_WRITE, 0x61, 0, data, None).encode();
    assert_eq!(sw(&applet.process(&p224)), 0x6A80);
    let c = applet.counters();
    assert_eq!((c.keygen, c.ecdh), (1, 1));
    assert_eq!(c.apdus, 7, "every APDU counted, SELECT included");
}

#[test]
fn tlv_lengths_in_their_three_forms_and_a_short_form_for_a_long_value() {
    let mut applet = selected();
    let id = 0x2000_0100u32;
    // WriteBinary of a 300-byte file in one command: `44 82 01 2C` + 300 bytes.
    let mut data = vec![0x41, 0x04];
    data.extend_from_slice(&id.to_be_bytes());
    data.extend_from_slice(&[0x43, 0x02, 0x01, 0x2C, 0x44, 0x82, 0x01, 0x2C]);
    data.extend_from_slice(&[0x5A; 300]);
    let write = CommandApdu::new(
        CLA_IOT,
        INS_WRITE,
        P1_BINARY,
        P2_DEFAULT,
        data.clone(),
        None,
    );
    assert_eq!(sw(&applet.process(&write.encode())), 0x9000);
    // ReadObject answers it with `41 82 01 2C`.
    let mut read = vec![0x41, 0x04];
    read.extend_from_slice(&id.to_be_bytes());
    let read = CommandApdu::new(CLA_IOT, INS_READ, P1_DEFAULT, P2_DEFAULT, read, Some(65536));
    let answer = applet.process(&read.encode());
    assert_eq!(answer.response[..4], [0x41, 0x82, 0x01, 0x2C]);
    assert_eq!(answer.response.len(), 4 + 300 + 2);
    // The same value announced as `81 2C` (the low byte only): refused, nothing written.
    let other = 0x2000_0101u32;
    let mut bad = data;
    bad[2..6].copy_from_slice(&other.to_be_bytes());
    bad.splice(11..14, [0x81, 0x2C]);
    let write = CommandApdu::new(CLA_IOT, INS_WRITE, P1_BINARY, P2_DEFAULT, bad, None);
    assert_eq!(sw(&applet.process(&write.encode())), 0x6A80);
    assert!(!applet.state().objects.contains_key(&other));
    // A one-byte length above 0x7F is not a length form: `41 80`.
    let exists = [
        0x80, 0x04, 0x00, 0x27, 0x06, 0x41, 0x80, 0x7F, 0xFF, 0x02, 0x06,
    ];
    assert_eq!(sw(&applet.process(&exists)), 0x6A80);
}
