//! The daemon's token key logs in again by itself when the module dropped its login, once, and
//! stops for good when that login is refused: the key layer the handshake worker calls, on the
//! real libpkcs11_se050.so with a virtual SE050 that enforces the PIN (3 attempts here).
//!
//! How the login is lost: the contract with the module is that when the chip loses its
//! authenticated session (a chip reset), the module drops its login and the failing key operation
//! answers CKR_USER_NOT_LOGGED_IN. A chip reset cannot be reached from outside the module's
//! process, so this test takes the login away the way PKCS#11 allows any part of a process to:
//! `C_Logout` on another session (login state belongs to the application, not the session), which
//! closes the chip's session too. The key's own session stays open, and its next `C_DeriveKey`
//! answers CKR_USER_NOT_LOGGED_IN, as after a reset.

use std::path::PathBuf;

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use wg_pkcs11::key::token::{genkey, module_context};
use wg_pkcs11::key::{StaticKey, TokenKey};
use wg_pkcs11::uri::Pkcs11Uri;

const SO_PIN: &str = "87654321";
const USER_PIN: &str = "24681357";
const NEW_PIN: &str = "11223344";

/// The directory of this binary's virtual chip and the daemon's state.
static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Runs before main, while the process has its one thread: the environment set later, while
/// the harness's other threads run, races with their reads of it (setenv against getenv is a
/// data race in glibc). The module reads its configuration once per process.
#[used]
#[link_section = ".init_array"]
static CONFIGURE_BEFORE_MAIN: extern "C" fn() = configure_before_main;

extern "C" fn configure_before_main() {
    let dir = tempfile::tempdir().unwrap().keep();
    let conf = dir.join("se050.toml");
    std::fs::write(
        &conf,
        format!(
            "transport = \"virtual\"\nvirtual_state = \"{}\"\npin_max_attempts = 3\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    std::env::set_var("PKCS11_SE050_CONF", &conf);
    std::env::set_var("WG_PKCS11_STATE_DIR", dir.join("wg-state"));
    DIR.set(dir).unwrap();
}

fn module() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let module = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("libpkcs11_se050.so");
    assert!(module.is_file(), "{} missing", module.display());
    module
}

fn peer() -> (x25519_dalek::StaticSecret, [u8; 32]) {
    let secret = x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng);
    let public = *x25519_dalek::PublicKey::from(&secret).as_bytes();
    (secret, public)
}

fn dh_agrees(key: &TokenKey) -> Result<(), String> {
    let (secret, public) = peer();
    let ours = key.diffie_hellman(&public).map_err(|e| e.to_string())?;
    let theirs = secret.diffie_hellman(&x25519_dalek::PublicKey::from(key.public_key()));
    assert_eq!(*ours, *theirs.as_bytes());
    Ok(())
}

#[test]
fn logs_in_again_once_after_losing_the_login_and_stops_when_refused() {
    let dir = DIR.get().expect("configured before main");
    let module = module();
    let context = module_context(&module).unwrap();
    let slot = context.get_slots_with_token().unwrap()[0];
    let flags = || {
        let info = context.get_token_info(slot).unwrap();
        (
            info.user_pin_count_low(),
            info.user_pin_final_try(),
            info.user_pin_locked(),
        )
    };
    let so = AuthPin::from(SO_PIN);
    context.init_token(slot, &so, "SE050").unwrap();
    let set_user_pin = |pin: &str| {
        let session = context.open_rw_session(slot).unwrap();
        session.login(UserType::So, Some(&so)).unwrap();
        session.init_pin(&AuthPin::from(pin)).unwrap();
        session.logout().unwrap();
    };
    set_user_pin(USER_PIN);

    let uri = Pkcs11Uri::parse(&format!(
        "pkcs11:token=SE050;object=wg-relogin?module-path={}&pin-value={USER_PIN}",
        module.display()
    ))
    .unwrap();
    genkey(&uri).unwrap();
    let key = TokenKey::open(&uri).unwrap();
    dh_agrees(&key).unwrap();
    let reconnects = || key.health().unwrap().reconnects;
    assert_eq!(reconnects(), 0);

    // The login goes away under the key's session: the next DH logs in again and succeeds.
    let other = context.open_rw_session(slot).unwrap();
    other.logout().unwrap();
    dh_agrees(&key).expect("a DH after the login was lost");
    assert_eq!(reconnects(), 1, "the DH did not log in again");
    assert_eq!(flags(), (false, false, false));
    assert!(key.unusable().is_none());
    // ... and again, each time the login is lost (a correct PIN costs no attempt).
    other.logout().unwrap();
    dh_agrees(&key).unwrap();
    assert_eq!(reconnects(), 2);

    // The SO changed the PIN meanwhile: logging in again is refused, once; then the key stops.
    other.logout().unwrap();
    set_user_pin(NEW_PIN);
    let refused = dh_agrees(&key).unwrap_err();
    assert!(
        refused.contains("PIN:") && refused.contains("CKR_PIN_INCORRECT"),
        "{refused}"
    );
    assert!(!refused.contains(USER_PIN), "{refused}");
    let why = key
        .unusable()
        .expect("the key says it can no longer be used");
    assert!(why.contains("one attempt used"), "{why}");
    assert!(
        key.health().unwrap().pin.contains("REFUSED"),
        "{}",
        key.health().unwrap().pin
    );
    // One attempt: with 3 allowed, a second would show as the final try.
    assert_eq!(flags(), (true, false, false));
    // The key itself never asks again, even without the memory of refused PINs (which would
    // also stop a new process from trying): it is gone here.
    std::fs::remove_dir_all(dir.join("wg-state")).unwrap();
    for _ in 0..3 {
        let again = dh_agrees(&key).unwrap_err();
        assert!(again.contains("PIN:"), "{again}");
    }
    assert_eq!(flags(), (true, false, false), "the key tried the PIN again");
    assert_eq!(reconnects(), 2);
    let _ = std::fs::remove_dir_all(dir);
}
