//! P-256 and Ed25519 at the APDU level: command bytes written by hand from NXP's builders
//! (se05x_APDU_impl.h: `Se05x_API_WriteECKey`, `Se05x_API_ReadObject`, `Se05x_API_ECDSASign`,
//! `Se05x_API_EdDSASign`, `Se05x_API_ECDHGenerateSharedSecret`; se05x_04_xx_APDU_impl.h:
//! `Se05x_API_ReadObjectAttributes`), every signature checked by an outside implementation.

use super::outside;
use super::test_support::{create_p256, exchange, hex, hx, selected, send, tlvs};
use super::*;

/// RFC 8032 7.1 TEST 2.
const ED_SECRET: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const ED_PUBLIC: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const ED_SIGNATURE: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

fn reversed(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.reverse();
    bytes
}

#[test]
fn p256_generate_read_and_ecdsa_sign_verified_outside() {
    let mut chip = selected();
    create_p256(&mut chip);
    // WriteECKey, key pair generated inside: 80 01 61 00, 41 id, 42 curve NIST_P256.
    let (_, sw) = send(&mut chip, "80 01 61 00 09 41 04 00000020 42 01 03", false);
    assert_eq!(sw, 0x9000);
    let (answer, sw) = send(&mut chip, "80 02 00 00 06 41 04 00000020 00", true);
    assert_eq!(sw, 0x9000);
    let public = tlvs(&answer).require(TAG_1).unwrap().to_vec();
    assert_eq!((public.len(), public[0]), (65, 0x04), "04 || X || Y");
    // ReadSize answers the curve's size.
    let (answer, _) = send(&mut chip, "80 02 00 07 06 41 04 00000020", false);
    assert_eq!(answer, hx("41 02 0020"));
    // ECDSASign, SHA-256 (0x21), on a hash the host made.
    let hash = hx("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08");
    let command = format!(
        "80 03 0C 09 2B 41 04 00000020 42 01 21 43 20 {} 00",
        hex(&hash)
    );
    let (answer, sw) = send(&mut chip, &command, true);
    assert_eq!(sw, 0x9000);
    let signature = tlvs(&answer).require(TAG_1).unwrap().to_vec();
    assert_eq!(signature[0], 0x30, "a DER ECDSA-Sig-Value");
    assert!(outside::ecdsa_prehash_valid(&public, &hash, &signature));
    let mut other = hash.clone();
    other[0] ^= 1;
    assert!(
        !outside::ecdsa_prehash_valid(&public, &other, &signature),
        "the outside check tells signatures apart"
    );
    // Every ECDSA algorithm, each checked outside with its hash.
    for (algo, name, len) in [
        (0x11u8, "sha1", 20usize),
        (0x25, "sha224", 28),
        (0x22, "sha384", 48),
        (0x26, "sha512", 64),
    ] {
        let hash: Vec<u8> = (0..len as u8).collect();
        let command = format!(
            "80 03 0C 09 {:02X} 41 04 00000020 42 01 {algo:02X} 43 {len:02X} {} 00",
            11 + len,
            hex(&hash)
        );
        let (answer, sw) = send(&mut chip, &command, true);
        assert_eq!(sw, 0x9000, "{name}");
        let signature = tlvs(&answer).require(TAG_1).unwrap().to_vec();
        assert!(
            outside::ecdsa_prehash_valid_with(name, &public, &hash, &signature),
            "{name}"
        );
    }
    assert_eq!(chip.counters().signatures, 5);
    assert_eq!(chip.counters().keygen, 1);
    // Generated inside: origin INTERNAL (02), last byte of the attributes (3.x: TAG_2).
    let (answer, sw) = send(&mut chip, "80 02 00 3B 06 41 04 00000020", false);
    assert_eq!(sw, 0x9000);
    let attributes = tlvs(&answer).require(TAG_2).unwrap().to_vec();
    assert_eq!(&attributes[..6], &hx("00000020 01 01"));
    assert_eq!(*attributes.last().unwrap(), ORIGIN_INTERNAL);
}

#[test]
fn ecdsa_refusals_answer_the_chips_status_words() {
    let mut chip = selected();
    create_p256(&mut chip);
    send(&mut chip, "80 01 61 00 09 41 04 00000020 42 01 03", false);
    let hash = [0x11u8; 32];
    let sign = |chip: &mut VirtualApplet, id: &str, algo: &str, input: &[u8]| {
        let lc = 6 + 3 + 2 + input.len();
        let command = format!(
            "80 03 0C 09 {lc:02X} 41 04 {id} 42 01 {algo} 43 {:02X} {} 00",
            input.len(),
            hex(input)
        );
        send(chip, &command, true).1
    };
    assert_eq!(sign(&mut chip, "00000020", "21", &hash), 0x9000);
    // A hash of the wrong length for the algorithm: wrong data.
    assert_eq!(sign(&mut chip, "00000020", "21", &hash[..31]), 0x6A80);
    assert_eq!(sign(&mut chip, "00000020", "22", &hash), 0x6A80);
    // SHA-384's 48 bytes are accepted (the chip truncates to the curve).
    assert_eq!(sign(&mut chip, "00000020", "22", &[0x22; 48]), 0x9000);
    // An unknown algorithm, and EdDSA's algorithm on a P-256 key: wrong data.
    assert_eq!(sign(&mut chip, "00000020", "77", &hash), 0x6A80);
    assert_eq!(sign(&mut chip, "00000020", "A3", &hash), 0x6A80);
    // The wrong kind of object: an X25519 key, a binary file (the unique id): 6985.
    send(&mut chip, "80 01 61 00 09 41 04 00000030 42 01 41", false);
    assert_eq!(sign(&mut chip, "00000030", "21", &hash), 0x6985);
    assert_eq!(sign(&mut chip, "7FFF0206", "21", &hash), 0x6985);
    // No such object: 6A80.
    assert_eq!(sign(&mut chip, "00000031", "21", &hash), 0x6A80);
    // A policy without ALLOW_SIGN (read, gen, delete for everyone): 6986.
    let (_, sw) = send(
        &mut chip,
        "80 01 61 00 14 11 09 08 00000000 002C0000 41 04 00000022 42 01 03",
        false,
    );
    assert_eq!(sw, 0x9000);
    assert_eq!(sign(&mut chip, "00000022", "21", &hash), 0x6986);
    // An unknown curve (P-224, 0x02) or a curve byte of the wrong length: 6A80.
    let (_, sw) = send(&mut chip, "80 01 61 00 09 41 04 00000023 42 01 02", false);
    assert_eq!(sw, 0x6A80);
    let (_, sw) = send(&mut chip, "80 01 61 00 0A 41 04 00000023 42 02 0300", false);
    assert_eq!(sw, 0x6A80);
    // Two successful signatures counted, none of the refusals.
    assert_eq!(chip.counters().signatures, 2);
}

#[test]
fn ed25519_known_key_signs_rfc8032_and_answers_in_the_chips_order() {
    let mut chip = selected();
    // WriteECKey with the RFC 8032 secret (sent unreversed, as NXP's middleware does).
    let command = format!("80 01 61 00 2B 41 04 00000021 42 01 40 43 20 {ED_SECRET}");
    let (_, sw) = send(&mut chip, &command, false);
    assert_eq!(sw, 0x9000);
    let (answer, _) = send(&mut chip, "80 02 00 00 06 41 04 00000021 00", true);
    let public = tlvs(&answer).require(TAG_1).unwrap().to_vec();
    assert_eq!(
        public,
        reversed(hx(ED_PUBLIC)),
        "the chip's order: reversed"
    );
    // EdDSASign, ED25519PURE (A3), the whole message (0x72).
    let (answer, sw) = send(
        &mut chip,
        "80 03 0C 09 0C 41 04 00000021 42 01 A3 43 01 72 00",
        true,
    );
    assert_eq!(sw, 0x9000);
    let answered = tlvs(&answer).require(TAG_1).unwrap().to_vec();
    let expected = hx(ED_SIGNATURE);
    let mut chip_order = reversed(expected[..32].to_vec());
    chip_order.extend(reversed(expected[32..].to_vec()));
    assert_eq!(answered, chip_order, "R and S each reversed");
    // Outside: the host's reversal gives RFC 8032's signature, valid for the RFC public key.
    let mut rfc = reversed(answered[..32].to_vec());
    rfc.extend(reversed(answered[32..].to_vec()));
    assert!(outside::ed25519_valid(&hx(ED_PUBLIC), &[0x72], &rfc));
    assert!(!outside::ed25519_valid(&hx(ED_PUBLIC), &[0x73], &rfc));
    // Written from outside: origin EXTERNAL.
    let (answer, _) = send(&mut chip, "80 02 00 3B 06 41 04 00000021", false);
    let attributes = tlvs(&answer).require(TAG_2).unwrap().to_vec();
    assert_eq!(*attributes.last().unwrap(), ORIGIN_EXTERNAL);
    // A given public key that does not match the secret: 6A80.
    let command =
        format!("80 01 61 00 4D 41 04 00000024 42 01 40 43 20 {ED_SECRET} 44 20 {ED_PUBLIC}");
    assert_eq!(
        send(&mut chip, &command, false).1,
        0x6A80,
        "public key in RFC order"
    );
    let command = format!(
        "80 01 61 00 4D 41 04 00000024 42 01 40 43 20 {ED_SECRET} 44 20 {}",
        hex(&reversed(hx(ED_PUBLIC)))
    );
    assert_eq!(
        send(&mut chip, &command, false).1,
        0x9000,
        "in the chip's order"
    );
}

#[test]
fn ed25519_generated_key_signs_up_to_the_apdu_limit() {
    let mut chip = selected();
    let (_, sw) = send(&mut chip, "80 01 61 00 09 41 04 00000025 42 01 40", false);
    assert_eq!(sw, 0x9000);
    let (answer, _) = send(&mut chip, "80 02 00 00 06 41 04 00000025 00", true);
    let public = reversed(tlvs(&answer).require(TAG_1).unwrap().to_vec());
    // An extended APDU (as NXP sends long data): 41 id, 42 A3, 43 82 LL LL message.
    let sign = |chip: &mut VirtualApplet, algo: u8, message: &[u8]| {
        let mut data = hx("41 04 00000025 42 01");
        data.push(algo);
        data.extend_from_slice(&[0x43, 0x82]);
        data.extend_from_slice(&(message.len() as u16).to_be_bytes());
        data.extend_from_slice(message);
        let mut command = hx("80 03 0C 09 00");
        command.extend_from_slice(&(data.len() as u16).to_be_bytes());
        command.extend_from_slice(&data);
        command.extend_from_slice(&[0x00, 0x00]);
        exchange(chip, &command)
    };
    // 876 bytes of message: 889 bytes of data, the most one APDU carries.
    let message: Vec<u8> = (0..876u32).map(|i| (i * 31) as u8).collect();
    let (answer, sw) = sign(&mut chip, EDDSA_ED25519_PURE, &message);
    assert_eq!(sw, 0x9000);
    let answered = tlvs(&answer).require(TAG_1).unwrap().to_vec();
    let mut rfc = reversed(answered[..32].to_vec());
    rfc.extend(reversed(answered[32..].to_vec()));
    assert!(outside::ed25519_valid(&public, &message, &rfc));
    // One byte more is over the chip's limit: 6700.
    let longer: Vec<u8> = (0..877u32).map(|i| i as u8).collect();
    assert_eq!(sign(&mut chip, EDDSA_ED25519_PURE, &longer).1, 0x6700);
    // An ECDSA algorithm on an Ed25519 key: 6A80.
    assert_eq!(sign(&mut chip, ECDSA_SHA_256, &[0; 32]).1, 0x6A80);
    assert_eq!(chip.counters().signatures, 1);
}

/// NIST CAVP KAS ECC CDH (ecccdhtestvectors), P-256 COUNT = 0, through the chip's commands.
#[test]
fn p256_ecdh_known_vector_and_refusals() {
    let mut chip = selected();
    create_p256(&mut chip);
    let command = "80 01 61 00 2B 41 04 00000026 42 01 03 43 20 \
                   7d7dc5f71eb29ddaf80d6214632eeae03d9058af1fb6d22ed80badb62bc1a534";
    assert_eq!(send(&mut chip, command, false).1, 0x9000);
    let (answer, _) = send(&mut chip, "80 02 00 00 06 41 04 00000026 00", true);
    assert_eq!(
        tlvs(&answer).require(TAG_1).unwrap(),
        hx(
            "04 ead218590119e8876b29146ff89ca61770c4edbbf97d38ce385ed281d8a6b230 \
               28af61281fd35e2fa7002523acc85a429cb06ee6648325389f59edfce1405141"
        )
    );
    let peer = "04 700c48f77f56584c5cc632ca65640db91b6bacce3a4df6b42ce7cc838833d287 \
                   db71e509e3fd9b060ddb20ba5c51dcc5948d46fbf640dfe0441782cab85fa4ac";
    let command = format!("80 03 01 0F 49 41 04 00000026 42 41 {peer} 00");
    let (answer, sw) = send(&mut chip, &command, true);
    assert_eq!(sw, 0x9000);
    assert_eq!(
        answer,
        hx("41 20 46fc62106420ff012e54a434fbdd2d25ccc5852060561e68040dd7778997bd7b")
    );
    assert_eq!(chip.counters().ecdh, 1);
    // A point off the curve: 6A80. A compressed point: 6A80.
    let mut off = hx(peer);
    off[64] ^= 1;
    let command = format!("80 03 01 0F 49 41 04 00000026 42 41 {} 00", hex(&off));
    assert_eq!(send(&mut chip, &command, true).1, 0x6A80);
    let command = format!(
        "80 03 01 0F 29 41 04 00000026 42 21 02{} 00",
        &hex(&hx(peer))[2..66]
    );
    assert_eq!(send(&mut chip, &command, true).1, 0x6A80);
    // A P-256 key without ALLOW_KA (sign only): 6986.
    let command = "80 01 61 00 14 11 09 08 00000000 10000000 41 04 00000027 42 01 03";
    assert_eq!(send(&mut chip, command, false).1, 0x9000);
    let command = format!("80 03 01 0F 49 41 04 00000027 42 41 {peer} 00");
    assert_eq!(send(&mut chip, &command, true).1, 0x6986);
    // An Ed25519 key does no ECDH: 6985.
    send(&mut chip, "80 01 61 00 09 41 04 00000028 42 01 40", false);
    let command = format!("80 03 01 0F 49 41 04 00000028 42 41 {peer} 00");
    assert_eq!(send(&mut chip, &command, true).1, 0x6985);
    assert_eq!(chip.counters().ecdh, 1);
}

#[test]
fn unique_id_and_timestamp_read_as_on_a_real_chip() {
    let mut chip = selected();
    let (answer, sw) = send(&mut chip, "80 02 00 00 06 41 04 7FFF0206 00", true);
    assert_eq!(sw, 0x9000);
    assert_eq!(tlvs(&answer).require(TAG_1).unwrap().len(), UNIQUE_ID_LEN);
    // GetTimestamp: 80 04 00 3D, 41 0C timestamp.
    let (first, sw) = exchange(&mut chip, &hx("80 04 00 3D 00"));
    assert_eq!(
        (sw, first.len(), &first[..2]),
        (0x9000, 14, &hx("41 0C")[..])
    );
    let (second, _) = exchange(&mut chip, &hx("80 04 00 3D 00"));
    assert!(second[2..] >= first[2..], "never backwards");
}

/// Origins of every kind of object, and the creator inside a UserID session.
#[test]
fn origin_and_creator_are_recorded() {
    let mut chip = selected();
    let origin = |chip: &mut VirtualApplet, id: &str| {
        let (answer, sw) = send(chip, &format!("80 02 00 3B 06 41 04 {id}"), false);
        assert_eq!(sw, 0x9000, "{id}");
        let attributes = tlvs(&answer).require(TAG_2).unwrap().to_vec();
        (
            *attributes.last().unwrap(),
            u32::from_be_bytes(attributes[8..12].try_into().unwrap()),
        )
    };
    send(&mut chip, "80 01 61 00 09 41 04 00000040 42 01 41", false);
    let command = "80 01 61 00 2B 41 04 00000041 42 01 41 43 20 \
                   0101010101010101010101010101010101010101010101010101010101010101";
    assert_eq!(send(&mut chip, command, false).1, 0x9000);
    let command = "80 01 06 00 0F 41 04 00000042 43 02 0003 44 03 616263";
    assert_eq!(send(&mut chip, command, false).1, 0x9000);
    assert_eq!(origin(&mut chip, "00000040"), (ORIGIN_INTERNAL, 0));
    assert_eq!(origin(&mut chip, "00000041"), (ORIGIN_EXTERNAL, 0));
    assert_eq!(origin(&mut chip, "00000042"), (ORIGIN_EXTERNAL, 0));
    assert_eq!(origin(&mut chip, "F0000012"), (ORIGIN_PROVISIONED, 0));
    assert_eq!(origin(&mut chip, "7FFF0206"), (ORIGIN_PROVISIONED, 0));
}

/// A key generated inside a UserID session records that UserID as its creator (AN12413's
/// attribute "authentication object identifier" of the object's owner).
#[test]
fn a_key_made_in_a_session_names_its_creator() {
    let mut chip = selected();
    // WriteUserID 0x7AFF0001, value "1234": 80 41 07 00.
    let (_, sw) = send(
        &mut chip,
        "80 41 07 00 0C 41 04 7AFF0001 42 04 31323334",
        false,
    );
    assert_eq!(sw, 0x9000);
    let (answer, sw) = send(&mut chip, "80 04 00 1B 06 41 04 7AFF0001 00", true);
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
    let generate = wrapped("80 01 61 00 09 41 04 00000060 42 01 40");
    assert_eq!(send(&mut chip, &generate, false).1, 0x9000);
    let (answer, _) = send(&mut chip, "80 02 00 3B 06 41 04 00000060", false);
    let attributes = tlvs(&answer).require(TAG_2).unwrap().to_vec();
    assert_eq!(&attributes[8..12], &hx("7AFF0001"), "the creator");
    assert_eq!(*attributes.last().unwrap(), ORIGIN_INTERNAL);
}

/// A file-backed chip: the root's certificate beside the state, made with it; a state of an
/// earlier build (format 1, no attestation key) is provisioned at its first command.
#[test]
fn the_attestation_root_lives_beside_the_state_and_old_states_are_provisioned() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("VIRTUAL_STATE");
    let mut chip = VirtualApplet::open(&state, Duration::ZERO).unwrap();
    let root_path = crate::store::attestation_root_path(&state);
    let root = std::fs::read_to_string(&root_path).unwrap();
    assert!(root.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        !root.contains("PRIVATE"),
        "the root's private key is not kept"
    );
    exchange(&mut chip, &select_bytes());
    let (answer, _) = exchange(&mut chip, &hx("80 02 00 00 00 00 06 41 04 F0000013 00 00"));
    let certificate = tlvs(&answer).require(TAG_1).unwrap().to_vec();
    assert!(outside::chain_public_key(&root, &certificate).is_ok());
    // Another process opening the same state sees the same chip and root.
    let again = VirtualApplet::open(&state, Duration::ZERO).unwrap();
    assert_eq!(again.attestation_root_pem().unwrap(), root);

    // A version-1 state file written by hand: one binary file 0x7FFF0206 (18 bytes).
    let old = dir.path().join("OLD_STATE");
    let mut bytes = b"VSE050ST".to_vec();
    bytes.extend_from_slice(&[0x01, 0x00, 0x01, 0x00, 0x00, 0x00]);
    bytes.extend_from_slice(&hx("7FFF0206 04 0000 12000000"));
    bytes.extend_from_slice(&[0xA5; 18]);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(&old, &bytes).unwrap();
    let mut chip = VirtualApplet::open(&old, Duration::ZERO).unwrap();
    assert!(!chip.state().objects.contains_key(&ATTESTATION_KEY));
    assert_eq!(exchange(&mut chip, &select_bytes()).1, 0x9000);
    assert!(chip.state().objects.contains_key(&ATTESTATION_KEY));
    let root = std::fs::read_to_string(crate::store::attestation_root_path(&old)).unwrap();
    let (answer, _) = exchange(&mut chip, &hx("80 02 00 00 00 00 06 41 04 F0000013 00 00"));
    let certificate = tlvs(&answer).require(TAG_1).unwrap().to_vec();
    assert!(outside::chain_public_key(&root, &certificate).is_ok());
    // Saved as format 3, the old object kept (its origin as the old chip answered it).
    let saved = std::fs::read(&old).unwrap();
    assert_eq!(&saved[8..10], &[0x03, 0x00]);
    let reloaded = crate::store::ChipState::deserialize(&saved).unwrap();
    assert_eq!(reloaded.objects[&UNIQUE_ID].origin, ORIGIN_EXTERNAL);
    assert!(reloaded.objects.contains_key(&ATTESTATION_CERTIFICATE));
}
