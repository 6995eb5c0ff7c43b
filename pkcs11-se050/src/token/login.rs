//! C_Login / C_Logout: the login is a chip session authenticated with a UserID (token/pin.rs).
//!
//! - C_Login(CKU_USER or CKU_SO) sends exactly one CreateSession and one VerifySessionUserID;
//!   CKR_PIN_INCORRECT (6982) and CKR_PIN_LOCKED (6983) are what the chip answered. Nothing here
//!   retries a PIN or counts attempts: the chip does.
//! - While logged in, every command of this process goes inside that session (the applet wraps
//!   it in ProcessSessionCmd), so every key operation runs as the user.
//! - C_Logout, closing the last session, C_CloseAllSessions and C_Finalize close it.
//! - A token without the user's UserID (no user PIN was ever set) needs no login: its keys carry
//!   no policy and the token flags say so (no CKF_LOGIN_REQUIRED). C_Login as the user answers
//!   CKR_USER_PIN_NOT_INITIALIZED there, as PKCS#11 says; the SO's login without an SO PIN is
//!   bookkeeping only. "Without that UserID" is believed only on positive evidence:
//!   CheckObjectExists answered 9000 "no such object" (R-MAC'd under SCP03). An error status
//!   word (6A80 to CreateSession) carries no MAC and is never enough.
//!
//! The contract with callers (the daemon): when the chip lost the session (reset, power cycle),
//! the module drops its login and the failing operation answers CKR_USER_NOT_LOGGED_IN; the
//! caller logs in again. The module never keeps the PIN to do that itself.

use super::chip::ChipErrorKind;
use super::error::{answer, Result};
use super::pin::{auth_object, check_pin_len, USER_PIN_ID};
use super::Token;
use pkcs11_sys::*;

impl Token {
    /// C_Login.
    pub fn login(&self, session: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &[u8]) -> Result<()> {
        self.sync_login();
        let mut sessions = self.sessions.lock();
        sessions.get(session)?;
        if user != CKU_USER && user != CKU_SO && user != CKU_CONTEXT_SPECIFIC {
            return Err(answer(
                CKR_USER_TYPE_INVALID,
                format_args!("user type {user}"),
            ));
        }
        if user == CKU_CONTEXT_SPECIFIC {
            return Err(answer(
                CKR_OPERATION_NOT_INITIALIZED,
                "no operation needs context-specific login",
            ));
        }
        if let Some(current) = sessions.user {
            return Err(answer(
                if current == user {
                    CKR_USER_ALREADY_LOGGED_IN
                } else {
                    CKR_USER_ANOTHER_ALREADY_LOGGED_IN
                },
                "already logged in",
            ));
        }
        if user == CKU_SO && sessions.has_read_only() {
            return Err(answer(
                CKR_SESSION_READ_ONLY_EXISTS,
                "SO login with read-only sessions open",
            ));
        }
        let id = auth_object(user);
        let mut link = self.link.lock();
        let chip = link
            .chip(&self.config)
            .map_err(|e| e.to_ckr("opening the chip"))?;
        // The length is checked only against a PIN that exists: without one, the user hears
        // CKR_USER_PIN_NOT_INITIALIZED and the SO's login is bookkeeping, whatever the PIN.
        if !(super::pin::MIN_PIN_LEN..=super::pin::MAX_PIN_LEN).contains(&pin.len()) {
            let exists = chip
                .exists(id)
                .map_err(|e| e.to_ckr("looking for the PIN object"))?;
            if exists {
                check_pin_len(pin)?;
            }
            if user == CKU_USER {
                return Err(no_user_pin());
            }
            sessions.user = Some(user);
            sessions.chip_session = false;
            return Ok(());
        }
        match chip.open_auth_session(id, pin) {
            Ok(()) => {
                sessions.user = Some(user);
                sessions.chip_session = true;
                log::info!(
                    "logged in as {} (chip session authenticated with UserID {id:#010x})",
                    if user == CKU_SO { "SO" } else { "user" }
                );
                Ok(())
            }
            // CreateSession names no object (6A80): no PIN was ever set, if the chip confirms
            // it in an answer the channel authenticates. PKCS#11: for the user that is
            // CKR_USER_PIN_NOT_INITIALIZED, not a login.
            Err(e) if e.kind == ChipErrorKind::NotFound => match chip.exists(id) {
                Ok(false) if user == CKU_USER => Err(no_user_pin()),
                Ok(false) => {
                    log::debug!("C_Login: no UserID {id:#010x} on the chip: the token has no PIN");
                    sessions.user = Some(user);
                    sessions.chip_session = false;
                    Ok(())
                }
                Ok(true) => Err(answer(
                    CKR_DEVICE_ERROR,
                    format_args!(
                        "C_Login: CreateSession for UserID {id:#010x} answered \"no such object\" \
                         ({}), yet the chip has it: refused (a fault or a forged status word)",
                        e.message
                    ),
                )),
                Err(e) => Err(e.to_ckr("C_Login: looking for the PIN object")),
            },
            Err(e) => Err(e.to_ckr("C_Login")),
        }
    }

    /// C_Logout.
    pub fn logout(&self, session: CK_SESSION_HANDLE) -> Result<()> {
        self.sync_login();
        let mut sessions = self.sessions.lock();
        sessions.get(session)?;
        if sessions.user.take().is_none() {
            return Err(answer(CKR_USER_NOT_LOGGED_IN, "C_Logout without C_Login"));
        }
        if std::mem::take(&mut sessions.chip_session) {
            self.close_chip_session();
        }
        // PKCS#11 5.6: private session objects are destroyed at logout; the derived secrets
        // made under the login are (their values wiped).
        self.secrets.lock().remove_private();
        Ok(())
    }

    /// Closes the chip session of the login (called with the sessions lock held, which orders
    /// before the link's).
    pub(super) fn close_chip_session(&self) {
        let mut link = self.link.lock();
        if let Ok(chip) = link.chip(&self.config) {
            chip.close_auth_session();
        }
    }

    /// Drops the login when the chip lost its session (the applet layer noticed a wrapped
    /// command refused for an unknown session, or the link was reopened in a forked child).
    pub(super) fn sync_login(&self) {
        let mut sessions = self.sessions.lock();
        if !sessions.chip_session {
            return;
        }
        let alive = self.link.lock().in_auth_session();
        if !alive {
            log::warn!(
                "the SE050 lost the authenticated session (reset or power cycle): logged out; \
                 log in again (C_Login)"
            );
            sessions.user = None;
            sessions.chip_session = false;
            self.secrets.lock().remove_private();
        }
    }

    /// For a key operation: the user must be logged in once a user PIN exists on the chip
    /// (as of this process's last look at the chip's objects). The chip's policies enforce the
    /// same for keys made under a PIN; this gives the PKCS#11 answer without a round trip.
    pub(super) fn require_user(&self, user_pin_exists: bool) -> Result<()> {
        self.sync_login();
        if user_pin_exists && self.sessions.lock().user != Some(CKU_USER) {
            return Err(answer(
                CKR_USER_NOT_LOGGED_IN,
                "the token has a user PIN: log in first (C_Login as CKU_USER)",
            ));
        }
        Ok(())
    }

    /// `require_user`, with whether a user PIN exists taken from the object cache.
    pub(super) fn require_user_for_keys(&self) -> Result<()> {
        let exists = self.loaded_cache()?.ids().any(|id| id == USER_PIN_ID);
        self.require_user(exists)
    }
}

/// C_Login as the user on a token without a user PIN.
fn no_user_pin() -> super::error::Error {
    answer(
        CKR_USER_PIN_NOT_INITIALIZED,
        "the token has no user PIN (the SO sets one: C_InitPIN); its keys need no login",
    )
}
