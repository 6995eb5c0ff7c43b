//! PlatformSCP03 under NXP's counter rule, the rule used with the chip.
//!
//! Outside vector: NXP's nano-package 1.5.4 logged a PlatformSCP03 handshake with a real
//! SE050E (community.nxp.com, Secure Authentication, thread 2114523, the SE050E
//! GetFreeMemory / ex_se05x_ReadIDList question): host challenge 1122334455667788, KVN 0B, the
//! INITIALIZE UPDATE answer, the card cryptogram, and the session ENC and MAC keys (and the
//! first six bytes of the R-MAC key) it derived. The static keys are the SE050E development
//! keys of NXP's middleware (sss/ex/inc/ex_sss_tp_scp03_keys.h,
//! SSS_PFSCP_ENABLE_SE050E_0001A921; the poster set them "according to AN12436"). The host
//! derives the same keys and cryptogram from them.
//!
//! No wrapped command of that session is in the public part of the log, and no NXP test or
//! document publishes an SCP03-wrapped command with its counter: NXP's middleware has no SCP03
//! test vectors. So the secure-messaging steps below, in that logged session, are derived by
//! hand (`derive.py`) from NXP's code, which is GP Amendment D's rule with NXP's choices:
//! - `nxScp03_GP_ExternalAuthenticate` (sss/src/se05x/fsl_sss_se05x_scp03.c): MAC over 16 x 00
//!   and `84 82 33 00 10 <host cryptogram>`; the full CMAC is the first chaining value; the
//!   counter starts at 1 (`commandCounter` in `nxScp03_AuthenticateChannel`).
//! - `se05x_Transform_scp` (hostlib/hostLib/se05x/src/se05x_tlv.c): CLA | 04; Lc = encrypted
//!   data + 8, one byte when < 0xFF and not `hasle`, else `00 HH LL`; C-MAC over chaining value
//!   || header || Lc || encrypted data; `00 00` after the MAC when `hasle`.
//! - `nxSCP03_Encrypt_CommandAPDU` / `nxSCP03_Calculate_CommandICV` (nxScp03_Com.c): data
//!   padded 80 00.., IV = AES(S-ENC, counter); nothing to encrypt without data.
//! - `nxpSCP03_Decrypt_ResponseAPDU` / `nxpSCP03_Get_ResponseICV`: R-MAC over chaining value
//!   || encrypted data || SW; response IV = AES(S-ENC, counter with first byte 80), where the
//!   counter is decremented first when the command had no data; the counter goes up after a
//!   response only when the command had data (`cmdBufLen > 0`).
//!
//! GP's own examples and the other public suites already in this repository (pySim's
//! SCP03_Test_AES128_33 in scp03/crypto.rs and scp03/session.rs) increment the counter after
//! every command; they are checked there under `CounterRule::EveryCommand`.

use super::*;
use crate::applet::rfc7748::{ALICE_PUBLIC, BOB_PUBLIC, SHARED};
use crate::applet::{ObjectId, Se050};
use crate::scp03::crypto::{self, SessionKeys};
use crate::scp03::session::SecureMessaging;
use crate::scp03::{Scp03Transport, StaticKeys};

pub(super) const ENC: &str = "D2DB63E7A0A5AED72A6460C4DFDCAF64";
pub(super) const MAC: &str = "738D5B798ED241B0B24768514BFBA95B";
pub(super) const DEK: &str = "6702DAC30942B2C85E7F47B42CED4E7F";
/// Logged: hostChallenge, INITIALIZE UPDATE answer (key diversification data, key info
/// 0B 03 00, card challenge, card cryptogram), session ENC and MAC keys, R-MAC key's start.
pub(super) const HOST_CHALLENGE: &str = "1122334455667788";
pub(super) const IU_ANSWER: &str = "90031347000043202316 0B0300 05437D4E3C213D20 C4D889C1270264C4";
const LOGGED_S_ENC: &str = "012C3FCDB34F6CFF7E344D075BD048CB";
const LOGGED_S_MAC: &str = "5CAE32DEA3A3615E2AAE308D742277E0";
const LOGGED_S_RMAC_START: &str = "5FBBB883F36E";
/// Derived by hand (derive.py): the rest of S-RMAC, the host cryptogram, EXTERNAL
/// AUTHENTICATE, and its full C-MAC (the first MAC chaining value).
const S_RMAC: &str = "5FBBB883F36E0F2C4358130883C7D471";
pub(super) const EXTERNAL_AUTHENTICATE: &str = "84 82 33 00 10 F00F6091B6F1FDEE BCD19E29C783892D";
pub(super) const FIRST_MCV: &str = "BCD19E29C783892D1628093AB9E3B64E";

fn key(text: &str) -> [u8; 16] {
    hex(text).try_into().unwrap()
}

fn logged_context() -> ([u8; 16], SessionKeys) {
    let host: [u8; 8] = hex(HOST_CHALLENGE).try_into().unwrap();
    let card: [u8; 8] = hex(IU_ANSWER)[13..21].try_into().unwrap();
    let ctx = crypto::context(&host, &card);
    (ctx, SessionKeys::derive(&key(ENC), &key(MAC), &ctx))
}

/// The handshake of the logged SE050E session: the host's session keys and card cryptogram
/// are the chip's and NXP's; the host cryptogram and EXTERNAL AUTHENTICATE follow
/// `nxScp03_HostLocal_CalculateHostCryptogram` and `nxScp03_GP_ExternalAuthenticate`.
#[test]
fn handshake_of_a_logged_se050e_session() {
    let (ctx, keys) = logged_context();
    assert_bytes("S-ENC (logged)", &keys.s_enc[..], &hex(LOGGED_S_ENC));
    assert_bytes("S-MAC (logged)", &keys.s_mac[..], &hex(LOGGED_S_MAC));
    assert_bytes(
        "S-RMAC (logged start)",
        &keys.s_rmac[..6],
        &hex(LOGGED_S_RMAC_START),
    );
    assert_bytes("S-RMAC", &keys.s_rmac[..], &hex(S_RMAC));
    assert_bytes(
        "card cryptogram (logged)",
        &keys.card_cryptogram(&ctx),
        &hex(IU_ANSWER)[21..29],
    );
    let external = hex(EXTERNAL_AUTHENTICATE);
    assert_bytes(
        "host cryptogram",
        &keys.host_cryptogram(&ctx),
        &external[5..13],
    );
    let mac = crypto::cmac(&keys.s_mac, &[&[0u8; 16], &external[..13]]);
    assert_bytes("EXTERNAL AUTHENTICATE C-MAC", &mac[..8], &external[13..]);
    assert_bytes("first chaining value", &mac, &hex(FIRST_MCV));
}

/// The transport's INITIALIZE UPDATE: NXP's `nxScp03_GP_InitializeUpdate` sends
/// `80 50 KVN 00 08 <challenge>` through `DoAPDUTxRx_s_Case4` (no Le), as the logged
/// `80 50 0b 00 08 11 22 33 44 55 66 77 88` shows; the host adds Le `00` (the challenge is
/// random: only its length is checked). A refused INITIALIZE UPDATE ends the attempt.
#[test]
fn initialize_update_is_nxp_gp_initializeupdate_plus_le() {
    let keys = StaticKeys::new(key(ENC), key(MAC), key(DEK));
    let inner = Recorder::answering(&[responses::SELECT_RESPONSE_SE050E, "6A 88"]);
    let mut transport = Scp03Transport::new(inner, keys, 0x0B);
    let select = hex("00A4040010A000000396545300000001030000000000");
    assert!(transport.transceive(&select).is_err());
    let sent = &transport.inner().sent;
    assert_bytes("plain SELECT first", &sent[0], &select);
    let iu = &sent[1];
    assert_eq!(iu.len(), 14);
    assert_bytes("INITIALIZE UPDATE header", &iu[..5], &hex("80 50 0B 00 08"));
    assert_eq!(iu[13], 0x00, "the host's Le");
}

/// A transport that wraps the host's plain commands with the host's `SecureMessaging`, checks
/// each wrapped command against the expected wire bytes, and answers the card's wrapped
/// response, unwrapped by the host.
struct SecureRecorder {
    session: SecureMessaging,
    /// (expected wrapped command, the card's wrapped answer), in order.
    steps: std::collections::VecDeque<(&'static str, Vec<u8>, &'static str)>,
}

impl ApduTransport for SecureRecorder {
    fn transceive(&mut self, plain: &[u8]) -> Result<SecretBytes, LinkError> {
        if plain[..2] == [0x00, 0xA4] {
            // SELECT goes in plain, before the channel (Scp03Transport::open).
            return Ok(Zeroizing::new(hex(responses::SELECT_RESPONSE_SE050E)));
        }
        let (name, expected, answer) = self.steps.pop_front().expect("a step");
        let wire = self.session.wrap_command(plain).expect("wrap");
        assert_bytes(&format!("step {name}: wrapped command"), &wire, &expected);
        Ok(self
            .session
            .unwrap_response(&hex(answer))
            .unwrap_or_else(|e| panic!("step {name}: the host cannot unwrap the answer: {e}")))
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

/// NXP's bytes for a command NXP sends without Le, and the host's: the same with its Le `00`
/// after the C-MAC (Le is not MACed, so everything before it is NXP's).
fn nxp_plus_le(nxp: &str) -> Vec<u8> {
    let mut bytes = hex(nxp);
    bytes.push(0x00);
    bytes
}

/// Five commands in the logged session: GetVersion (no data: the counter stays at 1 and its
/// answer is decrypted with counter 0), ReadObject (data: counter 1, then 2), CheckObjectExists
/// (counter 2, then 3), GetVersion (answer under counter 2), ECDH (counter 3). The first four
/// are NXP's wire bytes (plus the host's unMACed Le `00` where NXP sends none); ReadObject is
/// NXP's exactly (both extended, Le `00 00`). ECDH: NXP's extended form is pinned beside the
/// host's short one; the two differ in the MACed Lc, so from there the chaining values differ
/// and the host's bytes are derived from the same state with its Lc (derive.py, step 5).
#[test]
fn secure_messaging_follows_nxp_counter_rule() {
    let (_, keys) = logged_context();
    let first_mcv: [u8; 16] = hex(FIRST_MCV).try_into().unwrap();
    let key_id = ObjectId::new(0x7000_0010).unwrap();
    let nxp_ecdh = hex(
        "84 03 01 0F 00 00 38 737369CE5EE11E9390EE02D8CC3441FFE56C264FED84F4BDC2E1FFAC42184A40 \
         DAF0219B5D449961FC5BDD6349DDB79C FCB202FB67BE41EF 00 00",
    );
    let host_ecdh = hex(
        "84 03 01 0F 38 737369CE5EE11E9390EE02D8CC3441FFE56C264FED84F4BDC2E1FFAC42184A40 \
         DAF0219B5D449961FC5BDD6349DDB79C 14562F2CBE6BCEEB 00",
    );
    // The encrypted data are the same in both forms: the counter decides them, not the Lc.
    assert_eq!(nxp_ecdh[7..55], host_ecdh[5..53]);
    let steps = vec![
        (
            "1 GetVersion",
            nxp_plus_le("84 04 00 20 08 44E598C94481F194"),
            "EC9BF41270579ABF2EA7F71A856B4449 192D01B9E1633D67 9000",
        ),
        (
            "2 ReadObject",
            hex("84 02 00 00 00 00 18 78F1692A4926244204F9B98DCA81528B 633CBE4C2452E241 00 00"),
            "B6A25E73A7D4A52F12D448BEA9C58508 31B1B1F01172727B4E00DA85825D85A2 \
             4B266128457E17B47448C11C923FE946 69E301200BD8873B 9000",
        ),
        (
            "3 CheckObjectExists",
            nxp_plus_le("84 04 00 27 18 63D2AE718CC84A1B33CFF49CC3B22C69 2AB01A9B194E1E6B"),
            "5D77E69304D6B54311CA27FCB8E75F54 1F7A73C3322A10C4 9000",
        ),
        (
            "4 GetVersion",
            nxp_plus_le("84 04 00 20 08 F042303BDC9B8038"),
            "38BF053EC31F275A9E9C72046A2753EA E9AA227183AA74AA 9000",
        ),
        (
            "5 ECDH",
            host_ecdh,
            "0A343C41FADB7F6E71030DD4EA04C943 8B07EF27C1E2F80A01589EC451C27B06 \
             44B2F4E21404B00CC0277B32F2012603 F6F72D7679D5419A 9000",
        ),
    ];
    let transport = SecureRecorder {
        session: SecureMessaging::new(keys, first_mcv),
        steps: steps.into_iter().collect(),
    };
    let mut chip = Se050::select(transport).unwrap();
    let version = chip.get_version().unwrap();
    assert_eq!(
        (version.major, version.minor, version.config),
        (7, 2, 0x3F9F)
    );
    assert_eq!(chip.read_x25519_public(key_id).unwrap(), ALICE_PUBLIC);
    assert!(chip.exists(key_id).unwrap());
    assert_eq!(chip.get_version().unwrap(), version);
    assert_eq!(*chip.ecdh_x25519(key_id, &BOB_PUBLIC).unwrap(), SHARED);
    assert!(chip.transport_mut().steps.is_empty());
}
