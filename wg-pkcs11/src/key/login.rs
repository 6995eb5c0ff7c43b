//! Logging in to the token with the user PIN, at most once per reason, and never in a way that
//! spends the chip's PIN attempts by itself.
//!
//! The SE050 keeps the PIN's failure counter in the chip and locks the PIN at its maximum
//! (10 by default); only the SO can unlock it. A daemon that a service manager restarts after
//! every failure would, with a wrong PIN, lock its own chip within minutes. So before any
//! `C_Login` [`log_in`] reads the token's flags and declines, without an attempt, when:
//!
//! 1. the PIN is locked (`CKF_USER_PIN_LOCKED`): the chip would refuse anyway;
//! 2. one attempt is left (`CKF_USER_PIN_FINAL_TRY`): a program never spends the last one on its
//!    own; a person confirms the PIN by hand (which resets the counter) or the SO resets it;
//! 3. this very PIN was refused by this token before (the memory in `refusals.rs`) and nobody
//!    has logged in since (`CKF_USER_PIN_COUNT_LOW`: a wrong PIN was entered since the last
//!    success). When someone did log in, or the SO reset the PIN, the counter is clean and the
//!    PIN gets one more try: that costs at most one attempt, after which the counter is dirty
//!    again.
//!
//! Otherwise it sends one `C_Login`. `CKR_PIN_INCORRECT` / `CKR_PIN_LOCKED` are remembered and
//! reported with what the flags now say about the attempts left, and the caller stops: nothing
//! here retries. Every PIN failure marks the process (see [`pin_failed`]): `main` then exits
//! with [`PIN_EXIT_STATUS`], which the shipped units list in `RestartPreventExitStatus=`, so a
//! PIN problem is never met with a restart.
//!
//! No message carries the PIN: only where it came from (`Pin::origin`).

use std::sync::atomic::{AtomicBool, Ordering};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::pin::Pin;
use super::refusals::RefusalMemory;

/// The exit status of a daemon (or command) that stopped because of its PIN: refused, locked,
/// missing, or not tried so as not to spend the chip's attempts. Restarting cannot help.
/// (sysexits.h's EX_NOPERM.)
pub const PIN_EXIT_STATUS: u8 = 77;

static PIN_FAILED: AtomicBool = AtomicBool::new(false);

/// Note that this process fails because of its PIN (a PIN source that cannot be read).
pub fn mark_pin_failure() {
    PIN_FAILED.store(true, Ordering::Relaxed);
    #[cfg(test)]
    tests::MARKED_ON_THIS_THREAD.with(|m| m.set(true));
}

/// Whether this process failed because of its PIN (for the exit status).
pub fn pin_failed() -> bool {
    PIN_FAILED.load(Ordering::Relaxed)
}

/// Why there is no login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// The PIN is the problem (missing, refused, locked, not tried): never retried.
    Pin(String),
    /// Anything else (the token is unreachable, the session is gone): the text says what.
    Other(String),
}

impl LoginError {
    fn pin(message: String) -> LoginError {
        mark_pin_failure();
        LoginError::Pin(message)
    }

    pub fn message(&self) -> &str {
        match self {
            LoginError::Pin(m) | LoginError::Other(m) => m,
        }
    }
}

/// The token we log in to, for messages and the refusal memory.
pub struct LoginTarget<'a> {
    pub slot: Slot,
    pub label: &'a str,
    pub serial: &'a str,
}

impl LoginTarget<'_> {
    fn name(&self) -> String {
        if self.serial.is_empty() {
            format!("token `{}`", self.label)
        } else {
            format!("token `{}` (serial {})", self.label, self.serial)
        }
    }

    /// What identifies the token in the refusal memory.
    fn memory_id(&self) -> &str {
        if self.serial.trim().is_empty() {
            self.label.trim()
        } else {
            self.serial.trim()
        }
    }
}

/// What the token's flags say about the attempts left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinCounter {
    pub login_required: bool,
    pub locked: bool,
    pub final_try: bool,
    pub count_low: bool,
}

impl PinCounter {
    pub fn read(context: &Pkcs11, slot: Slot) -> Result<PinCounter, String> {
        let info = context
            .get_token_info(slot)
            .map_err(|e| format!("C_GetTokenInfo: {}", super::ck_error::describe(&e)))?;
        Ok(PinCounter {
            login_required: info.login_required(),
            locked: info.user_pin_locked(),
            final_try: info.user_pin_final_try(),
            count_low: info.user_pin_count_low(),
        })
    }

    /// The attempts left, as far as PKCS#11's flags tell (they give no number).
    pub fn attempts_left(&self) -> &'static str {
        if self.locked {
            "no attempts left: the PIN is LOCKED (CKF_USER_PIN_LOCKED)"
        } else if self.final_try {
            "ONE attempt left (CKF_USER_PIN_FINAL_TRY)"
        } else if self.count_low {
            "more than one attempt left, fewer than the maximum (CKF_USER_PIN_COUNT_LOW)"
        } else {
            "the token reports no failed attempt"
        }
    }
}

/// How the SO unlocks or resets the user PIN (in messages).
const SO_RESET_HINT: &str = "the token's SO resets it with `pkcs11-tool --module MODULE \
     --init-pin --login --so-pin SO_PIN --pin NEW_PIN` (see docs/pins-and-scp03.md, \"Setting a PIN \
     for a fleet\")";

/// Log in to the token as the user, at most one `C_Login`, or say why not (see the module
/// comment). `pin` is `None` when the URI names none.
pub fn log_in(
    context: &Pkcs11,
    session: &Session,
    target: &LoginTarget<'_>,
    pin: Option<&Pin>,
    memory: &RefusalMemory,
) -> Result<(), LoginError> {
    let name = target.name();
    let counter = PinCounter::read(context, target.slot).map_err(LoginError::Other)?;
    let Some(pin) = pin else {
        if counter.login_required {
            return Err(LoginError::pin(format!(
                "PIN: {name} requires a login (CKF_LOGIN_REQUIRED) and the key's URI gives no \
                 PIN: add `pin-source=/etc/wireguard/IFNAME.pin` or \
                 `pin-source=credential:NAME` to its query (or give the service the systemd \
                 credential `pin`)"
            )));
        }
        return Ok(());
    };
    if !counter.login_required {
        log::warn!(
            "the PIN from {} is not used: {name} requires no login (no user PIN is set on it), \
             so its keys are usable by any process that reaches the chip",
            pin.origin()
        );
        return Ok(());
    }
    if counter.locked {
        return Err(LoginError::pin(format!(
            "PIN: the user PIN of {name} is LOCKED (CKF_USER_PIN_LOCKED); no attempt made. \
             {SO_RESET_HINT}"
        )));
    }
    if counter.final_try {
        return Err(LoginError::pin(format!(
            "PIN: {name} has ONE PIN attempt left (CKF_USER_PIN_FINAL_TRY); wg-pkcs11 does not \
             spend the last attempt by itself, no attempt made. Check the PIN in {}, then log \
             in once by hand (`pkcs11-tool --module MODULE --login --test`), which resets the \
             counter; or {SO_RESET_HINT}",
            pin.origin()
        )));
    }
    let refused_before = memory
        .was_refused(target.memory_id(), pin.expose())
        .map_err(|e| {
            LoginError::pin(format!(
                "PIN: cannot read the memory of refused PINs ({e}); not trying the PIN, so that a \
             wrong one cannot be tried at every restart. Repair or delete {}",
                memory.dir().display()
            ))
        })?;
    if refused_before && counter.count_low {
        return Err(LoginError::pin(format!(
            "PIN: {name} already refused the PIN from {} and nobody has logged in since \
             (CKF_USER_PIN_COUNT_LOW); not trying it again (no attempt made), so that restarts \
             never use up the chip's attempts ({}). Put the right PIN in {}, or, if it is right \
             now, log in once by hand (`pkcs11-tool --module MODULE --login --test`)",
            pin.origin(),
            counter.attempts_left(),
            pin.origin()
        )));
    }
    let auth = AuthPin::from(pin.expose());
    match session.login(UserType::User, Some(&auth)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
            if refused_before {
                if let Err(e) = memory.forget(target.memory_id(), pin.expose()) {
                    log::warn!("the PIN logged in, but its old refusal stays remembered: {e}");
                }
            }
            log::info!("logged in to {name} with the PIN from {}", pin.origin());
            Ok(())
        }
        Err(CkError::Pkcs11(rv @ (RvError::PinIncorrect | RvError::PinLocked), _)) => {
            let remembered = match memory.remember_refusal(target.memory_id(), pin.expose()) {
                Ok(()) => String::new(),
                Err(e) => format!(" (and the refusal could not be remembered: {e})"),
            };
            let after = PinCounter::read(context, target.slot)
                .map(|c| c.attempts_left().to_string())
                .unwrap_or_else(|e| format!("attempts left unknown ({e})"));
            if rv == RvError::PinLocked {
                // Either the PIN was locked before (no attempt counted) or this very attempt
                // reached the chip's maximum.
                return Err(LoginError::pin(format!(
                    "PIN: {name} refused the login with the PIN from {}: the user PIN is LOCKED \
                     (CKR_PIN_LOCKED; at most one attempt used), {after}. Not retrying: \
                     {SO_RESET_HINT}{remembered}",
                    pin.origin()
                )));
            }
            Err(LoginError::pin(format!(
                "PIN: {name} refused the PIN (CKR_PIN_INCORRECT): the PIN from {} is wrong; one \
                 attempt used, {after}. Not retrying: put the right PIN there and start \
                 again{remembered}",
                pin.origin()
            )))
        }
        Err(CkError::Pkcs11(RvError::PinLenRange, _)) => Err(LoginError::pin(format!(
            "PIN: {name} does not take a PIN of that length (CKR_PIN_LEN_RANGE; the SE050 takes \
             4 to 16 bytes): check {}",
            pin.origin()
        ))),
        Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => Err(LoginError::pin(format!(
            "PIN: {name} has no user PIN yet (CKR_USER_PIN_NOT_INITIALIZED): {SO_RESET_HINT}"
        ))),
        Err(CkError::Pkcs11(RvError::PinExpired, _)) => Err(LoginError::pin(format!(
            "PIN: the user PIN of {name} has expired (CKR_PIN_EXPIRED): change it with \
             `pkcs11-tool --module MODULE --login --change-pin`"
        ))),
        Err(e) => Err(LoginError::Other(format!(
            "C_Login to {name}: {}",
            super::ck_error::describe(&e)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_left_from_the_flags() {
        let counter = |locked, final_try, count_low| PinCounter {
            login_required: true,
            locked,
            final_try,
            count_low,
        };
        assert!(counter(true, false, true)
            .attempts_left()
            .contains("LOCKED"));
        assert!(counter(false, true, true)
            .attempts_left()
            .contains("ONE attempt"));
        assert!(counter(false, false, true)
            .attempts_left()
            .contains("fewer than the maximum"));
        assert!(counter(false, false, false)
            .attempts_left()
            .contains("no failed attempt"));
    }

    thread_local! {
        /// Whether `mark_pin_failure` ran on this test's thread: the process-wide flag may have
        /// been set by any other test of the binary, so it cannot show that this one set it.
        pub(super) static MARKED_ON_THIS_THREAD: std::cell::Cell<bool> =
            const { std::cell::Cell::new(false) };
    }

    #[test]
    fn a_pin_error_marks_the_process() {
        MARKED_ON_THIS_THREAD.with(|m| m.set(false));
        let other = LoginError::Other("C_Login: device error".into());
        assert_eq!(other.message(), "C_Login: device error");
        assert!(
            !MARKED_ON_THIS_THREAD.with(|m| m.get()),
            "another error marks nothing"
        );
        let e = LoginError::pin("PIN: wrong".into());
        assert!(matches!(e, LoginError::Pin(_)));
        assert!(MARKED_ON_THIS_THREAD.with(|m| m.get()), "a PIN error marks");
        assert!(pin_failed());
    }
}
