//! What a PIN holder may and may not change, and what login and logout do, as PKCS#11 says:
//! the lockout threshold, derived secrets at C_Logout, C_Login on a token without a user PIN,
//! a failed C_SetPIN, and who may write the metadata records and the label file.

use super::pin::{SO_PIN_ID, USER_PIN_ID};
use super::pin_tests::*;
use crate::virtual_se050::store::ObjectData;
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
    t.init_token(0, b"so-secret-2", "again").unwrap();
    let s = t.open_session(0, RW).unwrap();
    t.login(s, CKU_SO, b"so-secret-2").unwrap();
    t.init_pin(s, USER).unwrap();
    assert_eq!(max_attempts(&dir, USER_PIN_ID), 3, "C_InitPIN (create)");
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
