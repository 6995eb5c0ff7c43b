//! The applet commands against the virtual chip's applet, through an in-process transport.

use super::*;
use crate::apdu::Refusal;
use crate::virtual_se050::applet::{InProcessTransport, VirtualApplet, LIST_PAGE};
use crate::virtual_se050::store::{ObjectData, PROVISIONED_CERTIFICATE, PROVISIONED_SECRET};
use crate::virtual_se050::{ApduHandler, Processed};
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};

type Chip = Se050<InProcessTransport<VirtualApplet>>;

fn chip() -> Chip {
    Se050::select(InProcessTransport::new(VirtualApplet::in_memory())).expect("select")
}

fn id(value: u32) -> ObjectId {
    ObjectId::new(value).unwrap()
}

fn applet(chip: &mut Chip) -> &mut VirtualApplet {
    &mut chip.transport_mut().handler
}

/// Sends a raw APDU to the chip's applet; returns (data, status word).
fn raw(chip: &mut Chip, apdu: &[u8]) -> (Vec<u8>, u16) {
    let response = applet(chip).process(apdu).response;
    let sw = u16::from_be_bytes([response[response.len() - 2], response[response.len() - 1]]);
    (response[..response.len() - 2].to_vec(), sw)
}

/// Imports an X25519 private key given in RFC 7748 order (the chip takes it reversed).
fn import_pair(chip: &mut Chip, at: u32, private_rfc: [u8; 32]) {
    let mut private = private_rfc;
    private.reverse();
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &at.to_be_bytes());
    tlv::push(&mut data, TAG_2, &[CURVE_X25519]);
    tlv::push(&mut data, TAG_3, &private);
    let apdu = CommandApdu::new(CLA_IOT, INS_WRITE, 0x61, 0x00, data, None).encode();
    assert_eq!(raw(chip, &apdu).1, 0x9000);
}

#[test]
fn select_reports_a_version_with_x25519() {
    let mut chip = chip();
    let version = chip.version();
    assert!(version.has_x25519());
    assert_eq!(chip.get_version().unwrap(), version);
}

/// Pretends to be an SE050A: the same applet, but SELECT reports no DH_MONT.
struct NoMontgomery(VirtualApplet);

impl ApduHandler for NoMontgomery {
    fn process(&mut self, command: &[u8]) -> Processed {
        let mut processed = self.0.process(command);
        if command.get(1) == Some(&INS_SELECT) && processed.response.len() == 9 {
            processed.response[4] &= !(CONFIG_DH_MONT as u8);
        }
        processed
    }
}

#[test]
fn select_refuses_a_chip_without_x25519() {
    let err = Se050::select(InProcessTransport::new(NoMontgomery(
        VirtualApplet::in_memory(),
    )))
    .err()
    .expect("SE050A must be refused");
    assert!(matches!(err, Se050Error::NoX25519 { .. }));
    assert!(err.to_string().contains("SE050A has no X25519"), "{err}");
}

#[test]
fn unique_id_is_18_stable_bytes() {
    let mut chip = chip();
    let uid = chip.unique_id().unwrap();
    assert_eq!(uid.len(), 18);
    assert_eq!(chip.unique_id().unwrap(), uid);
    assert_ne!(chip.unique_id().unwrap(), self::chip().unique_id().unwrap());
}

#[test]
fn rfc7748_test_vector_through_the_chip() {
    // RFC 7748 section 6.1.
    use crate::applet::rfc7748::{ALICE_PRIVATE, ALICE_PUBLIC, BOB_PUBLIC, SHARED};
    let mut chip = chip();
    import_pair(&mut chip, 0x20, ALICE_PRIVATE);
    assert_eq!(chip.read_x25519_public(id(0x20)).unwrap(), ALICE_PUBLIC);
    assert_eq!(*chip.ecdh_x25519(id(0x20), &BOB_PUBLIC).unwrap(), SHARED);
    // Below this API the chip holds and answers the reversed order.
    let mut reversed = ALICE_PUBLIC;
    reversed.reverse();
    assert_eq!(chip.read_object(id(0x20)).unwrap(), reversed);
}

#[test]
fn generated_key_agrees_with_x25519_dalek_in_rfc7748_order() {
    let mut chip = chip();
    chip.generate_x25519(id(0x10)).unwrap();
    let chip_public = chip.read_x25519_public(id(0x10)).unwrap();
    // The store holds the chip's (reversed) order.
    match &applet(&mut chip).state().objects[&0x10].data {
        ObjectData::X25519Pair { private, public } => {
            let mut rfc_private = **private;
            rfc_private.reverse();
            let mut expected = PublicKey::from(&StaticSecret::from(rfc_private)).to_bytes();
            assert_eq!(expected, chip_public);
            expected.reverse();
            assert_eq!(*public, expected);
        }
        other => panic!("stored {other:?}"),
    }
    for _ in 0..3 {
        let peer = StaticSecret::random_from_rng(rand_core::OsRng);
        let peer_public = PublicKey::from(&peer);
        let expected = peer.diffie_hellman(&PublicKey::from(chip_public));
        let secret = chip.ecdh_x25519(id(0x10), peer_public.as_bytes()).unwrap();
        assert_eq!(*secret, *expected.as_bytes());
    }
    let counters = applet(&mut chip).counters();
    assert_eq!((counters.keygen, counters.ecdh), (1, 3));
}

#[test]
fn ecdh_with_a_low_order_point_yields_zeros_as_the_chip_does() {
    let mut chip = chip();
    chip.generate_x25519(id(0x10)).unwrap();
    assert_eq!(*chip.ecdh_x25519(id(0x10), &[0u8; 32]).unwrap(), [0u8; 32]);
    let mut one = [0u8; 32];
    one[0] = 1;
    assert_eq!(*chip.ecdh_x25519(id(0x10), &one).unwrap(), [0u8; 32]);
}

#[test]
fn regenerating_replaces_the_pair() {
    let mut chip = chip();
    chip.generate_x25519(id(0x10)).unwrap();
    let first = chip.read_x25519_public(id(0x10)).unwrap();
    chip.generate_x25519(id(0x10)).unwrap();
    assert_ne!(chip.read_x25519_public(id(0x10)).unwrap(), first);
}

#[test]
fn delete_and_exists() {
    let mut chip = chip();
    assert!(!chip.exists(id(0x10)).unwrap());
    chip.generate_x25519(id(0x10)).unwrap();
    assert!(chip.exists(id(0x10)).unwrap());
    chip.delete(id(0x10)).unwrap();
    assert!(!chip.exists(id(0x10)).unwrap());
    let err = chip.delete(id(0x10)).unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::WrongData), "{err}");
    assert!(
        err.to_string().contains("DeleteSecureObject 0x00000010"),
        "{err}"
    );
    let err = chip.ecdh_x25519(id(0x10), &[9; 32]).unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::WrongData), "{err}");
    assert_eq!(applet(&mut chip).counters().deletes, 1);
}

#[test]
fn reserved_objects_are_readable_but_not_deletable() {
    let mut chip = chip();
    assert!(chip.exists(ObjectId::UNIQUE_ID).unwrap());
    assert!(chip.exists(id(PROVISIONED_CERTIFICATE)).unwrap());
    assert!(!chip
        .read_binary(id(PROVISIONED_CERTIFICATE))
        .unwrap()
        .is_empty());
    // The driver refuses before sending anything...
    for reserved in [ObjectId::UNIQUE_ID, id(PROVISIONED_CERTIFICATE)] {
        assert!(matches!(
            chip.delete(reserved),
            Err(Se050Error::ObjectId(_))
        ));
        assert!(matches!(
            chip.generate_x25519(reserved),
            Err(Se050Error::ObjectId(_))
        ));
        assert!(matches!(
            chip.write_binary(reserved, b"x"),
            Err(Se050Error::ObjectId(_))
        ));
    }
    // ...and the chip refuses too when asked directly.
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &PROVISIONED_CERTIFICATE.to_be_bytes());
    let delete = CommandApdu::new(CLA_IOT, INS_MGMT, 0, P2_DELETE_OBJECT, data, None).encode();
    assert_eq!(raw(&mut chip, &delete).1, 0x6985);
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &0x7FFF_0100u32.to_be_bytes());
    tlv::push(&mut data, TAG_2, &[CURVE_X25519]);
    let generate = CommandApdu::new(CLA_IOT, INS_WRITE, 0x61, 0, data, None).encode();
    assert_eq!(raw(&mut chip, &generate).1, 0x6985);
    assert!(chip.exists(id(PROVISIONED_CERTIFICATE)).unwrap());
}

#[test]
fn reading_a_secret_or_private_key_is_refused_with_6985() {
    let mut chip = chip();
    let err = chip.read_object(id(PROVISIONED_SECRET)).unwrap_err();
    assert_eq!(
        err.refusal(),
        Some(Refusal::ConditionsNotSatisfied),
        "{err}"
    );
    assert!(err.to_string().contains("6985"), "{err}");
    // A private key without its public half.
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &0x30u32.to_be_bytes());
    tlv::push(&mut data, TAG_2, &[CURVE_X25519]);
    tlv::push(&mut data, TAG_3, &[5; 32]);
    let import = CommandApdu::new(CLA_IOT, INS_WRITE, 0x41, 0, data, None).encode();
    assert_eq!(raw(&mut chip, &import).1, 0x9000);
    let err = chip.read_x25519_public(id(0x30)).unwrap_err();
    assert_eq!(
        err.refusal(),
        Some(Refusal::ConditionsNotSatisfied),
        "{err}"
    );
    // It still agrees keys.
    chip.ecdh_x25519(id(0x30), &[9; 32]).unwrap();
}

#[test]
fn read_type_names_keys_files_and_secrets() {
    let mut chip = chip();
    chip.generate_x25519(id(0x10)).unwrap();
    chip.write_binary(id(0x11), b"label").unwrap();
    assert_eq!(
        chip.read_type(id(0x10)).unwrap(),
        (ObjectType::EcKeyPair, Persistence::Persistent)
    );
    assert_eq!(chip.read_type(id(0x11)).unwrap().0, ObjectType::BinaryFile);
    assert_eq!(
        chip.read_type(id(PROVISIONED_SECRET)).unwrap().0,
        ObjectType::AesKey
    );
    assert_eq!(
        chip.read_type(ObjectId::UNIQUE_ID).unwrap().0,
        ObjectType::BinaryFile
    );
    assert_eq!(
        chip.read_type(id(0x12)).unwrap_err().refusal(),
        Some(Refusal::WrongData)
    );
}

#[test]
fn list_ids_pages_through_many_objects() {
    let mut chip = chip();
    let reserved = chip.list_ids().unwrap();
    // Unique id, attestation key and certificate, provisioned secret.
    assert_eq!(reserved.len(), 4);
    let created: Vec<ObjectId> = (1..=100).map(|i| id(0x1000 + i)).collect();
    for (i, object) in created.iter().enumerate() {
        if i % 2 == 0 {
            chip.generate_x25519(*object).unwrap();
        } else {
            chip.write_binary(*object, &[i as u8; 10]).unwrap();
        }
    }
    let before = applet(&mut chip).counters().apdus;
    let listed = chip.list_ids().unwrap();
    let pages = applet(&mut chip).counters().apdus - before;
    assert_eq!(
        pages as usize,
        104usize.div_ceil(LIST_PAGE),
        "one APDU per page"
    );
    let mut expected = created.clone();
    expected.extend(reserved);
    expected.sort();
    assert_eq!(listed, expected);
    // Exactly one page's worth: the more-flag must say done at the boundary.
    let mut exact = self::chip();
    for i in 0..(LIST_PAGE - 4) as u32 {
        exact.write_binary(id(0x2000 + i), b"x").unwrap();
    }
    assert_eq!(exact.list_ids().unwrap().len(), LIST_PAGE);
}

#[test]
fn get_random_is_chunked_to_the_payload() {
    let mut chip = chip();
    assert!(chip.get_random(0).unwrap().is_empty());
    for len in [1, 32, READ_CHUNK, READ_CHUNK + 1, 2000] {
        let bytes = chip.get_random(len).unwrap();
        assert_eq!(bytes.len(), len);
        if len >= 32 {
            assert_ne!(bytes, vec![0; len]);
            assert_ne!(bytes, chip.get_random(len).unwrap());
        }
    }
}

#[test]
fn binary_files_small_large_rewritten_and_resized() {
    let mut chip = chip();
    chip.write_binary(id(0x40), b"wg0 key").unwrap();
    assert_eq!(chip.read_binary(id(0x40)).unwrap(), b"wg0 key");
    // Same size: rewritten in place.
    chip.write_binary(id(0x40), b"wg1 key").unwrap();
    assert_eq!(chip.read_binary(id(0x40)).unwrap(), b"wg1 key");
    assert_eq!(applet(&mut chip).counters().deletes, 0);
    // Another size: deleted and recreated.
    chip.write_binary(id(0x40), b"a longer label").unwrap();
    assert_eq!(chip.read_binary(id(0x40)).unwrap(), b"a longer label");
    assert_eq!(applet(&mut chip).counters().deletes, 1);
    // Large: several chunks each way.
    let large: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    let writes_before = applet(&mut chip).counters().writes;
    chip.write_binary(id(0x41), &large).unwrap();
    assert_eq!(
        applet(&mut chip).counters().writes - writes_before,
        large.len().div_ceil(WRITE_CHUNK) as u64
    );
    assert_eq!(chip.read_binary(id(0x41)).unwrap(), large);
    assert_eq!(chip.read_size(id(0x41)).unwrap(), 5000);
    // Unchunked, the file does not fit one response.
    let err = chip.read_object(id(0x41)).unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::WrongLength), "{err}");
    let max = vec![0xA5; MAX_BINARY_FILE];
    chip.write_binary(id(0x42), &max).unwrap();
    assert_eq!(chip.read_binary(id(0x42)).unwrap(), max);
}

#[test]
fn write_binary_refuses_what_the_chip_cannot_hold() {
    let mut chip = chip();
    assert!(matches!(
        chip.write_binary(id(0x40), b""),
        Err(Se050Error::InvalidArgument(_))
    ));
    let too_big = vec![0; MAX_BINARY_FILE + 1];
    assert!(matches!(
        chip.write_binary(id(0x40), &too_big),
        Err(Se050Error::InvalidArgument(_))
    ));
    chip.generate_x25519(id(0x10)).unwrap();
    let err = chip.write_binary(id(0x10), b"label").unwrap_err();
    assert!(err.to_string().contains("not a binary file"), "{err}");
    assert!(
        chip.read_x25519_public(id(0x10)).is_ok(),
        "the key survives"
    );
}

#[test]
fn a_full_chip_answers_6a84_and_recovers_after_a_delete() {
    let mut chip = chip();
    let mut created = Vec::new();
    let err = loop {
        let next = id(0x100 + created.len() as u32);
        match chip.write_binary(next, &[1; 8000]) {
            Ok(()) => created.push(next),
            Err(err) => break err,
        }
        assert!(created.len() < 10, "50 KB must fill up");
    };
    assert_eq!(err.refusal(), Some(Refusal::MemoryFull), "{err}");
    assert!(err.to_string().contains("memory full"), "{err}");
    assert_eq!(created.len(), 6);
    let failed = id(0x100 + created.len() as u32);
    assert!(!chip.exists(failed).unwrap(), "nothing half-created");
    // Key pairs fill the rest, then are refused too.
    let mut keys = 0;
    let err = loop {
        match chip.generate_x25519(id(0x5000 + keys)) {
            Ok(()) => keys += 1,
            Err(err) => break err,
        }
    };
    assert_eq!(err.refusal(), Some(Refusal::MemoryFull));
    assert!(keys > 0);
    chip.delete(created[0]).unwrap();
    chip.write_binary(failed, &[2; 8000]).unwrap();
}

#[test]
fn policies_are_enforced_with_6986() {
    let mut chip = chip();
    let only_ka = [PolicyEntry {
        auth_object: 0,
        access: POLICY_ALLOW_KA,
    }];
    chip.generate_x25519_with_policy(id(0x10), &only_ka)
        .unwrap();
    chip.ecdh_x25519(id(0x10), &[9; 32]).unwrap();
    let err = chip.read_x25519_public(id(0x10)).unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::NotAllowedByPolicy), "{err}");
    assert!(err.to_string().contains("6986"), "{err}");
    let err = chip.delete(id(0x10)).unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::NotAllowedByPolicy));
    // A policy for another auth object only: nothing allowed without a session.
    let other = [PolicyEntry {
        auth_object: 0x7000_0001,
        access: POLICY_ALLOW_KA,
    }];
    chip.generate_x25519_with_policy(id(0x11), &other).unwrap();
    let err = chip.ecdh_x25519(id(0x11), &[9; 32]).unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::NotAllowedByPolicy));
}

#[test]
fn state_persists_across_reopen_and_is_shared_between_handles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("se050.state");
    let open = || {
        let applet = VirtualApplet::open(&path, Duration::ZERO).unwrap();
        Se050::select(InProcessTransport::new(applet)).unwrap()
    };
    let mut first = open();
    let mut second = open();
    let uid = first.unique_id().unwrap();
    assert_eq!(second.unique_id().unwrap(), uid);
    first.generate_x25519(id(0x10)).unwrap();
    first.write_binary(id(0x11), b"label").unwrap();
    let public = first.read_x25519_public(id(0x10)).unwrap();
    // The other handle reloads the changed file on its next APDU.
    assert_eq!(second.read_x25519_public(id(0x10)).unwrap(), public);
    let peer = [0x42; 32];
    let secret = *first.ecdh_x25519(id(0x10), &peer).unwrap();
    assert_eq!(*second.ecdh_x25519(id(0x10), &peer).unwrap(), secret);
    drop((first, second));
    let mut reopened = open();
    assert_eq!(reopened.unique_id().unwrap(), uid);
    assert_eq!(reopened.read_x25519_public(id(0x10)).unwrap(), public);
    assert_eq!(*reopened.ecdh_x25519(id(0x10), &peer).unwrap(), secret);
    assert_eq!(reopened.read_binary(id(0x11)).unwrap(), b"label");
    let counters = crate::virtual_se050::counters::read_counters(&path);
    assert_eq!((counters.keygen, counters.ecdh), (1, 3));
}

#[test]
fn ecdh_does_not_rewrite_the_state_file() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("se050.state");
    let applet = VirtualApplet::open(&path, Duration::ZERO).unwrap();
    let mut chip = Se050::select(InProcessTransport::new(applet)).unwrap();
    chip.generate_x25519(id(0x10)).unwrap();
    let before = std::fs::metadata(&path).unwrap();
    for _ in 0..10 {
        chip.ecdh_x25519(id(0x10), &[9; 32]).unwrap();
    }
    chip.read_x25519_public(id(0x10)).unwrap();
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec(), before.len()),
        (after.ino(), after.mtime_nsec(), after.len())
    );
    assert_eq!(
        crate::virtual_se050::counters::read_counters(&path).ecdh,
        10
    );
}

#[test]
fn a_corrupt_state_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("se050.state");
    drop(VirtualApplet::open(&path, Duration::ZERO).unwrap());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = VirtualApplet::open(&path, Duration::ZERO)
        .err()
        .expect("corrupt");
    let text = err.to_string();
    assert!(
        text.contains("se050.state") && text.contains("corrupt"),
        "{text}"
    );
}

#[test]
fn keygen_and_ecdh_report_the_configured_latency() {
    let mut applet = VirtualApplet::in_memory();
    applet.set_latency(Duration::from_millis(50));
    let mut chip = Se050::select(InProcessTransport::new(applet)).unwrap();
    let started = std::time::Instant::now();
    chip.generate_x25519(id(0x10)).unwrap();
    chip.ecdh_x25519(id(0x10), &[9; 32]).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &0x10u32.to_be_bytes());
    tlv::push(&mut data, TAG_2, &[9; 32]);
    let ecdh = CommandApdu::new(CLA_IOT, INS_CRYPTO, P1_EC, P2_DH, data, Some(256)).encode();
    assert_eq!(
        applet_of(&mut chip).process(&ecdh).busy,
        Duration::from_millis(50)
    );
    let version = CommandApdu::new(CLA_IOT, INS_MGMT, 0, P2_VERSION, vec![], Some(256)).encode();
    assert_eq!(applet_of(&mut chip).process(&version).busy, Duration::ZERO);
}

fn applet_of(chip: &mut Chip) -> &mut VirtualApplet {
    applet(chip)
}

/// The whole stack as a host sees a real chip: Se050 over T=1 over I2C bytes into the virtual
/// chip's device side, which hands the APDUs to the virtual applet.
mod over_t1 {
    use super::*;
    use crate::t1::{T1Link, T1Options};
    use crate::virtual_se050::{VirtualOptions, VirtualSe050};

    struct Sleep;
    impl embedded_hal::delay::DelayNs for Sleep {
        fn delay_ns(&mut self, ns: u32) {
            std::thread::sleep(Duration::from_nanos(ns.into()));
        }
    }

    fn chip_over_t1(latency: Duration, bwt: Duration) -> Se050<T1Link<VirtualSe050, Sleep>> {
        let mut applet = VirtualApplet::in_memory();
        applet.set_latency(latency);
        let options = VirtualOptions {
            bwt,
            ..VirtualOptions::default()
        };
        let bus = VirtualSe050::new(Box::new(applet), options);
        let link = T1Link::open(bus, Sleep, T1Options::default()).expect("T=1 session");
        Se050::select(link).expect("select over T=1")
    }

    #[test]
    fn keys_files_and_byte_order_over_t1() {
        let mut chip = chip_over_t1(Duration::ZERO, Duration::from_millis(1000));
        assert!(chip.version().has_x25519());
        assert_eq!(chip.unique_id().unwrap().len(), 18);
        chip.generate_x25519(id(0x10)).unwrap();
        let public = chip.read_x25519_public(id(0x10)).unwrap();
        let peer = StaticSecret::random_from_rng(rand_core::OsRng);
        let expected = peer.diffie_hellman(&PublicKey::from(public));
        let secret = chip
            .ecdh_x25519(id(0x10), PublicKey::from(&peer).as_bytes())
            .unwrap();
        assert_eq!(*secret, *expected.as_bytes());
        // Files larger than IFSC: chaining in both directions.
        let large: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        chip.write_binary(id(0x11), &large).unwrap();
        assert_eq!(chip.read_binary(id(0x11)).unwrap(), large);
        assert_eq!(chip.get_random(800).unwrap().len(), 800);
        assert!(chip.list_ids().unwrap().contains(&id(0x11)));
        let err = chip.read_object(id(PROVISIONED_SECRET)).unwrap_err();
        assert_eq!(err.refusal(), Some(Refusal::ConditionsNotSatisfied));
    }

    #[test]
    fn a_slow_ecdh_is_waited_for_with_wtx() {
        let mut chip = chip_over_t1(Duration::from_millis(60), Duration::from_millis(20));
        chip.generate_x25519(id(0x10)).unwrap();
        let public = chip.read_x25519_public(id(0x10)).unwrap();
        let peer = StaticSecret::random_from_rng(rand_core::OsRng);
        let started = std::time::Instant::now();
        let secret = chip
            .ecdh_x25519(id(0x10), PublicKey::from(&peer).as_bytes())
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(60));
        assert_eq!(
            *secret,
            *peer.diffie_hellman(&PublicKey::from(public)).as_bytes()
        );
    }
}
