//! The host's `Scp03Transport` against a card that follows NXP's procedure
//! ([`scp03_model`](super::scp03_model)): the handshake it runs with a random host challenge
//! ends in NXP's EXTERNAL AUTHENTICATE, and its first wrapped commands are NXP's bytes.

use super::scp03::{DEK, ENC, EXTERNAL_AUTHENTICATE, FIRST_MCV, HOST_CHALLENGE, IU_ANSWER, MAC};
use super::scp03_model::NxpSession;
use super::*;
use crate::applet::{ObjectId, Se050};
use crate::scp03::{Scp03Transport, StaticKeys};

fn key(text: &str) -> [u8; 16] {
    hex(text).try_into().unwrap()
}

/// The model gives `derive.py`'s bytes for the logged SE050E session (steps 1 to 4 and NXP's
/// form of step 5, see scp03.rs).
#[test]
fn model_reproduces_the_pinned_session() {
    let iu = hex(IU_ANSWER);
    let mut s = NxpSession::open(&key(ENC), &key(MAC), &hex(HOST_CHALLENGE), &iu[13..21]);
    assert_eq!(s.card_cryptogram[..], iu[21..29]);
    assert_bytes(
        "EXTERNAL AUTHENTICATE",
        &s.external_authenticate,
        &hex(EXTERNAL_AUTHENTICATE),
    );
    assert_eq!(s.mcv[..], hex(FIRST_MCV)[..]);
    let version = hex("41 07 0702003F9FFFFF");
    let key_id = hex("41 04 70000010");
    let get_version = s.wrap(hex("80040020").try_into().unwrap(), &[], false);
    assert_bytes(
        "1 GetVersion",
        &get_version,
        &hex("84 04 00 20 08 44E598C94481F194"),
    );
    assert_bytes(
        "1 answer",
        &s.answer(&version, false),
        &hex("EC9BF41270579ABF2EA7F71A856B4449 192D01B9E1633D67 9000"),
    );
    let read = s.wrap(hex("80020000").try_into().unwrap(), &key_id, true);
    assert_bytes(
        "2 ReadObject",
        &read,
        &hex("84 02 00 00 00 00 18 78F1692A4926244204F9B98DCA81528B 633CBE4C2452E241 00 00"),
    );
    let mut public = crate::applet::rfc7748::ALICE_PUBLIC;
    public.reverse();
    let mut answer = hex("41 20");
    answer.extend_from_slice(&public);
    assert_bytes(
        "2 answer",
        &s.answer(&answer, true),
        &hex(
            "B6A25E73A7D4A52F12D448BEA9C58508 31B1B1F01172727B4E00DA85825D85A2 \
              4B266128457E17B47448C11C923FE946 69E301200BD8873B 9000",
        ),
    );
    let exists = s.wrap(hex("80040027").try_into().unwrap(), &key_id, false);
    assert_bytes(
        "3 CheckObjectExists",
        &exists,
        &hex("84 04 00 27 18 63D2AE718CC84A1B33CFF49CC3B22C69 2AB01A9B194E1E6B"),
    );
    s.answer(&hex("410101"), true);
    let again = s.wrap(hex("80040020").try_into().unwrap(), &[], false);
    assert_bytes(
        "4 GetVersion",
        &again,
        &hex("84 04 00 20 08 F042303BDC9B8038"),
    );
    assert_bytes(
        "4 answer",
        &s.answer(&version, false),
        &hex("38BF053EC31F275A9E9C72046A2753EA E9AA227183AA74AA 9000"),
    );
}

/// A card following NXP's procedure behind the host's transport.
struct NxpCard {
    keys: ([u8; 16], [u8; 16]),
    session: Option<NxpSession>,
    /// What the host sent, in order.
    sent: Vec<Vec<u8>>,
    /// The plain answers to the wrapped commands, in order, and whether the command had data.
    answers: std::collections::VecDeque<(Vec<u8>, bool)>,
}

const CARD_CHALLENGE: &str = "05437D4E3C213D20";
const KEY_DIVERSIFICATION: &str = "90031347000043202316";

impl ApduTransport for NxpCard {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        self.sent.push(command.to_vec());
        let answer = match command[..2] {
            [0x00, 0xA4] => hex(responses::SELECT_RESPONSE_SE050E),
            [0x80, 0x50] => {
                let session = NxpSession::open(
                    &self.keys.0,
                    &self.keys.1,
                    &command[5..13],
                    &hex(CARD_CHALLENGE),
                );
                let answer = hex(&format!(
                    "{KEY_DIVERSIFICATION} 0B0300 {CARD_CHALLENGE} {} 9000",
                    to_hex(&session.card_cryptogram)
                ));
                self.session = Some(session);
                answer
            }
            [0x84, 0x82] => {
                let session = self.session.as_ref().unwrap();
                assert_bytes(
                    "EXTERNAL AUTHENTICATE (NXP's nxScp03_GP_ExternalAuthenticate)",
                    command,
                    &session.external_authenticate,
                );
                hex("9000")
            }
            _ => {
                let (plain, had_data) = self.answers.pop_front().expect("an answer");
                let session = self.session.as_mut().unwrap();
                session.receive(command);
                session.answer(&plain, had_data)
            }
        };
        Ok(Zeroizing::new(answer))
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

#[test]
fn transport_handshake_and_first_commands_are_nxp_bytes() {
    let (enc, mac) = (key(ENC), key(MAC));
    let card = NxpCard {
        keys: (enc, mac),
        session: None,
        sent: Vec::new(),
        answers: [
            (hex("41 07 0702003F9FFFFF"), false),
            (hex("41 01 01"), true),
        ]
        .into_iter()
        .collect(),
    };
    let transport = Scp03Transport::new(card, StaticKeys::new(enc, mac, key(DEK)), 0x0B);
    let mut chip = Se050::select(transport).unwrap();
    chip.get_version().unwrap();
    assert!(chip.exists(ObjectId::new(0x7000_0010).unwrap()).unwrap());

    let sent = chip.transport_mut().inner().sent.clone();
    assert_eq!(
        sent.len(),
        5,
        "SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, 2 commands"
    );
    // The card's view of the session, replayed from the same challenge: NXP's bytes for the two
    // commands (plus the host's unMACed Le 00: NXP sends these without Le).
    let mut nxp = NxpSession::open(&enc, &mac, &sent[1][5..13], &hex(CARD_CHALLENGE));
    let mut expected = nxp.wrap(hex("80040020").try_into().unwrap(), &[], false);
    expected.push(0x00);
    assert_bytes("wrapped GetVersion", &sent[3], &expected);
    nxp.answer(&hex("41 07 0702003F9FFFFF"), false);
    let mut expected = nxp.wrap(
        hex("80040027").try_into().unwrap(),
        &hex("41 04 70000010"),
        false,
    );
    expected.push(0x00);
    assert_bytes("wrapped CheckObjectExists", &sent[4], &expected);
}
