//! The token layer: one slot, one SE050 token, its sessions and objects. Safe Rust.
//!
//! The C ABI layer (`abi`) turns raw arguments into the types here and the `Error`s back into
//! CK_RV. All state lives in one `Token` behind a process-global, created by `initialize` and
//! dropped by `finalize`, so that C_Finalize followed by C_Initialize starts from scratch.
//!
//! Locks, always taken in this order and never held across another layer's callback:
//! `sessions` -> `cache` -> `link` ; `secrets` on its own. The derive path takes `cache` only to
//! look the key up, then `link` alone for the one ECDH APDU.

mod attest;
pub mod attributes;
pub mod certificate;
pub mod certificate_file;
pub mod chip;
#[cfg(test)]
mod curve_refusal_tests;
mod derive;
pub mod ec;
pub mod ec_keys;
#[cfg(test)]
mod ec_tests;
mod ecdh_p256;
pub mod error;
pub mod handles;
pub mod info;
mod key_attributes;
mod keygen;
#[cfg(test)]
mod keygen_tests;
pub mod link;
mod login;
mod manage;
pub mod metadata;
pub mod objects;
pub mod pin;
#[cfg(test)]
mod pin_rules_tests;
#[cfg(test)]
mod pin_tests;
mod se050;
pub mod secret;
pub mod session;
pub mod sign;
#[cfg(test)]
mod tests;
pub use se050::{applet_chip, open_chip};

pub use attest::CKM_SE050_ATTEST;
pub use derive::DeriveParams;
pub use info::{MechanismInfo, SlotInfo, TokenInfo, MECHANISMS, SLOT_ID};

use crate::config::Config;
use chip::ChipIdentity;
use error::{answer, refuse, Error, Result};
use link::{ChipLink, Opener};
use objects::ObjectCache;
use parking_lot::{Mutex, RwLock};
use pkcs11_sys::*;
use secret::SecretStore;
use session::Sessions;
use std::sync::Arc;

pub struct Token {
    pub config: Config,
    pub identity: ChipIdentity,
    link: Mutex<ChipLink>,
    cache: Mutex<ObjectCache>,
    sessions: Mutex<Sessions>,
    secrets: Mutex<SecretStore>,
    /// The process that initialised the module (a forked child must initialise again).
    pid: u32,
}

/// The module's state between C_Initialize and C_Finalize.
static TOKEN: RwLock<Option<Arc<Token>>> = RwLock::new(None);

/// C_Initialize: load the configuration, open the chip, read its identity.
pub fn initialize() -> Result<()> {
    let mut slot = TOKEN.write();
    if let Some(token) = slot.as_ref() {
        if token.pid == std::process::id() {
            return Err(answer(
                CKR_CRYPTOKI_ALREADY_INITIALIZED,
                "C_Initialize called twice",
            ));
        }
        // A forked child inherits the parent's state; it may (and should) initialise anew.
        log::info!("forked child initialising its own copy of the module");
    }
    let config = Config::load().map_err(|e| refuse(CKR_GENERAL_ERROR, e))?;
    let token = Token::open(config, Box::new(se050::open_chip))?;
    *slot = Some(Arc::new(token));
    Ok(())
}

/// C_Finalize: drop every session, object and the link. Secrets are wiped by their drops.
pub fn finalize() -> Result<()> {
    match TOKEN.write().take() {
        Some(token) => {
            // Logged in: the chip session is closed rather than left to the chip's reset.
            if token.pid == std::process::id()
                && std::mem::take(&mut token.sessions.lock().chip_session)
            {
                token.close_chip_session();
            }
            Ok(())
        }
        None => Err(answer(
            CKR_CRYPTOKI_NOT_INITIALIZED,
            "C_Finalize without C_Initialize",
        )),
    }
}

/// The token, for one call.
pub fn current() -> Result<Arc<Token>> {
    match TOKEN.read().as_ref() {
        Some(token) if token.pid == std::process::id() => Ok(Arc::clone(token)),
        _ => Err(Error(CKR_CRYPTOKI_NOT_INITIALIZED)),
    }
}

pub fn is_initialized() -> bool {
    current().is_ok()
}

impl Token {
    pub fn open(config: Config, opener: Opener) -> Result<Token> {
        let mut link = ChipLink::open(&config, opener).map_err(|e| e.to_ckr("opening the chip"))?;
        let identity = link
            .chip(&config)
            .and_then(|chip| chip.identity())
            .map_err(|e| e.to_ckr("reading the chip's identity"))?;
        log::info!(
            "SE050 applet {}.{}.{}, unique id {}",
            identity.applet_version.0,
            identity.applet_version.1,
            identity.applet_version.2,
            ec::hex(&identity.unique_id)
        );
        Ok(Token {
            config,
            identity,
            link: Mutex::new(link),
            cache: Mutex::new(ObjectCache::default()),
            sessions: Mutex::new(Sessions::default()),
            secrets: Mutex::new(SecretStore::default()),
            pid: std::process::id(),
        })
    }

    pub fn check_slot(&self, slot: CK_SLOT_ID) -> Result<()> {
        if slot != SLOT_ID {
            return Err(answer(
                CKR_SLOT_ID_INVALID,
                format_args!("no slot {slot}; the only slot is {SLOT_ID}"),
            ));
        }
        Ok(())
    }

    /// Runs `f` with the chip; link failures become CKR_DEVICE_ERROR with the reason logged.
    /// For what is no key operation (token info, random bytes): when the chip lost the login's
    /// session, `f` runs once more outside it (the login is dropped at the next call; the key
    /// operations then answer CKR_USER_NOT_LOGGED_IN).
    fn with_chip<T>(
        &self,
        f: impl Fn(&mut dyn chip::Chip) -> chip::ChipResult<T>,
        what: &str,
    ) -> Result<T> {
        let mut link = self.link.lock();
        let chip = link
            .chip(&self.config)
            .map_err(|e| e.to_ckr("opening the chip"))?;
        match f(chip) {
            Err(e) if e.kind == chip::ChipErrorKind::SessionLost => f(chip),
            other => other,
        }
        .map_err(|e| e.to_ckr(what))
    }

    /// `refresh` for a search: when the chip lost the login's session, once more outside it.
    fn refresh_for_search(&self, cache: &mut ObjectCache) -> Result<()> {
        match self.refresh(cache) {
            Err(e) if e.rv() == CKR_USER_NOT_LOGGED_IN && !self.link.lock().in_auth_session() => {
                self.refresh(cache)
            }
            other => other,
        }
    }

    /// The object cache, loaded from the chip on first use.
    fn loaded_cache(&self) -> Result<parking_lot::MutexGuard<'_, ObjectCache>> {
        let mut cache = self.cache.lock();
        if !cache.is_loaded() {
            self.refresh(&mut cache)?;
        }
        Ok(cache)
    }

    fn refresh(&self, cache: &mut ObjectCache) -> Result<()> {
        let mut link = self.link.lock();
        let chip = link
            .chip(&self.config)
            .map_err(|e| e.to_ckr("opening the chip"))?;
        cache.refresh(chip)
    }

    /// Sessions must exist; token objects may only change in read-write ones.
    fn check_session(&self, session: CK_SESSION_HANDLE, write: bool) -> Result<()> {
        let sessions = self.sessions.lock();
        let s = sessions.get(session)?;
        if write && !s.read_write {
            return Err(refuse(
                CKR_SESSION_READ_ONLY,
                "changing token objects needs a read-write session (CKF_RW_SESSION)",
            ));
        }
        Ok(())
    }

    // ----- sessions and login -----

    pub fn open_session(&self, slot: CK_SLOT_ID, flags: CK_FLAGS) -> Result<CK_SESSION_HANDLE> {
        self.check_slot(slot)?;
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(answer(
                CKR_SESSION_PARALLEL_NOT_SUPPORTED,
                "C_OpenSession without CKF_SERIAL_SESSION",
            ));
        }
        self.sessions.lock().open(flags & CKF_RW_SESSION != 0)
    }

    pub fn close_session(&self, session: CK_SESSION_HANDLE) -> Result<()> {
        {
            let mut sessions = self.sessions.lock();
            sessions.close(session)?;
            // Closing the last session logged out: the chip session goes with it.
            if sessions.user.is_none() && std::mem::take(&mut sessions.chip_session) {
                self.close_chip_session();
            }
        }
        self.secrets.lock().remove_session(session);
        Ok(())
    }

    pub fn close_all_sessions(&self, slot: CK_SLOT_ID) -> Result<()> {
        self.check_slot(slot)?;
        {
            let mut sessions = self.sessions.lock();
            sessions.close_all();
            if std::mem::take(&mut sessions.chip_session) {
                self.close_chip_session();
            }
        }
        self.secrets.lock().objects.clear();
        Ok(())
    }

    /// (state, flags) of a session.
    pub fn session_info(&self, session: CK_SESSION_HANDLE) -> Result<(CK_STATE, CK_FLAGS)> {
        self.sync_login();
        let sessions = self.sessions.lock();
        let state = sessions.state(session)?;
        let rw = if sessions.get(session)?.read_write {
            CKF_RW_SESSION
        } else {
            0
        };
        Ok((state, CKF_SERIAL_SESSION | rw))
    }

    // ----- random -----

    pub fn generate_random(&self, session: CK_SESSION_HANDLE, out: &mut [u8]) -> Result<()> {
        self.check_session(session, false)?;
        // GetRandom answers at most a few hundred bytes per APDU.
        for chunk in out.chunks_mut(200) {
            let bytes =
                self.with_chip(|chip| chip.get_random(chunk.len()), "getting random bytes")?;
            if bytes.len() != chunk.len() {
                return Err(refuse(
                    CKR_DEVICE_ERROR,
                    format_args!(
                        "chip returned {} random bytes for {}",
                        bytes.len(),
                        chunk.len()
                    ),
                ));
            }
            chunk.copy_from_slice(&bytes);
        }
        Ok(())
    }
}
