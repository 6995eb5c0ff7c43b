//! ReadObject with attestation at the APDU level, applet 3.x and 7.2: commands written by hand
//! from NXP's `Se05x_API_ReadObject_W_Attst` / `_V2` (se05x_APDU_impl.h: extended Lc, Le 00 00),
//! signatures and the certificate chain checked by an outside implementation.

use super::outside;
use super::test_support::{create_p256, exchange, hex, hx, selected, send, tlvs};
use super::*;
use sha2::Digest;

const FRESHNESS: &str = "000102030405060708090A0B0C0D0E0F";

/// The attested read of `id` with the provisioned key 0xF0000012, EC_SHA_256 (0x21).
fn attested_read(id: &str) -> Vec<u8> {
    hx(&format!(
        "80 22 00 00 00 00 21 41 04 {id} 45 04 F0000012 46 01 21 47 10 {FRESHNESS} 00 00"
    ))
}

/// The chip's attestation public key, checked against its certificate and this chip's root.
fn attestation_public_key(chip: &mut VirtualApplet) -> Vec<u8> {
    let (answer, sw) = send(chip, "80 02 00 00 06 41 04 F0000012 00", true);
    assert_eq!(sw, 0x9000);
    let public = tlvs(&answer).require(TAG_1).unwrap().to_vec();
    let (answer, sw) = exchange(chip, &hx("80 02 00 00 00 00 06 41 04 F0000013 00 00"));
    assert_eq!(sw, 0x9000);
    let certificate = tlvs(&answer).require(TAG_1).unwrap().to_vec();
    let root = chip.attestation_root_pem().expect("the chip's test root");
    assert!(root.contains("BEGIN CERTIFICATE") && !root.contains("PRIVATE"));
    let certified = outside::chain_public_key(&root, &certificate).expect("chain verifies");
    assert_eq!(
        certified, public,
        "the certificate is the attestation key's"
    );
    assert!(
        outside::openssl_verifies(&root, &certificate),
        "openssl verify -x509_strict"
    );
    // Another chip's root does not verify this chip's certificate.
    let other = VirtualApplet::in_memory().attestation_root_pem().unwrap();
    assert!(outside::chain_public_key(&other, &certificate).is_err());
    public
}

#[test]
fn attested_read_3x_signs_data_attributes_timestamp_freshness_and_chip_id() {
    let mut chip = selected();
    create_p256(&mut chip);
    assert_eq!(chip.version().major, 3);
    let public = attestation_public_key(&mut chip);
    send(&mut chip, "80 01 61 00 09 41 04 00000050 42 01 03", false);
    let (answer, sw) = exchange(&mut chip, &attested_read("00000050"));
    assert_eq!(sw, 0x9000);
    let t = tlvs(&answer);
    let data = t.require(TAG_1).unwrap();
    let attributes = t.require(TAG_2).unwrap();
    let timestamp = t.require(TAG_3).unwrap();
    let freshness = t.require(TAG_4).unwrap();
    let chip_id = t.require(TAG_5).unwrap();
    let signature = t.require(TAG_6).unwrap();
    assert_eq!(
        (data.len(), data[0]),
        (65, 0x04),
        "the public key, as ReadObject"
    );
    assert_eq!(&attributes[..4], &hx("00000050"));
    assert_eq!(*attributes.last().unwrap(), ORIGIN_INTERNAL);
    assert_eq!(timestamp.len(), TIMESTAMP_LEN);
    assert_eq!(freshness, hx(FRESHNESS));
    let (unique, _) = send(&mut chip, "80 02 00 00 06 41 04 7FFF0206 00", true);
    assert_eq!(chip_id, tlvs(&unique).require(TAG_1).unwrap());
    // The tag order of NXP's parser: 41 42 43 44 45 46.
    let tags: Vec<u8> = t.iter().map(|(tag, _)| tag).collect();
    assert_eq!(tags, [0x41, 0x42, 0x43, 0x44, 0x45, 0x46]);
    let mut message = Vec::new();
    for part in [data, attributes, timestamp, freshness, chip_id] {
        message.extend_from_slice(part);
    }
    assert!(outside::ecdsa_sha256_valid(&public, &message, signature));
    message[70] ^= 1;
    assert!(!outside::ecdsa_sha256_valid(&public, &message, signature));
    assert_eq!(chip.counters().attested_reads, 1);
}

#[test]
fn attested_read_7_2_signs_the_command_hash_and_tlvs() {
    let mut chip = selected();
    chip.set_version(VIRTUAL_VERSION_7_2);
    let public = attestation_public_key(&mut chip);
    // A binary file, read whole.
    let command = "80 01 06 00 0F 41 04 00000051 43 02 0003 44 03 616263";
    assert_eq!(send(&mut chip, command, false).1, 0x9000);
    let apdu = attested_read("00000051");
    let (answer, sw) = exchange(&mut chip, &apdu);
    assert_eq!(sw, 0x9000);
    let t = tlvs(&answer);
    let tags: Vec<u8> = t.iter().map(|(tag, _)| tag).collect();
    assert_eq!(tags, [0x41, 0x42, 0x43, 0x44, 0x4F, 0x52]);
    let data = t.require(TAG_1).unwrap();
    let chip_id = t.require(TAG_2).unwrap();
    let attributes = t.require(TAG_3).unwrap();
    let size = t.require(TAG_4).unwrap();
    let timestamp = t.require(TAG_TIMESTAMP).unwrap();
    let signature = t.require(TAG_SIGNATURE).unwrap();
    assert_eq!(data, b"abc");
    assert_eq!(size, hx("0003"));
    assert_eq!(chip_id.len(), UNIQUE_ID_LEN);
    // 7.x attributes end with origin, then the object version (4 bytes).
    assert_eq!(&attributes[attributes.len() - 5..], &hx("01 00000000"));
    // What NXP's verifier hashes: SHA-256(CLA INS P1 P2 00 00 Lc data) || TLVs, 82-form lengths.
    let mut command = apdu[..4].to_vec();
    command.extend_from_slice(&[0x00, 0x00, apdu[6]]);
    command.extend_from_slice(&apdu[7..apdu.len() - 2]);
    let mut message = sha2::Sha256::digest(&command).to_vec();
    for (tag, value) in [
        (0x41, data),
        (0x42, chip_id),
        (0x43, attributes),
        (0x44, size),
        (0x4F, timestamp),
    ] {
        message.extend_from_slice(&[tag, 0x82]);
        message.extend_from_slice(&(value.len() as u16).to_be_bytes());
        message.extend_from_slice(value);
    }
    assert!(outside::ecdsa_sha256_valid(&public, &message, signature));
    // The freshness is inside the command's hash: another nonce, another message.
    let mut replay = message.clone();
    replay[0] ^= 1;
    assert!(!outside::ecdsa_sha256_valid(&public, &replay, signature));
    // ReadObjectAttributes of a 7.2 chip: TAG_3.
    let (answer, sw) = send(&mut chip, "80 02 00 3B 06 41 04 00000051", false);
    assert_eq!(sw, 0x9000);
    assert_eq!(tlvs(&answer).require(TAG_3).unwrap(), attributes);
    assert!(tlvs(&answer).get(TAG_2).is_none());
}

#[test]
fn attested_read_without_read_rights_omits_the_data_and_refusals_are_the_chips() {
    let mut chip = selected();
    create_p256(&mut chip);
    // A P-256 key whose policy lets everyone sign only: attested, without its public key.
    let command = "80 01 61 00 14 11 09 08 00000000 10000000 41 04 00000052 42 01 03";
    assert_eq!(send(&mut chip, command, false).1, 0x9000);
    let (answer, sw) = exchange(&mut chip, &attested_read("00000052"));
    assert_eq!(sw, 0x9000);
    let tags: Vec<u8> = tlvs(&answer).iter().map(|(tag, _)| tag).collect();
    assert_eq!(tags, [0x42, 0x43, 0x44, 0x45, 0x46], "no TAG_1");
    // A private-only X25519 key and a secret have no readable contents either.
    let (answer, sw) = exchange(&mut chip, &attested_read("F0000100"));
    assert_eq!(sw, 0x9000);
    assert!(tlvs(&answer).get(TAG_1).is_none());

    let read = |chip: &mut VirtualApplet, body: &str| {
        let body = hx(body);
        let mut apdu = hx("80 22 00 00 00 00");
        apdu.push(body.len() as u8);
        apdu.extend_from_slice(&body);
        apdu.extend_from_slice(&[0, 0]);
        exchange(chip, &apdu).1
    };
    let ok = format!("41 04 00000052 45 04 F0000012 46 01 21 47 10 {FRESHNESS}");
    assert_eq!(read(&mut chip, &ok), 0x9000);
    // Freshness of 15 bytes, or none: 6A80.
    let short = format!(
        "41 04 00000052 45 04 F0000012 46 01 21 47 0F {}",
        &FRESHNESS[2..]
    );
    assert_eq!(read(&mut chip, &short), 0x6A80);
    assert_eq!(
        read(&mut chip, "41 04 00000052 45 04 F0000012 46 01 21"),
        0x6A80
    );
    // No attestation key id, no algorithm: 6A80.
    let no_key = format!("41 04 00000052 46 01 21 47 10 {FRESHNESS}");
    assert_eq!(read(&mut chip, &no_key), 0x6A80);
    let no_algo = format!("41 04 00000052 45 04 F0000012 47 10 {FRESHNESS}");
    assert_eq!(read(&mut chip, &no_algo), 0x6A80);
    // An algorithm other than EC_SHA_256 with this key: 6A80.
    let sha384 = format!("41 04 00000052 45 04 F0000012 46 01 22 47 10 {FRESHNESS}");
    assert_eq!(read(&mut chip, &sha384), 0x6A80);
    // A missing object, a missing attestation key: 6A80.
    let missing = format!("41 04 00000099 45 04 F0000012 46 01 21 47 10 {FRESHNESS}");
    assert_eq!(read(&mut chip, &missing), 0x6A80);
    let no_such_key = format!("41 04 00000052 45 04 00000099 46 01 21 47 10 {FRESHNESS}");
    assert_eq!(read(&mut chip, &no_such_key), 0x6A80);
    // The attesting key must be a P-256 pair (not a file): 6985, and its policy must allow
    // attestation for the caller: a key whose policy lacks ALLOW_ATTESTATION answers 6986.
    let file_as_key = format!("41 04 00000052 45 04 F0000013 46 01 21 47 10 {FRESHNESS}");
    assert_eq!(read(&mut chip, &file_as_key), 0x6985);
    let by_user_key = format!("41 04 00000052 45 04 00000052 46 01 21 47 10 {FRESHNESS}");
    assert_eq!(read(&mut chip, &by_user_key), 0x6986);
    // With the bit (sign + attestation), a user's key attests.
    let command = "80 01 61 00 14 11 09 08 00000000 10008000 41 04 00000053 42 01 03";
    assert_eq!(send(&mut chip, command, false).1, 0x9000);
    let by_attesting = format!("41 04 00000052 45 04 00000053 46 01 21 47 10 {FRESHNESS}");
    assert_eq!(read(&mut chip, &by_attesting), 0x9000);
    // Nobody may sign with the provisioned attestation key itself.
    let sign = format!(
        "80 03 0C 09 2B 41 04 F0000012 42 01 21 43 20 {} 00",
        hex(&[7; 32])
    );
    assert_eq!(send(&mut chip, &sign, true).1, 0x6986);
    assert_eq!(chip.counters().attested_reads, 4);
}

#[test]
fn applet_versions_by_name() {
    assert_eq!(version_named("3.1").unwrap(), VIRTUAL_VERSION);
    assert_eq!(version_named("7.2").unwrap(), VIRTUAL_VERSION_7_2);
    assert!(version_named("7").is_err() && version_named("").is_err());
    let mut chip = selected();
    chip.set_version(VIRTUAL_VERSION_7_2);
    let (answer, _) = exchange(&mut chip, &hx("80 04 00 20 00"));
    assert_eq!(
        answer,
        hx("41 07 07 02 00 3F 9F FF FF"),
        "GetVersion of an SE050E"
    );
}

/// ReadObjectAttributes with attestation (80 22 00 3B): attributes, timestamp, freshness, chip
/// id and signature (3.x), no data; the signature as for ReadObject without TAG_1.
#[test]
fn attested_attributes_3x() {
    let mut chip = selected();
    let public = attestation_public_key(&mut chip);
    // A UserID: its failure counter is what Nitrokey reads this way.
    let (_, sw) = send(
        &mut chip,
        "80 41 07 00 0C 41 04 7AFF0001 42 04 31323334",
        false,
    );
    assert_eq!(sw, 0x9000);
    let apdu = hx(&format!(
        "80 22 00 3B 00 00 21 41 04 7AFF0001 45 04 F0000012 46 01 21 47 10 {FRESHNESS} 00 00"
    ));
    let (answer, sw) = exchange(&mut chip, &apdu);
    assert_eq!(sw, 0x9000);
    let t = tlvs(&answer);
    let tags: Vec<u8> = t.iter().map(|(tag, _)| tag).collect();
    assert_eq!(tags, [0x42, 0x43, 0x44, 0x45, 0x46]);
    let attributes = t.require(TAG_2).unwrap();
    assert_eq!(&attributes[..6], &hx("7AFF0001 0C 02"));
    let mut message = Vec::new();
    for tag in [TAG_2, TAG_3, TAG_4, TAG_5] {
        message.extend_from_slice(t.require(tag).unwrap());
    }
    assert!(outside::ecdsa_sha256_valid(
        &public,
        &message,
        t.require(TAG_6).unwrap()
    ));
    // A readable file's attributes come without its contents too.
    let command = "80 01 06 00 0F 41 04 00000054 43 02 0003 44 03 616263";
    assert_eq!(send(&mut chip, command, false).1, 0x9000);
    let apdu = hx(&format!(
        "80 22 00 3B 00 00 21 41 04 00000054 45 04 F0000012 46 01 21 47 10 {FRESHNESS} 00 00"
    ));
    let (answer, sw) = exchange(&mut chip, &apdu);
    assert_eq!(sw, 0x9000);
    assert!(tlvs(&answer).get(TAG_1).is_none(), "no contents");
}
