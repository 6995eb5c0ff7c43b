//! A static key that lives in a PKCS#11 token: every Diffie-Hellman is one `C_DeriveKey`.
//!
//! The key is found by its `pkcs11:` URI (module, token, object label / id). Its public half
//! comes from the token (`CKA_EC_POINT`, raw 32 bytes or a DER OCTET STRING, both seen in the
//! wild). A DH derives a session-only generic secret (`CKM_ECDH1_DERIVE`, `CKD_NULL`, the peer's
//! raw 32-byte public key), reads its `CKA_VALUE`, destroys the object and zeroizes the copy.
//!
//! One session is kept open for the life of the key and guarded by a mutex: cryptoki sessions
//! are not `Sync`, and a token does one operation at a time anyway. If the session dies (token
//! reset, module restarted its link), the next DH reopens it once and finds the key again.

use std::fmt;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::Arc;
use std::sync::Mutex;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use zeroize::{Zeroize, Zeroizing};

use super::ck_error::describe;
use super::health::{self, HealthRecorder, KeyHealth, TokenFacts};
use super::login::LoginError;
use super::pin::{read_pin, Pin};
use super::refusals::RefusalMemory;
use super::{KeyError, StaticKey};
use crate::uri::{ObjectType, Pkcs11Uri};

mod genkey;
mod lookup;
pub use genkey::{genkey, pubkey};
use lookup::{find_key, open_logged_in, warn_not_in_hardware};
pub(crate) use lookup::{
    key_template, matching_tokens, one_token_for_a_pin, open_session, read_attribute, MatchedToken,
};
pub use lookup::{module_context, parse_ec_point};

/// Why the token key cannot be used; the message names the module, token or object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError(pub String);

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TokenError {}

pub(crate) fn ck(what: &str, e: CkError) -> TokenError {
    TokenError(format!("{what}: {}", describe(&e)))
}

/// A live session and the key's handle in it.
struct Live {
    session: Session,
    private_key: ObjectHandle,
}

/// A WireGuard static key held in a PKCS#11 token.
pub struct TokenKey {
    uri: Pkcs11Uri,
    module: PathBuf,
    context: Pkcs11,
    slot: Slot,
    /// The user PIN, kept (wiped on drop) to log in again after the chip lost our login.
    pin: Option<Pin>,
    /// Where refused PINs are remembered (see `refusals.rs`).
    memory: RefusalMemory,
    /// Set once logging in again failed because of the PIN: from then on no operation reaches
    /// the chip (the daemon stops; see `StaticKey::unusable`).
    refused: Mutex<Option<String>>,
    public_key: [u8; 32],
    /// Whether the token's slot is a hardware slot (CKF_HW_SLOT).
    in_hardware: bool,
    /// `object `wg` in token `SE050` (serial ...)`, for messages.
    description: String,
    live: Mutex<Option<Live>>,
    /// What the module says about the slot and token (for `show`), or why it could not say.
    facts: Result<TokenFacts, String>,
    /// ECDH count, latency, errors and reconnects since the key was opened.
    health: HealthRecorder,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenKey({})", self.description)
    }
}

impl TokenKey {
    /// Load the URI's module, find its token and private key, log in if a PIN is given.
    pub fn open(uri: &Pkcs11Uri) -> Result<TokenKey, TokenError> {
        if uri.object_type.is_some_and(|t| t != ObjectType::Private) {
            return Err(TokenError(format!(
                "{} names a non-private object (type=): a WireGuard PrivateKey needs type=private or no type",
                uri.redacted()
            )));
        }
        for (name, _) in &uri.unknown_query {
            log::warn!("pkcs11 URI: ignoring unknown query attribute `{name}`");
        }
        let module = uri.module().map_err(TokenError)?;
        let context = module_context(&module)?;
        let pin = read_pin(uri).map_err(pin_source_error)?;
        let tokens = matching_tokens(&context, uri, &module)?;
        one_token_for_a_pin(&tokens, uri, pin.as_ref())?;
        let mut found: Vec<(MatchedToken, Session, ObjectHandle, [u8; 32])> = Vec::new();
        for token in tokens {
            let session = open_session(&context, &token, pin.as_ref())?;
            if let Some((handle, public)) = find_key(&session, uri, &token)? {
                found.push((token, session, handle, public));
            }
        }
        // One chip offered twice (its module registered with p11-kit twice, e.g. a packaged and
        // a locally built copy, both reached through p11-kit-proxy): the same token serial and
        // the same public key are the same key, whichever slot answers. Anything else stays an
        // ambiguity the URI must resolve.
        if found.len() > 1 {
            let (first, .., first_public) = &found[0];
            let same_key = !first.serial.is_empty()
                && found.iter().all(|(t, .., public)| {
                    t.serial == first.serial && t.label == first.label && public == first_public
                });
            if same_key {
                log::debug!(
                    "token `{}` (serial `{}`) is offered by {} slots: using the first",
                    first.label,
                    first.serial,
                    found.len()
                );
                found.truncate(1);
            }
        }
        match found.len() {
            0 => Err(TokenError(format!(
                "no X25519 private key matching {} in module {} (is the object label/id right, and does \
                 the token need a PIN to show private objects?)",
                uri.redacted(),
                module.display()
            ))),
            1 => {
                let (token, session, private_key, public_key) = found.pop().expect("one");
                let description = format!(
                    "{} in token `{}` (serial `{}`)",
                    object_name(uri),
                    token.label,
                    token.serial
                );
                log::info!("using X25519 key {description} from {}", module.display());
                let facts = TokenFacts::read(&context, token.slot);
                if !token.in_hardware {
                    warn_not_in_hardware(&format!("the key {description}"), &token);
                }
                Ok(TokenKey {
                    uri: uri.clone(),
                    module,
                    context,
                    slot: token.slot,
                    pin,
                    memory: RefusalMemory::system(),
                    refused: Mutex::new(None),
                    public_key,
                    in_hardware: token.in_hardware,
                    description,
                    live: Mutex::new(Some(Live { session, private_key })),
                    facts,
                    health: HealthRecorder::default(),
                })
            }
            n => {
                let labels: Vec<String> = found.iter().map(|(t, ..)| format!("`{}`", t.label)).collect();
                Err(TokenError(format!(
                    "{n} tokens ({}) hold a key matching {}: add token= or serial= to the URI",
                    labels.join(", "),
                    uri.redacted()
                )))
            }
        }
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Runs `f` on the key's open session with its private key handle (key/attest.rs).
    pub(crate) fn with_session<R>(
        &self,
        what: &str,
        f: impl FnOnce(&Session, ObjectHandle) -> Result<R, CkError>,
    ) -> Result<R, TokenError> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let live = live
            .as_ref()
            .ok_or_else(|| TokenError(format!("{what}: the token session is closed")))?;
        f(&live.session, live.private_key).map_err(|e| ck(what, e))
    }

    pub fn module(&self) -> &Path {
        &self.module
    }

    /// The key's health now (see `key::health`).
    pub fn health_snapshot(&self) -> KeyHealth {
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        health::snapshot(
            &self.uri,
            &self.context,
            self.slot,
            &self.facts,
            &self.health,
            self.pin.as_ref().map(Pin::origin),
            refused.as_deref(),
        )
    }

    /// Whether the key is in a hardware token (its slot has CKF_HW_SLOT).
    pub fn in_hardware(&self) -> bool {
        self.in_hardware
    }

    /// Reopen the session and find the key again (after the token dropped our session).
    fn reconnect(&self) -> Result<Live, LoginError> {
        let (label, serial) = match &self.facts {
            Ok(facts) => (facts.label.clone(), facts.serial.clone()),
            Err(_) => (self.description.clone(), String::new()),
        };
        let token = MatchedToken {
            slot: self.slot,
            label,
            serial,
            in_hardware: self.in_hardware,
            maker: String::new(),
        };
        let session = open_logged_in(&self.context, &token, self.pin.as_ref(), &self.memory)?;
        self.find_again(session, &token)
            .map_err(|e| LoginError::Other(e.0))
    }

    fn find_again(&self, session: Session, token: &MatchedToken) -> Result<Live, TokenError> {
        let (private_key, public) = find_key(&session, &self.uri, token)?.ok_or_else(|| {
            TokenError(format!(
                "the key {} is gone from the token",
                self.description
            ))
        })?;
        if public != self.public_key {
            return Err(TokenError(format!(
                "the key {} changed its public key since the interface came up",
                self.description
            )));
        }
        Ok(Live {
            session,
            private_key,
        })
    }

    /// One C_DeriveKey: a session secret whose value is read, then the object destroyed.
    fn derive(live: &Live, peer_public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, CkError> {
        let params = Ecdh1DeriveParams::new(EcKdf::null(), peer_public);
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        let secret = live.session.derive_key(
            &Mechanism::Ecdh1Derive(params),
            live.private_key,
            &template,
        )?;
        let value = live.session.get_attributes(secret, &[AttributeType::Value]);
        // The secret object must not outlive this call, whatever happened reading it.
        if let Err(e) = live.session.destroy_object(secret) {
            log::warn!(
                "C_DestroyObject of a derived secret failed: {}",
                describe(&e)
            );
        }
        let mut result = Zeroizing::new([0u8; 32]);
        let mut attributes = value?;
        let copied = match attributes.first_mut() {
            Some(Attribute::Value(bytes)) if bytes.len() == 32 => {
                result.copy_from_slice(bytes);
                true
            }
            _ => false,
        };
        for attribute in &mut attributes {
            if let Attribute::Value(bytes) = attribute {
                bytes.zeroize();
            }
        }
        if copied {
            Ok(result)
        } else {
            Err(CkError::InvalidValue)
        }
    }
}

fn object_name(uri: &Pkcs11Uri) -> String {
    match (&uri.object, &uri.id) {
        (Some(label), _) => format!("object `{label}`"),
        (None, Some(id)) => format!(
            "id {}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        (None, None) => "the only X25519 key".to_string(),
    }
}

/// The session errors after which a fresh session may succeed.
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::KeyHandleInvalid
                | RvError::UserNotLoggedIn,
            _
        )
    )
}

impl StaticKey for TokenKey {
    fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    fn health(&self) -> Option<KeyHealth> {
        Some(self.health_snapshot())
    }

    fn in_hardware(&self) -> bool {
        self.in_hardware
    }

    fn unusable(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn diffie_hellman(&self, peer_public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(refused) = self.unusable() {
            // The PIN failed when we logged in again: the chip is not asked any more.
            return Err(KeyError::Token(refused));
        }
        let mut last_error = None;
        for attempt in 0..2 {
            if live.is_none() {
                match self.reconnect() {
                    Ok(fresh) => {
                        self.health.reconnect();
                        *live = Some(fresh)
                    }
                    Err(LoginError::Pin(message)) => {
                        self.health.error();
                        log::error!(
                            "{}: logging in again failed: {message}; no more handshakes with \
                             this key",
                            self.description
                        );
                        *self.refused.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(message.clone());
                        return Err(KeyError::Token(message));
                    }
                    Err(LoginError::Other(message)) => {
                        self.health.error();
                        return Err(KeyError::Token(message));
                    }
                }
            }
            let current = live.as_ref().expect("just ensured");
            let started = std::time::Instant::now();
            let derived = TokenKey::derive(current, peer_public);
            if derived.is_ok() {
                self.health.ecdh_done(started.elapsed());
            } else {
                self.health.error();
            }
            match derived {
                Ok(secret) if *secret == [0u8; 32] => return Err(KeyError::NonContributory),
                Ok(secret) => return Ok(secret),
                Err(e) if attempt == 0 && session_lost(&e) => {
                    if matches!(e, CkError::Pkcs11(RvError::UserNotLoggedIn, _)) {
                        // The contract with the module: a chip reset closed the chip's
                        // authenticated session, and the module dropped its login. One new
                        // login (reconnect), never more for this operation.
                        log::warn!(
                            "the token lost the login for {} (chip reset?): logging in again",
                            self.description
                        );
                    } else {
                        log::warn!(
                            "token session for {} lost ({}): reopening",
                            self.description,
                            describe(&e)
                        );
                    }
                    *live = None;
                    last_error = Some(e);
                }
                Err(e) => {
                    return Err(KeyError::Token(format!(
                        "C_DeriveKey with {}: {}",
                        self.description,
                        describe(&e)
                    )))
                }
            }
        }
        Err(KeyError::Token(format!(
            "C_DeriveKey with {}: {}",
            self.description,
            last_error.map(|e| describe(&e)).unwrap_or_default()
        )))
    }
}

/// A `pin-source` that cannot be read is a PIN problem: the exit status says so.
pub(crate) fn pin_source_error(message: String) -> TokenError {
    super::login::mark_pin_failure();
    TokenError(format!("PIN: {message}"))
}

/// Shared with the integration tests (tests/boringtun_token.rs), which cannot see a `cfg(test)` item.
#[cfg(test)]
#[path = "../../tests/virtual_se050_module/mod.rs"]
mod virtual_se050_module;

/// The virtual chip of the unit tests answers at once.
#[cfg(test)]
fn virtual_se050_latency_ms() -> u64 {
    0
}

#[cfg(test)]
mod tests;
