//! UserIDs, sessions and policies against the virtual chip's applet: the chip itself refuses a
//! key operation outside a session authenticated as the key's user, counts wrong values in its
//! persistent state and blocks the UserID at the maximum.

use super::*;
use crate::apdu::Refusal;
use crate::virtual_se050::applet::{InProcessTransport, VirtualApplet};
use crate::virtual_se050::store::ObjectData;
use crate::virtual_se050::ApduHandler;
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};

type Chip = Se050<InProcessTransport<VirtualApplet>>;

const USER: u32 = 0x7000_0010;
const KEY: u32 = 0x5000_0001;

fn chip_on(applet: VirtualApplet) -> Chip {
    Se050::select(InProcessTransport::new(applet)).expect("select")
}

fn id(value: u32) -> ObjectId {
    ObjectId::new(value).unwrap()
}

fn refusal<T: std::fmt::Debug>(result: Result<T, Se050Error>) -> Refusal {
    result
        .expect_err("the chip should refuse")
        .refusal()
        .expect("a status word")
}

/// A UserID `1234` (3 attempts) and an X25519 key usable only in a session authenticated as it.
fn provisioned(chip: &mut Chip) {
    chip.write_user_id(id(USER), b"1234", 3, &[]).unwrap();
    let only_the_user = [PolicyEntry {
        auth_object: USER,
        access: POLICY_ALLOW_KA | POLICY_ALLOW_READ | POLICY_ALLOW_DELETE,
    }];
    chip.generate_x25519_with_policy(id(KEY), &only_the_user)
        .unwrap();
}

fn failures(chip: &mut Chip) -> u16 {
    match &chip.transport_mut().handler.state().objects[&USER].data {
        ObjectData::UserId { failures, .. } => *failures,
        other => panic!("not a UserID: {other:?}"),
    }
}

#[test]
fn the_chip_refuses_a_key_operation_outside_an_authenticated_session() {
    let mut chip = chip_on(VirtualApplet::in_memory());
    provisioned(&mut chip);
    let peer = StaticSecret::random_from_rng(rand_core::OsRng);
    let peer_public = *PublicKey::from(&peer).as_bytes();

    // No session: the policy has no entry for "everyone else" (auth object 0).
    assert_eq!(
        refusal(chip.ecdh_x25519(id(KEY), &peer_public)),
        Refusal::NotAllowedByPolicy
    );
    assert_eq!(
        refusal(chip.read_x25519_public(id(KEY))),
        Refusal::NotAllowedByPolicy
    );
    assert_eq!(refusal(chip.delete(id(KEY))), Refusal::NotAllowedByPolicy);

    // A session not yet verified runs nothing but the verification.
    chip.open_session(id(USER)).unwrap();
    assert_eq!(
        refusal(chip.ecdh_x25519(id(KEY), &peer_public)),
        Refusal::SecurityStatus
    );
    // A wrong value: refused, counted by the chip.
    assert_eq!(
        refusal(chip.verify_user_id(b"9999")),
        Refusal::SecurityStatus
    );
    assert_eq!(failures(&mut chip), 1);
    // The right one: the counter is reset and the key works, inside the session only.
    chip.verify_user_id(b"1234").unwrap();
    assert_eq!(failures(&mut chip), 0);
    let public = chip.read_x25519_public(id(KEY)).unwrap();
    let shared = chip.ecdh_x25519(id(KEY), &peer_public).unwrap();
    assert_eq!(
        *shared,
        peer.diffie_hellman(&PublicKey::from(public)).to_bytes()
    );
    chip.close_session().unwrap();
    assert_eq!(
        refusal(chip.ecdh_x25519(id(KEY), &peer_public)),
        Refusal::NotAllowedByPolicy
    );

    // A chip reset closes its sessions: the old session id is refused.
    chip.open_session(id(USER)).unwrap();
    chip.verify_user_id(b"1234").unwrap();
    chip.transport_mut().handler.reset();
    select_applet(&mut chip.transport).unwrap();
    assert_eq!(
        refusal(chip.ecdh_x25519(id(KEY), &peer_public)),
        Refusal::SecurityStatus
    );
    chip.forget_session();
}

#[test]
fn wrong_values_block_the_user_id_until_it_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("chip.state");
    let mut chip = chip_on(VirtualApplet::open(&state, Duration::ZERO).unwrap());
    provisioned(&mut chip);
    chip.open_session(id(USER)).unwrap();
    assert_eq!(
        refusal(chip.verify_user_id(b"0000")),
        Refusal::SecurityStatus
    );
    assert_eq!(
        refusal(chip.verify_user_id(b"0001")),
        Refusal::SecurityStatus
    );
    // The third wrong value uses up the attempts.
    assert_eq!(refusal(chip.verify_user_id(b"0002")), Refusal::AuthBlocked);
    // Blocked: even the right value, and no new session.
    assert_eq!(refusal(chip.verify_user_id(b"1234")), Refusal::AuthBlocked);
    chip.forget_session();
    assert_eq!(refusal(chip.open_session(id(USER))), Refusal::AuthBlocked);

    // The counter is in the persistent state: another process's chip sees it blocked.
    let mut other = chip_on(VirtualApplet::open(&state, Duration::ZERO).unwrap());
    assert_eq!(refusal(other.open_session(id(USER))), Refusal::AuthBlocked);

    // Writing the UserID again resets the counter (how an SO unblocks a PIN).
    chip.write_user_id(id(USER), b"5678", 0, &[]).unwrap();
    chip.open_session(id(USER)).unwrap();
    assert_eq!(
        refusal(chip.verify_user_id(b"1234")),
        Refusal::SecurityStatus
    );
    chip.verify_user_id(b"5678").unwrap();
    chip.close_session().unwrap();
}

/// The bytes on the wire, as NXP's middleware builds them (ex_se05x_userId_APDU.c): a driver
/// written against the real chip works against the virtual one.
#[test]
fn wire_encoding_of_write_user_id_create_session_and_process_session() {
    let mut chip = chip_on(VirtualApplet::in_memory());
    let mut send = |apdu: &[u8]| {
        let r = chip.transport_mut().handler.process(apdu).response;
        let sw = u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]]);
        (r[..r.len() - 2].to_vec(), sw)
    };
    // WriteUserID 80 41 07 00: 12 00 05 (max attempts), 41 7000 0010, 42 "1234".
    let write = [
        0x80, 0x41, 0x07, 0x00, 0x10, 0x12, 0x02, 0x00, 0x05, 0x41, 0x04, 0x70, 0x00, 0x00, 0x10,
        0x42, 0x04, b'1', b'2', b'3', b'4',
    ];
    assert_eq!(send(&write).1, 0x9000);
    // CreateSession 80 04 00 1B: 41 7000 0010 -> 41 08 <session id>.
    let (answer, sw) = send(&[
        0x80, 0x04, 0x00, 0x1B, 0x06, 0x41, 0x04, 0x70, 0x00, 0x00, 0x10, 0x00,
    ]);
    assert_eq!(sw, 0x9000);
    assert_eq!(&answer[..2], &[0x41, 0x08]);
    let session = &answer[2..10];
    // ProcessSessionCmd 80 05 00 00: 10 08 <session>, 41 <VerifySessionUserID 80 04 00 2C 06 41 04 "1234">.
    let inner = [
        0x80, 0x04, 0x00, 0x2C, 0x06, 0x41, 0x04, b'1', b'2', b'3', b'4',
    ];
    let mut data = vec![0x10, 0x08];
    data.extend_from_slice(session);
    data.extend_from_slice(&[0x41, inner.len() as u8]);
    data.extend_from_slice(&inner);
    let mut apdu = vec![0x80, 0x05, 0x00, 0x00, data.len() as u8];
    apdu.extend_from_slice(&data);
    assert_eq!(send(&apdu).1, 0x9000);
    // CloseSession inside the session: 80 04 00 1C.
    let inner = [0x80, 0x04, 0x00, 0x1C];
    let mut data = vec![0x10, 0x08];
    data.extend_from_slice(session);
    data.extend_from_slice(&[0x41, inner.len() as u8]);
    data.extend_from_slice(&inner);
    let mut apdu = vec![0x80, 0x05, 0x00, 0x00, data.len() as u8];
    apdu.extend_from_slice(&data);
    assert_eq!(send(&apdu).1, 0x9000);
    // The session is gone.
    assert_eq!(send(&apdu).1, 0x6982);
}

/// Commands a real SE050 answers and the virtual chip refused before (issue 9, item 5).
#[test]
fn free_memory_timestamp_read_size_and_delete_all() {
    let mut chip = chip_on(VirtualApplet::in_memory());
    // Answered in two bytes: a chip with more free NVM says 0x7FFF.
    assert_eq!(chip.free_memory(MEMORY_PERSISTENT).unwrap(), 0x7FFF);
    chip.write_binary(id(0x5000_0100), &vec![7u8; 0x7000])
        .unwrap();
    let before = chip.free_memory(MEMORY_PERSISTENT).unwrap();
    assert!(before > 0 && before < 0x7FFF, "{before}");
    provisioned(&mut chip);
    assert!(
        chip.free_memory(MEMORY_PERSISTENT).unwrap() < before,
        "the key took room"
    );
    assert!(chip.free_memory(MEMORY_TRANSIENT_DESELECT).unwrap() > 0);
    assert_eq!(refusal(chip.free_memory(0x09)), Refusal::WrongData);

    let first = chip.timestamp().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(
        chip.timestamp().unwrap() > first,
        "the timestamp goes forward"
    );

    // ReadSize of an EC key is the curve's size: 32 bytes for X25519.
    chip.generate_x25519(id(0x5000_0002)).unwrap();
    assert_eq!(chip.read_size(id(0x5000_0002)).unwrap(), 32);

    // DeleteAll: refused outside a factory-reset session, even in a user's session.
    assert_eq!(refusal(chip.delete_all()), Refusal::SecurityStatus);
    chip.open_session(id(USER)).unwrap();
    chip.verify_user_id(b"1234").unwrap();
    assert_eq!(refusal(chip.delete_all()), Refusal::SecurityStatus);
    chip.close_session().unwrap();
    assert!(chip.exists(id(0x5000_0002)).unwrap());
    // With the factory-reset credential: everything but the reserved objects goes.
    chip.write_user_id(id(FACTORY_RESET_ID), b"reset-me", 0, &[])
        .unwrap();
    chip.open_session(id(FACTORY_RESET_ID)).unwrap();
    chip.verify_user_id(b"reset-me").unwrap();
    chip.delete_all().unwrap();
    chip.close_session().unwrap();
    for gone in [KEY, USER, 0x5000_0002, 0x5000_0100] {
        assert!(
            !chip.exists(id(gone)).unwrap(),
            "{gone:#x} survived DeleteAll"
        );
    }
    assert_eq!(chip.unique_id().unwrap().len(), 18, "reserved objects stay");
}
