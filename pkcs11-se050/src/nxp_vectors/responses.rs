//! One response of each kind the host parses, shaped as NXP's middleware parses it (the
//! `tlvGet_*` calls after each `DoAPDUTxRx*` in se05x_APDU_impl.h: which tag, in which order,
//! what length) or as a real chip answered in a log of NXP's middleware.

use super::*;
use crate::apdu::Refusal;
use crate::applet::rfc7748::{ALICE_PUBLIC, SHARED};
use crate::applet::{ObjectId, ObjectType, Persistence, Se050, Se050Error};

/// SELECT of the IoT applet answered by a real SE050E, logged by NXP's nano-package 1.5.4
/// (community.nxp.com, Secure Authentication, thread 2114523 "SE050E question for
/// Se05x_API_GetFreeMemory and ex_se05x...", "APDU Rx<"): applet 7.2.0, configuration 0x3F9F
/// (bit 0x0008 DH_MONT set), then FF FF; NXP's `SM_Connect` (sm_connect.c) reads these 7 bytes
/// as the applet version.
pub(crate) const SELECT_RESPONSE_SE050E: &str = "07 02 00 3F 9F FF FF 90 00";

fn id(value: u32) -> ObjectId {
    ObjectId::new(value).unwrap()
}

fn chip(replies: &[&str]) -> Se050<Recorder> {
    Se050::select(Recorder::selected(replies)).expect("select")
}

fn chip_order(bytes: [u8; 32]) -> String {
    let mut b = bytes;
    b.reverse();
    to_hex(&b)
}

#[test]
fn select_answer_of_a_real_se050e() {
    let chip = chip(&[]);
    let version = chip.version();
    assert_eq!((version.major, version.minor, version.patch), (7, 2, 0));
    assert_eq!(version.config, 0x3F9F);
    assert!(version.has_x25519());
}

/// `Se05x_API_GetVersion`: tlvGet_u8buf(TAG_1), the 7 version bytes.
#[test]
fn get_version_answer() {
    let mut chip = chip(&["41 07 03 01 00 6F FF 01 0B 90 00"]);
    let v = chip.get_version().unwrap();
    assert_eq!((v.major, v.minor, v.patch, v.config), (3, 1, 0, 0x6FFF));
}

/// `Se05x_API_ReadObject`: tlvGet_u8buf(TAG_1); X25519 in the chip's order, reversed by NXP's
/// `sss_se05x_key_store_get_key` and by the host.
#[test]
fn read_object_answer_is_reversed_to_rfc7748() {
    let mut chip = chip(&[&format!("41 20 {} 90 00", chip_order(ALICE_PUBLIC))]);
    assert_eq!(
        chip.read_x25519_public(id(0x7000_0010)).unwrap(),
        ALICE_PUBLIC
    );
}

/// `Se05x_API_ECDHGenerateSharedSecret`: tlvGet_u8buf(TAG_1); reversed by NXP's
/// `sss_se05x_derive_key_dh` ("Change Endianness Shared Secret") and by the host.
#[test]
fn ecdh_answer_is_reversed_to_rfc7748() {
    let peer = [9u8; 32];
    let mut chip = chip(&[&format!("41 20 {} 90 00", chip_order(SHARED))]);
    assert_eq!(*chip.ecdh_x25519(id(0x7000_0010), &peer).unwrap(), SHARED);
}

/// `Se05x_API_CheckObjectExists`: tlvGet_Result(TAG_1): kSE05x_Result_SUCCESS 01,
/// kSE05x_Result_FAILURE 02 (se05x_enums.h).
#[test]
fn check_object_exists_answers() {
    let mut chip = chip(&["41 01 01 90 00", "41 01 02 90 00", "41 01 03 90 00"]);
    assert!(chip.exists(id(0x7000_0010)).unwrap());
    assert!(!chip.exists(id(0x7000_0010)).unwrap());
    assert!(matches!(
        chip.exists(id(0x7000_0010)),
        Err(Se050Error::BadResponse { .. })
    ));
}

/// `Se05x_API_ReadIDList`: tlvGet_U8(TAG_1) more indicator (kSE05x_MoreIndicator_MORE 02,
/// _NO_MORE 01), tlvGet_u8buf(TAG_2) the ids, 4 bytes each. Two pages.
#[test]
fn read_id_list_answers_over_two_pages() {
    let mut chip = chip(&[
        "41 01 02  42 04 70000010  90 00",
        "41 01 01  42 08 7AFF0001 7AFF0003  90 00",
    ]);
    let ids = chip.list_ids().unwrap();
    assert_eq!(ids, vec![id(0x7000_0010), id(0x7AFF_0001), id(0x7AFF_0003)]);
    // The second page starts at offset 1 (TAG_1 of ReadIDList is the output offset).
    let second = &chip.transport_mut().sent[2];
    assert_eq!(split(second).data, hex("41 02 0001 42 01 FF"));
}

/// `Se05x_API_CreateSession`: tlvGet_u8buf(TAG_1), 8 bytes.
#[test]
fn create_session_answer() {
    let mut chip = chip(&["41 08 0102030405060708 90 00"]);
    chip.open_session(id(0x7AFF_0001)).unwrap();
    assert_eq!(chip.session(), Some([1, 2, 3, 4, 5, 6, 7, 8]));
}

/// `Se05x_API_ReadType`: tlvGet_SecureObjectType(TAG_1), tlvGet_U8(TAG_2) transient
/// indicator (kSE05x_TransientIndicator_PERSISTENT 01); `Se05x_API_ReadSize`: tlvGet_U16(TAG_1).
#[test]
fn read_type_and_read_size_answers() {
    let mut chip = chip(&["41 01 0B  42 01 01  90 00", "41 02 01 2C 90 00"]);
    assert_eq!(
        chip.read_type(id(0x7AFF_0003)).unwrap(),
        (ObjectType::BinaryFile, Persistence::Persistent)
    );
    assert_eq!(chip.read_size(id(0x7AFF_0003)).unwrap(), 300);
}

/// A long answer: ReadObject of a 300-byte file, `41 82 01 2C` (what tlvGet_u8buf reads).
#[test]
fn long_read_object_answer_with_82_length() {
    let data: Vec<u8> = (0..300u16).map(|i| (i * 7) as u8).collect();
    let mut chip = chip(&[
        "41 02 01 2C 90 00",
        &format!("41 82 01 2C {} 90 00", to_hex(&data)),
    ]);
    assert_eq!(chip.read_binary(id(0x7AFF_0003)).unwrap(), data);
}

/// A status word alone (DoAPDUTxRx returns it as the status): 6985 for a refused read.
#[test]
fn error_status_word_alone() {
    let mut chip = chip(&["69 85"]);
    let error = chip.read_object(id(0x7000_0010)).unwrap_err();
    assert_eq!(error.refusal(), Some(Refusal::ConditionsNotSatisfied));
}

/// ReadObjectAttributes: NXP's `Se05x_API_ReadObjectAttributes` reads the attributes from
/// TAG_2 (0x42) on applets before 7.2 ("Backward compataibility", tlvGet_u8buf(TAG_2)) and from
/// TAG_3 (0x43) on 7.2 and later; Nitrokey's `se05x` (src/se05x/commands.toml,
/// `[read_attributes.response] TAG_2 = attributes`) agrees for 3.x. The attributes are those of
/// AN12413: id, class, auth indicator, counter, auth id, max attempts, policy, origin.
/// Here a 3.1 applet (SELECT answer as `get_version_answer`'s) answers in TAG_2.
#[test]
fn read_object_attributes_answer_in_tag_2() {
    let attributes = "7AFF0001 0C 02 0003 00000000 000A 01";
    let replies = [
        "03 01 00 6F FF 01 0B 90 00",
        &format!("42 0F {attributes} 90 00"),
    ];
    let mut chip = Se050::select(Recorder::answering(&replies)).expect("select");
    let a = chip.read_attributes(id(0x7AFF_0001)).unwrap();
    assert_eq!((a.failures, a.max_attempts), (3, 10));
}

/// The same on the logged SE050E (applet 7.2): the attributes in TAG_3, and TAG_2 refused.
#[test]
fn read_object_attributes_answer_in_tag_3_from_7_2() {
    let attributes = "7AFF0001 0C 02 0003 00000000 000A 01";
    let mut chip = chip(&[&format!("43 0F {attributes} 90 00")]);
    let a = chip.read_attributes(id(0x7AFF_0001)).unwrap();
    assert_eq!((a.failures, a.max_attempts), (3, 10));
    let mut chip = super::responses::chip(&[&format!("42 0F {attributes} 90 00")]);
    assert!(chip.read_attributes(id(0x7AFF_0001)).is_err());
}
