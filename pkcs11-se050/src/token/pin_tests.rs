//! PINs as UserID objects, the login as a chip session, key policies, and the contract on a
//! lost session: the token layer against the virtual SE050, without the C ABI.

use super::attributes::Template;
use super::pin::{SO_PIN_ID, TOKEN_LABEL_FILE, USER_PIN_ID};
use super::{applet_chip, DeriveParams, Token};
use crate::apdu::CommandApdu;
use crate::applet::protocol::*;
use crate::applet::{ObjectId, Se050};
use crate::config::Config;
use crate::t1::{ApduTransport, LinkError};
use crate::virtual_se050::applet::{InProcessTransport, VirtualApplet};
use crate::virtual_se050::store::ObjectData;
use crate::virtual_se050::ApduHandler;
use crate::wipe::SecretBytes;
use parking_lot::Mutex;
use pkcs11_sys::*;
use std::path::Path;
use std::sync::Arc;
use x25519_dalek::{PublicKey, StaticSecret};

pub(super) const SO: &[u8] = b"so-secret";
pub(super) const USER: &[u8] = b"1234";
pub(super) const RW: CK_FLAGS = CKF_SERIAL_SESSION | CKF_RW_SESSION;

pub(super) fn config(state: &Path, extra: &str) -> Config {
    let text = format!(
        "transport = \"virtual\"\nvirtual_state = \"{}\"\n{extra}",
        state.display()
    );
    Config::parse(&text, None).unwrap()
}

/// A token on the file-backed virtual chip (each one is like another process).
pub(super) fn token(dir: &tempfile::TempDir, extra: &str) -> Token {
    let config = config(&dir.path().join("chip.state"), extra);
    Token::open(config, Box::new(super::open_chip)).unwrap()
}

/// The chip's state as the file holds it now.
pub(super) fn chip_state(dir: &tempfile::TempDir) -> VirtualApplet {
    let mut applet =
        VirtualApplet::open(&dir.path().join("chip.state"), std::time::Duration::ZERO).unwrap();
    applet.process(&select_command().encode());
    applet
}

pub(super) fn failures(dir: &tempfile::TempDir, id: u32) -> u16 {
    match &chip_state(dir).state().objects[&id].data {
        ObjectData::UserId { failures, .. } => *failures,
        other => panic!("{other:?}"),
    }
}

pub(super) fn generate(
    t: &Token,
    s: CK_SESSION_HANDLE,
) -> super::error::Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
    t.generate_key_pair(
        s,
        CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
        &Template::new(vec![(CKA_EC_PARAMS, vec![0x06, 0x03, 0x2B, 0x65, 0x6E])]),
        &Template::new(vec![(CKA_DERIVE, vec![1])]),
    )
}

pub(super) fn find_private(t: &Token, s: CK_SESSION_HANDLE) -> Vec<CK_OBJECT_HANDLE> {
    t.find_init(
        s,
        &Template::new(vec![(
            CKA_CLASS,
            super::attributes::ulong_value(CKO_PRIVATE_KEY),
        )]),
    )
    .unwrap();
    let found = t.find_next(s, 100).unwrap();
    t.find_final(s).unwrap();
    found
}

pub(super) fn derive(
    t: &Token,
    s: CK_SESSION_HANDLE,
    private: CK_OBJECT_HANDLE,
) -> super::error::Result<CK_OBJECT_HANDLE> {
    let peer = StaticSecret::random_from_rng(rand_core::OsRng);
    let params = DeriveParams {
        kdf: CKD_NULL,
        shared_data: vec![],
        public_data: PublicKey::from(&peer).as_bytes().to_vec(),
    };
    t.derive(
        s,
        CKM_ECDH1_DERIVE,
        Some(&params),
        private,
        &Template::default(),
    )
}

pub(super) fn flags(t: &Token) -> CK_FLAGS {
    t.token_info(0).unwrap().flags
}

pub(super) fn rv<T: std::fmt::Debug>(r: super::error::Result<T>) -> CK_RV {
    r.unwrap_err().rv()
}

/// C_InitToken, then the SO sets the user PIN: the fleet provisioning steps.
pub(super) fn provision(t: &Token) {
    t.init_token(0, SO, "fleet-7").unwrap();
    let s = t.open_session(0, RW).unwrap();
    t.login(s, CKU_SO, SO).unwrap();
    t.init_pin(s, USER).unwrap();
    t.close_session(s).unwrap();
}

#[test]
fn init_token_creates_the_so_pin_stores_the_label_and_later_requires_the_so_pin() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "token_label = \"unset\"\n");
    assert_eq!(t.token_info(0).unwrap().label, "unset", "never initialised");
    assert_eq!(flags(&t) & CKF_LOGIN_REQUIRED, 0);
    t.init_token(0, SO, "fleet-7").unwrap();
    assert_eq!(
        t.token_info(0).unwrap().label,
        "fleet-7",
        "the label lives on the chip"
    );
    assert!(chip_state(&dir).state().objects.contains_key(&SO_PIN_ID));
    // Another process sees the chip's label, not its own configuration's.
    assert_eq!(token(&dir, "").token_info(0).unwrap().label, "fleet-7");
    // Later: the SO PIN is required, and a wrong one is counted by the chip.
    assert_eq!(rv(t.init_token(0, b"wrong-so", "x")), CKR_PIN_INCORRECT);
    assert_eq!(failures(&dir, SO_PIN_ID), 1);
    assert_ne!(flags(&t) & CKF_SO_PIN_COUNT_LOW, 0);
    t.init_token(0, SO, "fleet-8").unwrap();
    assert_eq!(
        failures(&dir, SO_PIN_ID),
        0,
        "a right PIN resets the chip's counter"
    );
    assert_eq!(t.token_info(0).unwrap().label, "fleet-8");
    // Not with sessions open; not with a PIN the chip cannot hold.
    let s = t.open_session(0, RW).unwrap();
    assert_eq!(rv(t.init_token(0, SO, "x")), CKR_SESSION_EXISTS);
    t.close_session(s).unwrap();
    assert_eq!(rv(t.init_token(0, b"abc", "x")), CKR_PIN_LEN_RANGE);
}

#[test]
fn init_token_removes_only_what_this_module_made() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "");
    provision(&t);
    let s = t.open_session(0, RW).unwrap();
    t.login(s, CKU_USER, USER).unwrap();
    let (_, ours) = generate(&t, s).unwrap();
    let ours = t.cache.lock().resolve(ours).unwrap().0.key_id;
    t.close_session(s).unwrap();
    // A key of another tool (no metadata record of ours), written straight to the chip.
    let foreign = 0x1234_5678;
    {
        let mut chip = Se050::select(InProcessTransport::new(chip_state(&dir))).unwrap();
        chip.generate_x25519(ObjectId::new(foreign).unwrap())
            .unwrap();
    }
    t.init_token(0, SO, "again").unwrap();
    let after = chip_state(&dir);
    let objects = &after.state().objects;
    assert!(
        !objects.contains_key(&ours),
        "our key is gone (its policy lets the SO delete)"
    );
    assert!(!objects.contains_key(&USER_PIN_ID), "the user PIN is gone");
    assert!(objects.contains_key(&foreign), "another tool's key stays");
    assert!(objects.contains_key(&SO_PIN_ID));
    assert!(objects.contains_key(&TOKEN_LABEL_FILE));
    assert!(
        objects.keys().any(|id| *id >= 0xF000_0000),
        "NXP-provisioned objects stay"
    );
    assert!(
        !objects
            .keys()
            .any(|id| (0x7B00_0000..=0x7BFF_FFFF).contains(id)),
        "no metadata record is left"
    );
}

#[test]
fn keys_made_under_a_pin_are_the_users_on_the_chip_itself() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "");
    // A key made before the user PIN (after C_InitToken, which removes older ones): no policy.
    t.init_token(0, SO, "fleet-7").unwrap();
    let s = t.open_session(0, RW).unwrap();
    let (_, old_private) = generate(&t, s).unwrap();
    t.login(s, CKU_SO, SO).unwrap();
    t.init_pin(s, USER).unwrap();
    t.close_session(s).unwrap();
    assert_ne!(flags(&t) & CKF_LOGIN_REQUIRED, 0);
    assert_ne!(flags(&t) & CKF_USER_PIN_INITIALIZED, 0);

    let s = t.open_session(0, RW).unwrap();
    // Without login: no key operation, not even on the old key, and no keygen.
    assert_eq!(rv(derive(&t, s, old_private)), CKR_USER_NOT_LOGGED_IN);
    assert_eq!(rv(generate(&t, s)), CKR_USER_NOT_LOGGED_IN);
    assert_eq!(rv(t.destroy(s, old_private)), CKR_USER_NOT_LOGGED_IN);
    t.login(s, CKU_USER, USER).unwrap();
    derive(&t, s, old_private).unwrap();
    let (_, private) = generate(&t, s).unwrap();
    derive(&t, s, private).unwrap();
    let key_id = t.cache.lock().resolve(private).unwrap().0.key_id;
    let policy = chip_state(&dir).state().objects[&key_id].policy.clone();
    let entries = crate::applet::policy::decode(&policy.expect("a policy")).unwrap();
    assert_eq!(
        entries,
        super::pin::key_policy(),
        "only the user uses it, the SO deletes it"
    );

    // The chip itself refuses the key outside the user's session: raw APDUs, no module.
    let mut raw = chip_state(&dir);
    let mut data = Vec::new();
    crate::apdu::tlv::push(&mut data, TAG_1, &key_id.to_be_bytes());
    crate::apdu::tlv::push(&mut data, TAG_2, &[9; 32]);
    let ecdh = CommandApdu::new(CLA_IOT, INS_CRYPTO, P1_EC, P2_DH, data, Some(256));
    assert_eq!(&raw.process(&ecdh.encode()).response[..], &[0x69, 0x86]);
    let mut data = Vec::new();
    crate::apdu::tlv::push(&mut data, TAG_1, &key_id.to_be_bytes());
    let delete = CommandApdu::new(CLA_IOT, INS_MGMT, 0, P2_DELETE_OBJECT, data, None);
    assert_eq!(&raw.process(&delete.encode()).response[..], &[0x69, 0x86]);

    // Another process without the PIN: it sees the key (the public half from its record) and
    // is refused with CKR_USER_NOT_LOGGED_IN.
    let other = token(&dir, "");
    let so = other.open_session(0, CKF_SERIAL_SESSION).unwrap();
    let found = find_private(&other, so);
    assert_eq!(found.len(), 2, "{found:?}");
    for h in found {
        assert_eq!(rv(derive(&other, so, h)), CKR_USER_NOT_LOGGED_IN);
    }
    // Logging out ends it here too; closing the last session as well.
    t.logout(s).unwrap();
    assert_eq!(rv(derive(&t, s, private)), CKR_USER_NOT_LOGGED_IN);
    t.login(s, CKU_USER, USER).unwrap();
    t.close_session(s).unwrap();
    let s = t.open_session(0, RW).unwrap();
    assert_eq!(t.session_info(s).unwrap().0, CKS_RW_PUBLIC_SESSION);
    assert_eq!(rv(derive(&t, s, private)), CKR_USER_NOT_LOGGED_IN);
}

#[test]
fn wrong_pins_lock_the_pin_on_the_chip_and_the_so_unlocks_it() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "pin_max_attempts = 3\n");
    provision(&t);
    let s = t.open_session(0, RW).unwrap();
    // A right PIN resets the chip's counter.
    assert_eq!(rv(t.login(s, CKU_USER, b"0000")), CKR_PIN_INCORRECT);
    assert_eq!(failures(&dir, USER_PIN_ID), 1);
    assert_ne!(flags(&t) & CKF_USER_PIN_COUNT_LOW, 0);
    t.login(s, CKU_USER, USER).unwrap();
    assert_eq!(failures(&dir, USER_PIN_ID), 0);
    assert_eq!(flags(&t) & CKF_USER_PIN_COUNT_LOW, 0);
    t.logout(s).unwrap();

    assert_eq!(rv(t.login(s, CKU_USER, b"0000")), CKR_PIN_INCORRECT);
    assert_eq!(rv(t.login(s, CKU_USER, b"0001")), CKR_PIN_INCORRECT);
    assert_ne!(flags(&t) & CKF_USER_PIN_FINAL_TRY, 0);
    assert_eq!(
        rv(t.login(s, CKU_USER, b"0002")),
        CKR_PIN_LOCKED,
        "the chip says so"
    );
    assert_ne!(flags(&t) & CKF_USER_PIN_LOCKED, 0);
    // Locked: the right PIN too, in this process and in a new one (the counter is the chip's).
    assert_eq!(rv(t.login(s, CKU_USER, USER)), CKR_PIN_LOCKED);
    assert_eq!(
        failures(&dir, USER_PIN_ID),
        3,
        "a locked PIN costs no attempt"
    );
    drop(t);
    let t = token(&dir, "pin_max_attempts = 3\n");
    let s = t.open_session(0, RW).unwrap();
    assert_eq!(rv(t.login(s, CKU_USER, USER)), CKR_PIN_LOCKED);
    assert_ne!(flags(&t) & CKF_USER_PIN_LOCKED, 0);
    // The SO resets it (and may set another).
    t.login(s, CKU_SO, SO).unwrap();
    assert_eq!(rv(t.init_pin(s, b"12")), CKR_PIN_LEN_RANGE);
    t.init_pin(s, b"5678").unwrap();
    t.logout(s).unwrap();
    assert_eq!(flags(&t) & CKF_USER_PIN_LOCKED, 0);
    t.login(s, CKU_USER, b"5678").unwrap();
    // The user cannot reset PINs.
    assert_eq!(rv(t.init_pin(s, b"9999")), CKR_USER_NOT_LOGGED_IN);
}

#[test]
fn set_pin_changes_the_pin_on_the_chip() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "");
    provision(&t);
    let s = t.open_session(0, RW).unwrap();
    // Not logged in: the user's PIN, authenticated with the old one.
    assert_eq!(rv(t.set_pin(s, b"0000", b"4321")), CKR_PIN_INCORRECT);
    t.set_pin(s, USER, b"4321").unwrap();
    assert_eq!(rv(t.login(s, CKU_USER, USER)), CKR_PIN_INCORRECT);
    t.login(s, CKU_USER, b"4321").unwrap();
    // Logged in: still logged in afterwards, and keys work.
    t.set_pin(s, b"4321", b"87654321").unwrap();
    let (_, private) = generate(&t, s).unwrap();
    derive(&t, s, private).unwrap();
    t.logout(s).unwrap();
    t.login(s, CKU_USER, b"87654321").unwrap();
    t.logout(s).unwrap();
    // The SO changes its own.
    t.login(s, CKU_SO, SO).unwrap();
    t.set_pin(s, SO, b"new-so-pin").unwrap();
    t.logout(s).unwrap();
    t.close_session(s).unwrap();
    assert_eq!(rv(t.init_token(0, SO, "x")), CKR_PIN_INCORRECT);
    t.init_token(0, b"new-so-pin", "x").unwrap();
}

/// An in-process virtual chip shared with the test, which can reset it between commands.
#[derive(Clone)]
struct SharedChip(Arc<Mutex<VirtualApplet>>);

impl ApduTransport for SharedChip {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        Ok(self.0.lock().process(command).response)
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

impl SharedChip {
    /// A power cycle: the chip's RAM (sessions, selection) is gone; the link selects again.
    fn reset(&self) {
        let mut applet = self.0.lock();
        applet.reset();
        applet.process(&select_command().encode());
    }

    fn apdus(&self) -> u64 {
        self.0.lock().counters().apdus
    }
}

fn token_on(chip: &SharedChip) -> Token {
    let shared = chip.clone();
    let opener = Box::new(move |_: &Config| {
        let transport: Box<dyn ApduTransport> = Box::new(shared.clone());
        Ok(applet_chip(Se050::select(transport).unwrap()))
    });
    let config = config(Path::new("/nonexistent/unused.state"), "");
    Token::open(config, opener).unwrap()
}

#[test]
fn a_chip_reset_ends_the_login_and_the_key_operation_answers_user_not_logged_in() {
    let chip = SharedChip(Arc::new(Mutex::new(VirtualApplet::in_memory())));
    let t = token_on(&chip);
    provision(&t);
    let s = t.open_session(0, RW).unwrap();

    // Login: one CreateSession and one VerifySessionUserID.
    let before = chip.apdus();
    t.login(s, CKU_USER, USER).unwrap();
    assert_eq!(chip.apdus() - before, 2, "APDUs per login");
    let (_, private) = generate(&t, s).unwrap();
    derive(&t, s, private).unwrap();
    // A derive inside the session: ReadObject (is it still the key of this handle?) and ECDH,
    // each wrapped in ProcessSessionCmd: no more APDUs than without a session.
    let before = chip.apdus();
    derive(&t, s, private).unwrap();
    assert_eq!(chip.apdus() - before, 2, "APDUs per derive");

    chip.reset();
    assert_eq!(rv(derive(&t, s, private)), CKR_USER_NOT_LOGGED_IN);
    assert_eq!(
        t.session_info(s).unwrap().0,
        CKS_RW_PUBLIC_SESSION,
        "the module dropped its login"
    );
    // Still no: the module did not log in again by itself (it has no PIN to do it with).
    assert_eq!(rv(derive(&t, s, private)), CKR_USER_NOT_LOGGED_IN);
    // The caller logs in again, and the key works.
    t.login(s, CKU_USER, USER).unwrap();
    derive(&t, s, private).unwrap();

    // After another reset, what is no key operation still answers (outside the lost session),
    // and the key operation after it says the login is gone.
    chip.reset();
    assert_ne!(flags(&t) & CKF_LOGIN_REQUIRED, 0);
    assert_eq!(find_private(&t, s).len(), 1);
    assert_eq!(rv(derive(&t, s, private)), CKR_USER_NOT_LOGGED_IN);
    t.login(s, CKU_USER, USER).unwrap();
    derive(&t, s, private).unwrap();

    // A wrong PIN costs 3 APDUs and one attempt.
    t.logout(s).unwrap();
    let before = chip.apdus();
    assert_eq!(rv(t.login(s, CKU_USER, b"0000")), CKR_PIN_INCORRECT);
    assert_eq!(
        chip.apdus() - before,
        3,
        "CreateSession, Verify, CloseSession"
    );
}
