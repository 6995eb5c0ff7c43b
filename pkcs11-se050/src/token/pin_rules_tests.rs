//! What a PIN holder may and may not change, and what login and logout do, as PKCS#11 says:
//! the lockout threshold, derived secrets at C_Logout, C_Login on a token without a user PIN,
//! a failed C_SetPIN, and who may write the metadata records and the label file.

use super::pin::{SO_PIN_ID, USER_PIN_ID};
use super::pin_tests::*;
use crate::virtual_se050::store::ObjectData;
use crate::virtual_se050::ApduHandler;
use pkcs11_sys::*;

fn max_attempts(dir: &tempfile::TempDir, id: u32) -> u16 {
    match &chip_state(dir).state().objects[&id].data {
        ObjectData::UserId { max_attempts, .. } => *max_attempts,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_lockout_threshold_is_fixed_at_init_token_and_no_pin_holder_raises_it() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "pin_max_attempts = 3\n");
    provision(&t);
    assert_eq!(max_attempts(&dir, SO_PIN_ID), 3);
    assert_eq!(max_attempts(&dir, USER_PIN_ID), 3);
    drop(t);
    // Another process, whose configuration asks for many more attempts.
    let t = token(&dir, "pin_max_attempts = 32767\n");
    let s = t.open_session(0, RW).unwrap();
    // The user changes the PIN: the threshold stays.
    t.set_pin(s, USER, b"4321").unwrap();
    assert_eq!(
        max_attempts(&dir, USER_PIN_ID),
        3,
        "C_SetPIN (not logged in)"
    );
    t.login(s, CKU_USER, b"4321").unwrap();
    t.set_pin(s, b"4321", b"5678").unwrap();
    assert_eq!(max_attempts(&dir, USER_PIN_ID), 3, "C_SetPIN (logged in)");
    t.logout(s).unwrap();
    // The SO resets the user PIN and changes its own: still the token's threshold.
    t.login(s, CKU_SO, SO).unwrap();
    t.init_pin(s, b"8765").unwrap();
    assert_eq!(max_attempts(&dir, USER_PIN_ID), 3, "C_InitPIN (reset)");
    t.set_pin(s, SO, b"so-secret-2").unwrap();
    assert_eq!(max_attempts(&dir, SO_PIN_ID), 3, "C_SetPIN (SO)");
    t.logout(s).unwrap();
    t.close_session(s).unwrap();
    // A user PIN created afresh (after C_InitToken removed it) gets the SO PIN's threshold.
    drop(t);
    let t = token(&dir, "pin_max_attempts = 3\n");
    t.init_token(0, b"so-secret-2", "again").unwrap();
    let s = t.open_session(0, RW).unwrap();
    t.login(s, CKU_SO, b"so-secret-2").unwrap();
    t.init_pin(s, USER).unwrap();
    assert_eq!(max_attempts(&dir, USER_PIN_ID), 3, "C_InitPIN (create)");
    t.logout(s).unwrap();
    t.close_session(s).unwrap();
    // The SO changes it: C_InitToken with another pin_max_attempts.
    drop(t);
    let t = token(&dir, "pin_max_attempts = 5\n");
    t.init_token(0, b"so-secret-2", "again").unwrap();
    assert_eq!(max_attempts(&dir, SO_PIN_ID), 5, "C_InitToken sets it");
    let s = t.open_session(0, RW).unwrap();
    t.login(s, CKU_SO, b"so-secret-2").unwrap();
    t.init_pin(s, USER).unwrap();
    assert_eq!(max_attempts(&dir, USER_PIN_ID), 5);
}

#[test]
fn derived_secrets_made_under_a_login_are_destroyed_at_logout() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "");
    provision(&t);
    let s = t.open_session(0, RW).unwrap();
    let other_session = t.open_session(0, RW).unwrap();
    t.login(s, CKU_USER, USER).unwrap();
    let (_, private) = generate(&t, s).unwrap();
    let secret = derive(&t, s, private).unwrap();
    assert_eq!(
        t.attributes(s, secret, &[CKA_PRIVATE]).unwrap(),
        vec![super::attributes::AttrValue::Value(vec![1])],
        "made from the user's key: a private object"
    );
    t.logout(s).unwrap();
    // Gone (and wiped), though the session that made it is still open.
    assert_eq!(
        rv(t.attributes(s, secret, &[CKA_VALUE_LEN])),
        CKR_OBJECT_HANDLE_INVALID
    );
    assert_eq!(
        rv(t.attributes(other_session, secret, &[CKA_VALUE_LEN])),
        CKR_OBJECT_HANDLE_INVALID
    );
}

/// A raw command to the chip outside any session: what any client without the PIN can send.
fn raw_status(dir: &tempfile::TempDir, ins: u8, p1: u8, p2: u8, tlvs: &[(u8, &[u8])]) -> [u8; 2] {
    use crate::apdu::{tlv, CommandApdu};
    let mut data = Vec::new();
    for (tag, value) in tlvs {
        tlv::push(&mut data, *tag, value);
    }
    let apdu = CommandApdu::new(crate::applet::protocol::CLA_IOT, ins, p1, p2, data, None);
    let response = chip_state(dir).process(&apdu.encode()).response;
    response[response.len() - 2..].try_into().unwrap()
}

#[test]
fn without_the_pin_the_chip_refuses_to_relabel_keys_or_the_token() {
    use crate::applet::protocol::*;
    use crate::virtual_se050::store::ObjectData;
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "");
    provision(&t);
    let s = t.open_session(0, RW).unwrap();
    t.login(s, CKU_USER, USER).unwrap();
    let (_, private) = generate(&t, s).unwrap();
    let key_id = t.cache.lock().resolve(private).unwrap().0.key_id;
    let state = chip_state(&dir);
    let (record, length) = state
        .state()
        .objects
        .iter()
        .find_map(|(id, o)| match &o.data {
            ObjectData::BinaryFile { data } if *id != super::pin::TOKEN_LABEL_FILE => {
                Some((*id, data.len()))
            }
            _ => None,
        })
        .expect("the key's metadata record");
    let policy = |id: u32| {
        let bytes = state.state().objects[&id].policy.clone().expect("a policy");
        crate::applet::policy::decode(&bytes).unwrap()
    };
    assert_eq!(policy(record), super::pin::record_policy());
    assert_eq!(
        policy(super::pin::TOKEN_LABEL_FILE),
        super::pin::label_policy()
    );

    // Raw commands outside the user's session: reading is everyone's, writing nobody's.
    let forged = vec![b'X'; length];
    for (id, what) in [
        (record, "metadata record"),
        (super::pin::TOKEN_LABEL_FILE, "label"),
    ] {
        let len = if id == record { length } else { 7 };
        let write = raw_status(
            &dir,
            INS_WRITE,
            P1_BINARY,
            P2_DEFAULT,
            &[
                (TAG_1, &id.to_be_bytes()),
                (TAG_2, &[0, 0]),
                (TAG_4, &forged[..len]),
            ],
        );
        assert_eq!(write, [0x69, 0x86], "{what}: WriteBinary without the PIN");
        let delete = raw_status(
            &dir,
            INS_MGMT,
            P1_DEFAULT,
            P2_DELETE_OBJECT,
            &[(TAG_1, &id.to_be_bytes())],
        );
        assert_eq!(
            delete,
            [0x69, 0x86],
            "{what}: DeleteSecureObject without the PIN"
        );
    }
    assert_eq!(t.token_info(0).unwrap().label, "fleet-7");

    // Through the module, another process without the PIN is refused too; the user relabels.
    let other = token(&dir, "");
    let os = other.open_session(0, RW).unwrap();
    let relabel = super::attributes::Template::new(vec![(CKA_LABEL, b"evil".to_vec())]);
    assert_eq!(
        rv(other.set_attributes(os, private, &relabel)),
        CKR_USER_NOT_LOGGED_IN
    );
    let mine = super::attributes::Template::new(vec![(CKA_LABEL, b"wg-7".to_vec())]);
    t.set_attributes(s, private, &mine).unwrap();
    t.logout(s).unwrap();
    t.close_session(s).unwrap();
    // The SO still removes everything this module made.
    t.init_token(0, SO, "fresh").unwrap();
    let objects = chip_state(&dir).state().objects.clone();
    assert!(!objects.contains_key(&record) && !objects.contains_key(&key_id));
    assert_eq!(t.token_info(0).unwrap().label, "fresh");
}

#[test]
fn the_user_cannot_log_in_to_a_token_without_a_user_pin() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "");
    let s = t.open_session(0, RW).unwrap();
    // Never initialised, and initialised without a user PIN: no login, whatever the PIN.
    for pin in [&b"1234"[..], b"12", &[b'9'; 20]] {
        assert_eq!(
            rv(t.login(s, CKU_USER, pin)),
            CKR_USER_PIN_NOT_INITIALIZED,
            "{pin:?}"
        );
    }
    assert_eq!(t.session_info(s).unwrap().0, CKS_RW_PUBLIC_SESSION);
    t.close_session(s).unwrap();
    t.init_token(0, SO, "no-user-pin").unwrap();
    let s = t.open_session(0, RW).unwrap();
    assert_eq!(rv(t.login(s, CKU_USER, USER)), CKR_USER_PIN_NOT_INITIALIZED);
    // Its keys need no login.
    let (_, private) = generate(&t, s).unwrap();
    derive(&t, s, private).unwrap();
    // Once the SO set one, the user logs in with it.
    t.login(s, CKU_SO, SO).unwrap();
    t.init_pin(s, USER).unwrap();
    t.logout(s).unwrap();
    t.login(s, CKU_USER, USER).unwrap();
}

#[test]
fn a_failed_set_pin_leaves_the_login_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let t = token(&dir, "");
    provision(&t);
    let s = t.open_session(0, RW).unwrap();
    t.login(s, CKU_USER, USER).unwrap();
    let (_, private) = generate(&t, s).unwrap();
    assert_eq!(rv(t.set_pin(s, b"0000", b"4321")), CKR_PIN_INCORRECT);
    // Still logged in, on the chip too: the key works without a new C_Login.
    assert_eq!(t.session_info(s).unwrap().0, CKS_RW_USER_FUNCTIONS);
    derive(&t, s, private).unwrap();
    assert_eq!(rv(t.login(s, CKU_USER, USER)), CKR_USER_ALREADY_LOGGED_IN);
    // A successful change keeps the login as well, and leaves no chip session behind: more
    // changes than the chip has sessions, then another process still logs in.
    let mut current = USER.to_vec();
    for n in 0..6u8 {
        let next = format!("pin-{n}").into_bytes();
        t.set_pin(s, &current, &next).unwrap();
        current = next;
        derive(&t, s, private).unwrap();
    }
    let other = token(&dir, "");
    let os = other.open_session(0, RW).unwrap();
    other.login(os, CKU_USER, &current).unwrap();
    for handle in find_private(&other, os) {
        derive(&other, os, handle).unwrap();
    }
    t.logout(s).unwrap();
    t.login(s, CKU_USER, &current).unwrap();
}
