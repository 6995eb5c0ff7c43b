//! Transient objects (se050_sim's applet/transient.rs) driven by this driver's `Se050`: the
//! pair, driver and chip, against each other.

use super::applet::{InProcessTransport, VirtualApplet};
use super::ApduHandler;
use crate::apdu::{tlv, CommandApdu, Refusal};
use crate::applet::object_type::{ObjectType, Persistence};
use crate::applet::protocol::*;
use crate::applet::{ObjectId, Se050};
use crate::t1::ApduTransport;
use rand_core::OsRng;
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};

type Chip = Se050<InProcessTransport<VirtualApplet>>;

const TRANSIENT_KEY: u32 = 0x2000_0001;
const USER: u32 = 0x7000_0010;

fn generate_transient(chip: &mut Chip, id: u32) -> u16 {
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &id.to_be_bytes());
    tlv::push(&mut data, TAG_2, &[CURVE_X25519]);
    let apdu = CommandApdu::new(
        CLA_IOT,
        INS_WRITE | INS_FLAG_TRANSIENT,
        P1_KEY_PAIR | P1_EC,
        P2_DEFAULT,
        data,
        None,
    );
    let apdu = match chip.session() {
        Some(session) => crate::applet::session::wrap(&session, &apdu),
        None => apdu,
    };
    let answer = chip.transport_mut().transceive(&apdu.encode()).unwrap();
    u16::from_be_bytes([answer[answer.len() - 2], answer[answer.len() - 1]])
}

fn id(value: u32) -> ObjectId {
    ObjectId::new(value).unwrap()
}

#[test]
fn a_transient_key_works_stays_out_of_the_state_file_and_is_lost_at_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("chip.state");
    let open = || {
        Se050::select(InProcessTransport::new(
            VirtualApplet::open(&state, Duration::ZERO).unwrap(),
        ))
        .unwrap()
    };
    let mut chip = open();
    assert_eq!(generate_transient(&mut chip, TRANSIENT_KEY), 0x9000);
    assert!(chip.exists(id(TRANSIENT_KEY)).unwrap());
    assert!(chip.list_ids().unwrap().contains(&id(TRANSIENT_KEY)));
    assert_eq!(
        chip.read_type(id(TRANSIENT_KEY)).unwrap(),
        (ObjectType::EcKeyPair, Persistence::Transient)
    );
    let public = chip.read_x25519_public(id(TRANSIENT_KEY)).unwrap();
    let peer = StaticSecret::random_from_rng(OsRng);
    let shared = chip
        .ecdh_x25519(id(TRANSIENT_KEY), PublicKey::from(&peer).as_bytes())
        .unwrap();
    assert_eq!(
        *shared,
        peer.diffie_hellman(&PublicKey::from(public)).to_bytes()
    );
    // A persistent write by this process keeps it, in RAM only: the file never has it.
    chip.generate_x25519(id(0x2000_0002)).unwrap();
    assert!(chip.exists(id(TRANSIENT_KEY)).unwrap());
    let mut other = open();
    assert!(!other.exists(id(TRANSIENT_KEY)).unwrap());
    assert!(other.exists(id(0x2000_0002)).unwrap());
    // Another process's write reloads the file here: the transient object stays.
    other.generate_x25519(id(0x2000_0003)).unwrap();
    assert!(chip.exists(id(TRANSIENT_KEY)).unwrap());
    // A persistent object is not made transient.
    assert_eq!(generate_transient(&mut chip, 0x2000_0002), 0x6985);
    // A reset loses it.
    chip.transport_mut().handler.reset();
    chip.transport_mut()
        .transceive(&select_command().encode())
        .unwrap();
    assert!(!chip.exists(id(TRANSIENT_KEY)).unwrap());
    assert!(chip.exists(id(0x2000_0002)).unwrap());
}

#[test]
fn a_transient_object_made_in_a_session_goes_with_the_session() {
    let mut chip = Se050::select(InProcessTransport::new(VirtualApplet::in_memory())).unwrap();
    chip.write_user_id(id(USER), b"1234", 3, &[]).unwrap();
    assert_eq!(
        generate_transient(&mut chip, 0x2000_0009),
        0x9000,
        "outside"
    );
    chip.open_session(id(USER)).unwrap();
    chip.verify_user_id(b"1234").unwrap();
    assert_eq!(generate_transient(&mut chip, TRANSIENT_KEY), 0x9000);
    assert_eq!(
        chip.read_type(id(TRANSIENT_KEY)).unwrap().1,
        Persistence::Transient
    );
    chip.close_session().unwrap();
    assert!(
        !chip.exists(id(TRANSIENT_KEY)).unwrap(),
        "gone with its session"
    );
    assert!(chip.exists(id(0x2000_0009)).unwrap(), "made outside: stays");
    let refused = chip.read_type(id(TRANSIENT_KEY)).unwrap_err();
    assert_eq!(refused.refusal(), Some(Refusal::WrongData));
}
