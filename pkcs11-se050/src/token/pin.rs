//! PINs: PKCS#11's user PIN and SO PIN are two UserID authentication objects on the chip, which
//! keeps their failure counters and blocks them itself. The module never counts attempts, never
//! keeps a PIN, and never retries one.
//!
//! - C_InitToken (SO PIN): the first time it creates the SO UserID; later it requires it (one
//!   chip session authenticated as the SO). The lockout threshold (`pin_max_attempts`) is set
//!   here, into the SO UserID; C_InitPIN gives a new user PIN the SO's, and every later rewrite
//!   (C_InitPIN, C_SetPIN) keeps the chip's: no PIN holder's configuration raises it. It removes what this module created (key pairs it
//!   generated, their metadata records, the user PIN, the label) and nothing else: objects of
//!   other tools and NXP-provisioned ones stay. Its label is stored on the chip (a binary file);
//!   the configuration's `token_label` only names a token never initialised.
//! - C_InitPIN (logged in as SO): creates the user UserID, or rewrites it, which resets the
//!   chip's counter and so unlocks it.
//! - C_SetPIN: rewrites the UserID of whoever is logged in (the user when nobody is), inside a
//!   session authenticated with the old PIN.
//!
//! Who may do what is the chip's policies' business (AN12413 object policies):
//! - SO UserID: the SO may rewrite or delete it; nobody else anything;
//! - user UserID: the SO may rewrite (reset) or delete it, the user rewrite it (C_SetPIN);
//! - key pairs made while a user PIN exists: key agreement, reading the public key and deletion
//!   for the user, deletion for the SO (C_InitToken), nothing for anybody else;
//! - their metadata records (label, id): the user rewrites them, the SO deletes them, everyone
//!   reads them; the label file: the SO writes it, everyone reads it. So nobody without the PIN
//!   relabels a key or the token, whatever software it runs.
//!
//! UserID values are 4 to 16 bytes (AN12413); other lengths are CKR_PIN_LEN_RANGE before the
//! chip is asked (so they cost no attempt).

use super::chip::{AuthCounter, Chip, ChipErrorKind, PolicyEntry};
use super::error::{answer, refuse, Result};
use super::Token;
use crate::applet::protocol::{
    POLICY_ALLOW_DELETE, POLICY_ALLOW_KA, POLICY_ALLOW_READ, POLICY_ALLOW_WRITE,
};
use pkcs11_sys::*;

/// The user PIN's UserID object (customer range, below the metadata files).
pub const USER_PIN_ID: u32 = 0x7AFF_0001;
/// The SO PIN's UserID object.
pub const SO_PIN_ID: u32 = 0x7AFF_0002;
/// The binary file holding the label C_InitToken gave the token.
pub const TOKEN_LABEL_FILE: u32 = 0x7AFF_0003;
/// Every object id this module uses for the token itself (not keys).
pub const TOKEN_OBJECTS: [u32; 3] = [USER_PIN_ID, SO_PIN_ID, TOKEN_LABEL_FILE];

pub const MIN_PIN_LEN: usize = 4;
pub const MAX_PIN_LEN: usize = 16;

/// The UserID object of a PKCS#11 user type.
pub fn auth_object(user: CK_USER_TYPE) -> u32 {
    if user == CKU_SO {
        SO_PIN_ID
    } else {
        USER_PIN_ID
    }
}

/// The policy of key pairs generated while a user PIN exists.
pub fn key_policy() -> [PolicyEntry; 2] {
    [
        PolicyEntry {
            auth_object: USER_PIN_ID,
            access: POLICY_ALLOW_KA | POLICY_ALLOW_READ | POLICY_ALLOW_DELETE,
        },
        PolicyEntry {
            auth_object: SO_PIN_ID,
            access: POLICY_ALLOW_DELETE,
        },
    ]
}

/// The policy of a key's metadata record (its label, id, public key) made while a user PIN
/// exists: the user rewrites or deletes it, the SO deletes it (C_InitToken), everyone reads it
/// (a process without the PIN lists the keys).
pub fn record_policy() -> [PolicyEntry; 3] {
    [
        PolicyEntry {
            auth_object: USER_PIN_ID,
            access: POLICY_ALLOW_READ | POLICY_ALLOW_WRITE | POLICY_ALLOW_DELETE,
        },
        PolicyEntry {
            auth_object: SO_PIN_ID,
            access: POLICY_ALLOW_READ | POLICY_ALLOW_DELETE,
        },
        PolicyEntry {
            auth_object: EVERYONE,
            access: POLICY_ALLOW_READ,
        },
    ]
}

/// The policy a metadata record gets when it is created now: [`record_policy`] once a user
/// PIN exists (as the cache saw the chip), none before (as for keys).
pub fn record_policy_now(cache: &super::objects::ObjectCache) -> Vec<PolicyEntry> {
    if cache.ids().any(|id| id == USER_PIN_ID) {
        record_policy().to_vec()
    } else {
        Vec::new()
    }
}

/// The policy of the label file: the SO writes it (C_InitToken), everyone reads it.
pub fn label_policy() -> [PolicyEntry; 2] {
    [
        PolicyEntry {
            auth_object: SO_PIN_ID,
            access: POLICY_ALLOW_READ | POLICY_ALLOW_WRITE | POLICY_ALLOW_DELETE,
        },
        PolicyEntry {
            auth_object: EVERYONE,
            access: POLICY_ALLOW_READ,
        },
    ]
}

/// A policy entry for auth object 0 applies to every session not named in the policy, and to
/// commands outside any session (AN12413 object policies).
const EVERYONE: u32 = 0;

fn user_pin_policy() -> [PolicyEntry; 2] {
    [
        PolicyEntry {
            auth_object: SO_PIN_ID,
            access: POLICY_ALLOW_WRITE | POLICY_ALLOW_DELETE,
        },
        PolicyEntry {
            auth_object: USER_PIN_ID,
            access: POLICY_ALLOW_WRITE,
        },
    ]
}

fn so_pin_policy() -> [PolicyEntry; 1] {
    [PolicyEntry {
        auth_object: SO_PIN_ID,
        access: POLICY_ALLOW_WRITE | POLICY_ALLOW_DELETE,
    }]
}

/// A PIN the chip could hold (4 to 16 bytes).
pub fn check_pin_len(pin: &[u8]) -> Result<()> {
    if (MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin.len()) {
        Ok(())
    } else {
        Err(answer(
            CKR_PIN_LEN_RANGE,
            format_args!(
                "a PIN has {MIN_PIN_LEN} to {MAX_PIN_LEN} bytes (the chip's UserID), not {}",
                pin.len()
            ),
        ))
    }
}

/// Token flags read from the chip's counters of the user and SO UserIDs (None: no such PIN).
pub fn pin_flags(user: Option<AuthCounter>, so: Option<AuthCounter>) -> CK_FLAGS {
    let mut flags = 0;
    if let Some(user) = user {
        flags |= CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED;
        flags |= counter_flags(
            user,
            CKF_USER_PIN_COUNT_LOW,
            CKF_USER_PIN_FINAL_TRY,
            CKF_USER_PIN_LOCKED,
        );
    }
    if let Some(so) = so {
        flags |= counter_flags(
            so,
            CKF_SO_PIN_COUNT_LOW,
            CKF_SO_PIN_FINAL_TRY,
            CKF_SO_PIN_LOCKED,
        );
    }
    flags
}

fn counter_flags(c: AuthCounter, low: CK_FLAGS, final_try: CK_FLAGS, locked: CK_FLAGS) -> CK_FLAGS {
    if c.locked() {
        locked
    } else if c.final_try() {
        // PKCS#11: FINAL_TRY is set with COUNT_LOW (a wrong PIN was entered).
        low | final_try
    } else if c.failures > 0 {
        low
    } else {
        0
    }
}

/// A label as C_InitToken passes it: 32 bytes padded with blanks.
pub fn label_from_padded(padded: &[u8]) -> String {
    let text = String::from_utf8_lossy(padded);
    text.trim_end_matches([' ', '\0']).to_string()
}

impl Token {
    /// The token's PIN flags and label, as the chip has them now.
    pub(super) fn pin_state(&self) -> Result<(CK_FLAGS, Option<String>)> {
        self.with_chip(
            |chip| {
                let user = chip.auth_counter(USER_PIN_ID)?;
                let so = chip.auth_counter(SO_PIN_ID)?;
                let label = match chip.read_binary(TOKEN_LABEL_FILE) {
                    Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                    Err(e) if matches!(e.kind, ChipErrorKind::NotFound | ChipErrorKind::Denied) => {
                        None
                    }
                    Err(e) => return Err(e),
                };
                Ok((pin_flags(user, so), label.filter(|l| !l.is_empty())))
            },
            "reading the PIN counters and the token label",
        )
    }

    /// C_InitToken.
    pub fn init_token(&self, slot: CK_SLOT_ID, so_pin: &[u8], label: &str) -> Result<()> {
        self.check_slot(slot)?;
        check_pin_len(so_pin)?;
        if label.len() > 32 {
            return Err(refuse(
                CKR_ARGUMENTS_BAD,
                "a token label has at most 32 bytes",
            ));
        }
        let sessions = self.sessions.lock();
        if sessions.count().0 != 0 {
            return Err(refuse(
                CKR_SESSION_EXISTS,
                "C_InitToken with sessions open: close them first",
            ));
        }
        let mut cache = self.cache.lock();
        let mut link = self.link.lock();
        let chip = link
            .chip(&self.config)
            .map_err(|e| e.to_ckr("opening the chip"))?;
        let max = self.config.pin_max_attempts;
        let result = (|| {
            let so_counter = chip
                .auth_counter(SO_PIN_ID)
                .map_err(|e| e.to_ckr("reading the SO PIN's counter"))?;
            if so_counter.is_none() {
                log::info!(
                    "initialising the token: creating the SO PIN (UserID {SO_PIN_ID:#010x})"
                );
                chip.write_user_id(SO_PIN_ID, so_pin, max, &so_pin_policy())
                    .map_err(|e| e.to_ckr("creating the SO PIN"))?;
            }
            chip.open_auth_session(SO_PIN_ID, so_pin)
                .map_err(|e| e.to_ckr("authenticating as the SO"))?;
            // The lockout threshold is the SO's to set, here and only here: a new one from the
            // configuration goes into the SO PIN (the user PIN, removed below, gets it anew).
            if let Some(counter) = so_counter.filter(|c| c.max_attempts != max) {
                log::info!(
                    "C_InitToken: lockout threshold {} -> {max} wrong PINs (pin_max_attempts)",
                    counter.max_attempts
                );
                chip.write_user_id(SO_PIN_ID, so_pin, max, &[])
                    .map_err(|e| e.to_ckr("setting the SO PIN's lockout threshold"))?;
            }
            cache.refresh(chip)?;
            remove_module_objects(chip, &cache)?;
            if !label.is_empty() {
                chip.write_binary(TOKEN_LABEL_FILE, label.as_bytes(), &label_policy())
                    .map_err(|e| e.to_ckr("storing the token label"))?;
            }
            Ok(())
        })();
        chip.close_auth_session();
        // Whatever happened, the cache is read afresh.
        let _ = cache.refresh(chip);
        result
    }

    /// C_InitPIN: as the SO, create or reset (and so unlock) the user PIN.
    pub fn init_pin(&self, session: CK_SESSION_HANDLE, pin: &[u8]) -> Result<()> {
        self.check_session(session, true)?;
        self.sync_login();
        if self.sessions.lock().user != Some(CKU_SO) {
            return Err(answer(
                CKR_USER_NOT_LOGGED_IN,
                "C_InitPIN needs the SO logged in",
            ));
        }
        check_pin_len(pin)?;
        let mut cache = self.cache.lock();
        let mut link = self.link.lock();
        let chip = link
            .chip(&self.config)
            .map_err(|e| e.to_ckr("opening the chip"))?;
        let current = chip
            .auth_counter(USER_PIN_ID)
            .map_err(|e| e.to_ckr("reading the user PIN's counter"))?;
        let exists = current.is_some();
        // The threshold is the token's, fixed when it was initialised: a reset keeps the user
        // PIN's, a new user PIN gets the SO PIN's. This process's configuration decides only
        // on a token never initialised.
        let max = match current {
            Some(counter) => counter.max_attempts,
            None => chip
                .auth_counter(SO_PIN_ID)
                .map_err(|e| e.to_ckr("reading the SO PIN's counter"))?
                .map_or(self.config.pin_max_attempts, |so| so.max_attempts),
        };
        let policy: &[PolicyEntry] = if exists { &[] } else { &user_pin_policy() };
        chip.write_user_id(USER_PIN_ID, pin, max, policy)
            .map_err(|e| e.to_ckr("writing the user PIN"))?;
        log::info!(
            "user PIN {} (UserID {USER_PIN_ID:#010x}, {max} attempts)",
            if exists { "reset" } else { "created" }
        );
        let _ = cache.refresh(chip);
        Ok(())
    }

    /// C_SetPIN: the logged-in user's PIN (the SO's when the SO is logged in, the user's when
    /// nobody is), authenticated on the chip with the old one.
    pub fn set_pin(&self, session: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> Result<()> {
        self.check_session(session, true)?;
        self.sync_login();
        check_pin_len(new)?;
        check_pin_len(old)?;
        let sessions = self.sessions.lock();
        let logged_in = sessions.user;
        let target = auth_object(logged_in.unwrap_or(CKU_USER));
        let mut link = self.link.lock();
        let chip = link
            .chip(&self.config)
            .map_err(|e| e.to_ckr("opening the chip"))?;
        // A PIN holder changes the PIN, not how many wrong ones the chip takes: the new value
        // keeps the maximum the chip has now.
        let Some(AuthCounter {
            max_attempts: max, ..
        }) = chip
            .auth_counter(target)
            .map_err(|e| e.to_ckr("reading the PIN's counter"))?
        else {
            return Err(answer(
                if target == USER_PIN_ID {
                    CKR_USER_PIN_NOT_INITIALIZED
                } else {
                    CKR_USER_NOT_LOGGED_IN
                },
                "C_SetPIN: this PIN was never set (C_InitPIN / C_InitToken)",
            ));
        };
        // The old PIN is verified in a chip session of its own; the login's session (if any)
        // is set aside meanwhile, still open, so that a wrong old PIN leaves the login as it
        // was (PKCS#11: a failed C_SetPIN changes nothing).
        let login_session = if sessions.chip_session {
            chip.set_auth_session_aside()
        } else {
            None
        };
        let result = chip
            .open_auth_session(target, old)
            .map_err(|e| e.to_ckr("C_SetPIN: authenticating with the old PIN"))
            .and_then(|()| {
                let written = chip
                    .write_user_id(target, new, max, &[])
                    .map_err(|e| e.to_ckr("C_SetPIN: writing the new PIN"));
                chip.close_auth_session();
                written
            });
        if let Some(session) = login_session {
            chip.resume_auth_session(session);
        }
        result
    }
}

/// Deletes the key pairs this module generated, every metadata record, the user PIN and the
/// label. Objects without a record of ours (other tools', NXP's) are left alone.
fn remove_module_objects(chip: &mut dyn Chip, cache: &super::objects::ObjectCache) -> Result<()> {
    let delete = |chip: &mut dyn Chip, id: u32, what: &str| match chip.delete(id) {
        Ok(()) => Ok(()),
        Err(e) if e.kind == ChipErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.to_ckr(&format!("C_InitToken: deleting {what} {id:#010x}"))),
    };
    for (file, record) in cache.records() {
        if record.generated && !record.private_destroyed {
            delete(chip, record.key_id, "key pair")?;
        }
        delete(chip, file, "metadata record")?;
    }
    for id in [USER_PIN_ID, TOKEN_LABEL_FILE] {
        if cache.ids().any(|used| used == id) {
            delete(chip, id, "token object")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(failures: u16, max_attempts: u16) -> Option<AuthCounter> {
        Some(AuthCounter {
            failures,
            max_attempts,
        })
    }

    #[test]
    fn flags_follow_the_chips_counters() {
        assert_eq!(pin_flags(None, None), 0, "no PIN: no login required");
        assert_eq!(
            pin_flags(counter(0, 10), None),
            CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED
        );
        let low = pin_flags(counter(1, 10), None);
        assert_eq!(low & CKF_USER_PIN_COUNT_LOW, CKF_USER_PIN_COUNT_LOW);
        assert_eq!(low & (CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED), 0);
        let last = pin_flags(counter(9, 10), None);
        assert_eq!(last & CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_FINAL_TRY);
        assert_eq!(last & CKF_USER_PIN_LOCKED, 0);
        let locked = pin_flags(counter(10, 10), counter(0, 10));
        assert_eq!(locked & CKF_USER_PIN_LOCKED, CKF_USER_PIN_LOCKED);
        assert_eq!(locked & CKF_USER_PIN_FINAL_TRY, 0);
        assert_eq!(locked & CKF_SO_PIN_LOCKED, 0);
        let so = pin_flags(None, counter(2, 3));
        assert_eq!(
            so,
            CKF_SO_PIN_COUNT_LOW | CKF_SO_PIN_FINAL_TRY,
            "the SO's counter sets only SO flags; no user PIN: no login required"
        );
        assert_eq!(pin_flags(None, counter(3, 3)), CKF_SO_PIN_LOCKED);
    }

    #[test]
    fn pin_lengths_and_padded_labels() {
        assert_eq!(check_pin_len(b"123").unwrap_err().rv(), CKR_PIN_LEN_RANGE);
        assert_eq!(
            check_pin_len(&[b'1'; 17]).unwrap_err().rv(),
            CKR_PIN_LEN_RANGE
        );
        check_pin_len(b"1234").unwrap();
        check_pin_len(&[b'1'; 16]).unwrap();
        assert_eq!(label_from_padded(b"wg fleet 7            "), "wg fleet 7");
        assert_eq!(label_from_padded(&[b' '; 32]), "");
    }
}
