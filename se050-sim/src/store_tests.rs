use super::*;
use crate::protocol::*;

fn sample() -> ChipState {
    let mut state = ChipState::fresh();
    state.objects.insert(
        0x10,
        SecureObject {
            data: ObjectData::X25519Pair {
                private: Zeroizing::new([7; 32]),
                public: [9; 32],
            },
            policy: Some(vec![8, 0, 0, 0, 0, 0x04, 0, 0, 0]),
            origin: ORIGIN_INTERNAL,
            creator: 0x7AFF_0001,
        },
    );
    state.objects.insert(
        0x11,
        SecureObject::external(
            ObjectData::BinaryFile {
                data: vec![1; 3000],
            },
            None,
        ),
    );
    let (private, public) = crate::ec::p256_generate();
    state.objects.insert(
        0x12,
        SecureObject::external(ObjectData::P256Pair { private, public }, None),
    );
    let (private, public) = crate::ec::ed25519_generate();
    state.objects.insert(
        0x13,
        SecureObject {
            data: ObjectData::Ed25519Pair { private, public },
            policy: None,
            origin: ORIGIN_INTERNAL,
            creator: 0,
        },
    );
    // P-256 created with all its parameters, another curve created with one.
    state.curves.insert(0x03, 0x1F);
    state.curves.insert(0x04, 0x01);
    state
}

#[test]
fn fresh_chip_has_reserved_objects() {
    let state = ChipState::fresh();
    match &state.objects[&UNIQUE_ID].data {
        ObjectData::BinaryFile { data } => assert_eq!(data.len(), 18),
        other => panic!("unique id is {other:?}"),
    }
    assert!(state.objects.contains_key(&PROVISIONED_CERTIFICATE));
    assert!(state.objects.contains_key(&PROVISIONED_SECRET));
    let key = &state.objects[&ATTESTATION_KEY];
    assert!(matches!(key.data, ObjectData::P256Pair { .. }));
    assert_eq!(key.origin, ORIGIN_PROVISIONED);
    assert_ne!(ChipState::fresh(), state, "unique ids are random");
}

#[test]
fn serialization_round_trips() {
    let state = sample();
    let bytes = state.serialize();
    assert_eq!(ChipState::deserialize(&bytes).unwrap(), state);
}

#[test]
fn every_truncation_and_every_flipped_byte_is_refused() {
    let bytes = sample().serialize();
    for len in 0..bytes.len() {
        assert!(
            ChipState::deserialize(&bytes[..len]).is_err(),
            "truncated to {len}"
        );
    }
    for at in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.to_vec();
        bad[at] ^= 0x20;
        assert!(ChipState::deserialize(&bad).is_err(), "flipped byte {at}");
    }
}

#[test]
fn saves_persist_and_another_store_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chip.state");
    let mut first = Store::open(&path).unwrap();
    let mut second = Store::open(&path).unwrap();
    assert_eq!(
        first.state(),
        second.state(),
        "both opened the same fresh chip"
    );
    let saved = sample();
    first.commit(saved.clone()).unwrap();
    second.refresh().unwrap();
    assert_eq!(second.state(), &saved);
    assert!(!sibling(&path, ".tmp").exists());
    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.state(), &saved);
}

#[test]
fn every_same_size_rewrite_is_seen_by_another_store() {
    // Same length each time, in quick succession: each one is still reloaded.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chip.state");
    let mut writer = Store::open(&path).unwrap();
    let mut reader = Store::open(&path).unwrap();
    for i in 0..40u8 {
        let mut next = writer.state().clone();
        next.objects.insert(
            0x10,
            SecureObject::external(
                ObjectData::X25519Pair {
                    private: Zeroizing::new([i; 32]),
                    public: [i; 32],
                },
                None,
            ),
        );
        writer.commit(next).unwrap();
        reader.refresh().unwrap();
        assert_eq!(reader.state(), writer.state(), "rewrite {i} missed");
    }
}

#[test]
fn corrupt_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chip.state");
    fs::write(&path, b"VSE050ST garbage that is not a state").unwrap();
    let err = Store::open(&path)
        .err()
        .expect("corrupt file must not load");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("corrupt"), "{text}");
}

#[test]
fn a_symlink_planted_at_the_temporary_name_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chip.state");
    let victim = dir.path().join("victim");
    fs::write(&victim, b"not the chip's").unwrap();
    let mut store = Store::open(&path).unwrap();
    std::os::unix::fs::symlink(&victim, sibling(&path, ".tmp")).unwrap();
    let saved = sample();
    store.commit(saved.clone()).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"not the chip's");
    assert_eq!(Store::open(&path).unwrap().state(), &saved);
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file());
}

#[test]
fn a_save_that_cannot_write_its_temporary_file_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chip.state");
    let mut store = Store::open(&path).unwrap();
    let before = store.state().clone();
    // A directory at the temporary name: neither unlinked nor opened, even by root.
    fs::create_dir(sibling(&path, ".tmp")).unwrap();
    fs::write(sibling(&path, ".tmp").join("x"), b"").unwrap();
    assert!(store.commit(sample()).is_err());
    assert_eq!(store.state(), &before);
}

#[test]
fn the_state_file_is_private_and_a_rewrite_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chip.state");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let mut store = Store::open(&path).unwrap();
    assert_eq!(
        mode(&path),
        0o600,
        "a fresh state file holding keys must be private"
    );
    // A leftover temporary file with loose permissions does not leak into the new state.
    fs::write(sibling(&path, ".tmp"), b"old").unwrap();
    fs::set_permissions(sibling(&path, ".tmp"), fs::Permissions::from_mode(0o666)).unwrap();
    store.commit(ChipState::fresh()).unwrap();
    assert_eq!(mode(&path), 0o600);
    // An administrator shares the chip with a group: the next rewrite keeps that.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let before = fs::metadata(&path).unwrap().ino();
    store.commit(ChipState::fresh()).unwrap();
    assert_ne!(fs::metadata(&path).unwrap().ino(), before, "not rewritten");
    assert_eq!(mode(&path), 0o640);
}

#[test]
fn a_version_1_file_written_by_hand_loads() {
    // One object: 0x00000010, an X25519 pair (kind 1) with policy `08 00000000 04000000`,
    // private key 32 x 07 and public key 32 x 09 (chip order): the format of earlier builds.
    let mut bytes = b"VSE050ST".to_vec();
    bytes.extend_from_slice(&[0x01, 0x00]); // version 1, LE
    bytes.extend_from_slice(&[0x01, 0x00, 0x00, 0x00]); // one object, LE
    bytes.extend_from_slice(&[0x00, 0x00, 0x00, 0x10]); // id, BE
    bytes.push(0x01);
    bytes.extend_from_slice(&[0x09, 0x00]); // policy length, LE
    bytes.extend_from_slice(&[0x08, 0, 0, 0, 0, 0x04, 0, 0, 0]);
    bytes.extend_from_slice(&[0x40, 0x00, 0x00, 0x00]); // payload length 64, LE
    bytes.extend_from_slice(&[0x07; 32]);
    bytes.extend_from_slice(&[0x09; 32]);
    let crc = CRC32.checksum(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let state = ChipState::deserialize(&bytes).unwrap();
    let object = &state.objects[&0x10];
    assert_eq!(
        object.policy.as_deref(),
        Some(&[8, 0, 0, 0, 0, 4, 0, 0, 0][..])
    );
    match &object.data {
        ObjectData::X25519Pair { private, public } => {
            assert_eq!(**private, [7; 32]);
            assert_eq!(*public, [9; 32]);
        }
        other => panic!("{other:?}"),
    }
    // Earlier builds answered X25519 pairs as generated inside: that is the origin it loads with.
    assert_eq!((object.origin, object.creator), (ORIGIN_INTERNAL, 0));
    // Written back as version 3, which loads to the same state.
    let written = state.serialize();
    assert_eq!(&written[8..10], &[0x03, 0x00]);
    assert_eq!(ChipState::deserialize(&written).unwrap(), state);
    // The version-2 bytes of that object: origin 02 and creator 0 after the policy.
    let at = 8 + 2 + 4 + 4 + 1 + 2 + 9;
    assert_eq!(&written[at..at + 5], &[0x02, 0, 0, 0, 0]);
}
