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

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::sync::Arc;
use std::sync::{LazyLock, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use zeroize::{Zeroize, Zeroizing};

use super::ck_error::describe;
use super::health::{self, HealthRecorder, KeyHealth, TokenFacts};
use super::login::{log_in, LoginError, LoginTarget};
use super::pin::{read_pin, Pin};
use super::refusals::RefusalMemory;
use super::{KeyError, StaticKey};
use crate::uri::{ObjectType, Pkcs11Uri};

/// RFC 8410 id-X25519 (1.3.101.110) as a DER OBJECT IDENTIFIER: the curve of a new key pair.
const X25519_OID_DER: [u8; 5] = [0x06, 0x03, 0x2B, 0x65, 0x6E];

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

/// Each module is loaded and initialised once per process: a second `C_Initialize` on the same
/// library fails, and finalizing one context would pull the module from under another.
static CONTEXTS: LazyLock<Mutex<HashMap<PathBuf, Pkcs11>>> = LazyLock::new(Default::default);

/// The initialised context of a module, loading it the first time.
pub fn module_context(module: &Path) -> Result<Pkcs11, TokenError> {
    let mut contexts = CONTEXTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(context) = contexts.get(module) {
        return Ok(context.clone());
    }
    let context = Pkcs11::new(module).map_err(|e| {
        TokenError(format!(
            "cannot load PKCS#11 module {}: {}",
            module.display(),
            describe(&e)
        ))
    })?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(ck(&format!("C_Initialize of {}", module.display()), e)),
    }
    contexts.insert(module.to_path_buf(), context.clone());
    Ok(context)
}

/// A token slot the URI selects, with what we know about it for messages.
pub(crate) struct MatchedToken {
    pub(crate) slot: Slot,
    pub(crate) label: String,
    pub(crate) serial: String,
    /// The slot says CKF_HW_SLOT; a software token (the virtual SE050, SoftHSM) does not.
    pub(crate) in_hardware: bool,
    /// `model `...` by `...``, for the warning about a key that is not in hardware.
    pub(crate) maker: String,
}

/// The warning every start (and every genkey) gives when the key is not in hardware.
fn warn_not_in_hardware(what: &str, token: &MatchedToken) {
    log::warn!(
        "{what} is NOT in hardware: token `{}` ({}) is a software token (its slot has no \
         CKF_HW_SLOT), so its private key can be copied with the files that hold it",
        token.label,
        token.maker
    );
}

/// Every slot whose library, slot and token attributes satisfy the URI. The error lists what
/// is there when nothing matches, so a typo in `token=` is easy to see.
pub(crate) fn matching_tokens(
    context: &Pkcs11,
    uri: &Pkcs11Uri,
    module: &Path,
) -> Result<Vec<MatchedToken>, TokenError> {
    let info = context.get_library_info().map_err(|e| ck("C_GetInfo", e))?;
    let version = info.library_version();
    if !uri.matches_library(
        info.manufacturer_id(),
        info.library_description(),
        (version.major(), version.minor()),
    ) {
        return Err(TokenError(format!(
            "module {} (`{}` by `{}`, version {}.{}) does not match the URI's library attributes",
            module.display(),
            info.library_description(),
            info.manufacturer_id(),
            version.major(),
            version.minor()
        )));
    }
    let slots = context
        .get_slots_with_token()
        .map_err(|e| ck("C_GetSlotList", e))?;
    let mut matched = Vec::new();
    let mut present = Vec::new();
    for slot in slots {
        let slot_info = context
            .get_slot_info(slot)
            .map_err(|e| ck("C_GetSlotInfo", e))?;
        let token = context
            .get_token_info(slot)
            .map_err(|e| ck("C_GetTokenInfo", e))?;
        present.push(format!(
            "`{}` (serial `{}`, slot {})",
            token.label(),
            token.serial_number(),
            slot.id()
        ));
        if uri.matches_slot(
            slot.id(),
            slot_info.slot_description(),
            slot_info.manufacturer_id(),
        ) && uri.matches_token(
            token.label(),
            token.manufacturer_id(),
            token.model(),
            token.serial_number(),
        ) {
            matched.push(MatchedToken {
                slot,
                label: token.label().to_string(),
                serial: token.serial_number().to_string(),
                in_hardware: slot_info.hardware_slot(),
                maker: format!("model `{}` by `{}`", token.model(), token.manufacturer_id()),
            });
        }
    }
    if matched.is_empty() {
        let present = if present.is_empty() {
            "no tokens at all".to_string()
        } else {
            format!("tokens present: {}", present.join(", "))
        };
        return Err(TokenError(format!(
            "no token matches {} in module {} ({present})",
            uri.redacted(),
            module.display()
        )));
    }
    Ok(matched)
}

/// Open a session on the token and log in as `login.rs` decides (at most one `C_Login`).
pub(crate) fn open_session(
    context: &Pkcs11,
    token: &MatchedToken,
    pin: Option<&Pin>,
) -> Result<Session, TokenError> {
    open_logged_in(context, token, pin, &RefusalMemory::system())
        .map_err(|e| TokenError(e.message().to_string()))
}

fn open_logged_in(
    context: &Pkcs11,
    token: &MatchedToken,
    pin: Option<&Pin>,
    memory: &RefusalMemory,
) -> Result<Session, LoginError> {
    let session = context
        .open_rw_session(token.slot)
        .or_else(|_| context.open_ro_session(token.slot))
        .map_err(|e| {
            LoginError::Other(ck(&format!("C_OpenSession on token `{}`", token.label), e).0)
        })?;
    let target = LoginTarget {
        slot: token.slot,
        label: &token.label,
        serial: &token.serial,
    };
    log_in(context, &session, &target, pin, memory)?;
    Ok(session)
}

/// A PIN goes to one chip only: with a PIN, the URI must select one token (or one chip that
/// several slots offer: the same label and serial), so that a wrong token never sees it.
pub(crate) fn one_token_for_a_pin(
    tokens: &[MatchedToken],
    uri: &Pkcs11Uri,
    pin: Option<&Pin>,
) -> Result<(), TokenError> {
    let Some(pin) = pin else { return Ok(()) };
    let Some(first) = tokens.first() else {
        return Ok(());
    };
    let one_chip = !first.serial.is_empty()
        && tokens
            .iter()
            .all(|t| t.serial == first.serial && t.label == first.label);
    if tokens.len() > 1 && !one_chip {
        let names: Vec<String> = tokens
            .iter()
            .map(|t| format!("`{}` (serial {})", t.label, t.serial))
            .collect();
        return Err(TokenError(format!(
            "{} tokens match {} ({}) and it gives a PIN (from {}): add token= or serial= so              that the PIN goes to one token only",
            tokens.len(),
            uri.redacted(),
            names.join(", "),
            pin.origin()
        )));
    }
    Ok(())
}

/// The search template for the key object the URI names (label and/or id).
pub(crate) fn key_template(uri: &Pkcs11Uri, class: ObjectClass) -> Vec<Attribute> {
    let mut template = vec![
        Attribute::Class(class),
        Attribute::KeyType(KeyType::EC_MONTGOMERY),
    ];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    template
}

/// `CKA_EC_POINT` of an X25519 key: 32 raw bytes (PKCS#11 3.1) or `04 20 || key` (3.0 tools).
pub fn parse_ec_point(bytes: &[u8]) -> Result<[u8; 32], TokenError> {
    let raw = match bytes {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest,
        raw if raw.len() == 32 => raw,
        other => {
            return Err(TokenError(format!(
            "CKA_EC_POINT of {} bytes is neither a raw X25519 key (32) nor a DER OCTET STRING (34)",
            other.len()
        )))
        }
    };
    Ok(raw.try_into().expect("length checked"))
}

pub(crate) fn read_attribute(
    session: &Session,
    object: ObjectHandle,
    kind: AttributeType,
) -> Option<Attribute> {
    session
        .get_attributes(object, &[kind])
        .ok()?
        .into_iter()
        .next()
}

fn ec_point_of(session: &Session, object: ObjectHandle) -> Option<Result<[u8; 32], TokenError>> {
    match read_attribute(session, object, AttributeType::EcPoint)? {
        Attribute::EcPoint(point) => Some(parse_ec_point(&point)),
        _ => None,
    }
}

/// The private key the URI names in one opened token, and its public key.
fn find_key(
    session: &Session,
    uri: &Pkcs11Uri,
    token: &MatchedToken,
) -> Result<Option<(ObjectHandle, [u8; 32])>, TokenError> {
    let found = session
        .find_objects(&key_template(uri, ObjectClass::PRIVATE_KEY))
        .map_err(|e| ck(&format!("C_FindObjects in token `{}`", token.label), e))?;
    let private = match found.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        many => {
            return Err(TokenError(format!(
                "{} X25519 private keys in token `{}` match {}: add object= or id= to pick one",
                many.len(),
                token.label,
                uri.redacted()
            )))
        }
    };
    // Some modules put CKA_EC_POINT on the private key too; otherwise use the public key
    // object with the same CKA_ID (as pkcs11-tool pairs them), else the same label.
    if let Some(point) = ec_point_of(session, private) {
        return Ok(Some((private, point?)));
    }
    let mut public_template = vec![
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::EC_MONTGOMERY),
    ];
    match read_attribute(session, private, AttributeType::Id) {
        Some(Attribute::Id(id)) if !id.is_empty() => public_template.push(Attribute::Id(id)),
        _ => {
            if let Some(Attribute::Label(label)) =
                read_attribute(session, private, AttributeType::Label)
            {
                public_template.push(Attribute::Label(label));
            }
        }
    }
    let publics = session
        .find_objects(&public_template)
        .map_err(|e| ck(&format!("C_FindObjects in token `{}`", token.label), e))?;
    for public in publics {
        if let Some(point) = ec_point_of(session, public) {
            return Ok(Some((private, point?)));
        }
    }
    Err(TokenError(format!(
        "found the private key {} in token `{}` but not its public key (no CKA_EC_POINT on it, and no \
         X25519 public key object with the same CKA_ID or label)",
        uri.redacted(),
        token.label
    )))
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

/// Generate an X25519 key pair in the token the URI names, labelled and identified as the URI
/// says (`object=` and/or `id=`; at least one, so the key can be found again). The private key
/// is a token object, sensitive, never extractable, usable only for derivation. Returns the
/// public key.
pub fn genkey(uri: &Pkcs11Uri) -> Result<[u8; 32], TokenError> {
    if uri.object.is_none() && uri.id.is_none() {
        return Err(TokenError(
            "genkey needs object=LABEL or id=ID in the URI, so that the new key can be found again"
                .into(),
        ));
    }
    let module = uri.module().map_err(TokenError)?;
    let context = module_context(&module)?;
    let pin = read_pin(uri).map_err(pin_source_error)?;
    let mut tokens = matching_tokens(&context, uri, &module)?;
    if tokens.len() > 1 {
        let labels: Vec<String> = tokens.iter().map(|t| format!("`{}`", t.label)).collect();
        return Err(TokenError(format!(
            "{} tokens match {} ({}): add token= or serial= to say where to generate the key",
            tokens.len(),
            uri.redacted(),
            labels.join(", ")
        )));
    }
    let token = tokens.pop().expect("matching_tokens returns at least one");
    if !token.in_hardware {
        warn_not_in_hardware(&format!("the new key {}", object_name(uri)), &token);
    }
    let session = open_session(&context, &token, pin.as_ref())?;
    let existing = session
        .find_objects(&key_template(uri, ObjectClass::PRIVATE_KEY))
        .map_err(|e| ck("C_FindObjects", e))?;
    if !existing.is_empty() {
        return Err(TokenError(format!(
            "token `{}` already has a private key with {}: choose a new label or id (key rotation keeps the old key until the server knows the new one)",
            token.label,
            object_name(uri)
        )));
    }
    // Pair the halves by CKA_ID; make one up when the URI gives only a label.
    let id = match &uri.id {
        Some(id) => id.clone(),
        None => {
            let mut id = [0u8; 8];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
            id.to_vec()
        }
    };
    let mut common = vec![
        Attribute::Token(true),
        Attribute::Derive(true),
        Attribute::Id(id),
    ];
    if let Some(label) = &uri.object {
        common.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    let mut public_template = common.clone();
    public_template.extend([
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::EC_MONTGOMERY),
        Attribute::EcParams(X25519_OID_DER.to_vec()),
        Attribute::Private(false),
    ]);
    let mut private_template = common;
    private_template.extend([
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::EC_MONTGOMERY),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
    ]);
    let (public, _private) = session
        .generate_key_pair(
            &Mechanism::EccMontgomeryKeyPairGen,
            &public_template,
            &private_template,
        )
        .map_err(|e| {
            ck(
                &format!("C_GenerateKeyPair (X25519) in token `{}`", token.label),
                e,
            )
        })?;
    let point = ec_point_of(&session, public).ok_or_else(|| {
        TokenError(format!(
            "the new public key in token `{}` has no readable CKA_EC_POINT",
            token.label
        ))
    })??;
    log::info!(
        "generated X25519 key {} in token `{}`",
        object_name(uri),
        token.label
    );
    Ok(point)
}

/// The public key of the token key the URI names.
pub fn pubkey(uri: &Pkcs11Uri) -> Result<[u8; 32], TokenError> {
    Ok(TokenKey::open(uri)?.public_key())
}

/// Shared with the integration tests (tests/boringtun_token.rs), which cannot see a `cfg(test)` item.
#[cfg(test)]
#[path = "../../tests/virtual_se050_module/mod.rs"]
mod virtual_se050_module;

#[cfg(test)]
mod tests {
    use super::*;

    /// The real libpkcs11_se050.so of this build on a virtual SE050 without added latency, shared
    /// by every test here (a module is initialised once per process).
    fn se050_module() -> PathBuf {
        super::virtual_se050_module::virtual_se050_module(0)
    }

    /// Token tests share the module's sessions; the one that closes them all runs alone.
    static TOKEN_TESTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

    fn uri(path_part: &str) -> Pkcs11Uri {
        let text = format!(
            "pkcs11:{path_part}?module-path={}",
            se050_module().display()
        );
        Pkcs11Uri::parse(&text).unwrap()
    }

    fn peer() -> (x25519_dalek::StaticSecret, [u8; 32]) {
        let secret = x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng);
        let public = *x25519_dalek::PublicKey::from(&secret).as_bytes();
        (secret, public)
    }

    #[test]
    fn genkey_pubkey_and_dh_agree_with_x25519_dalek() {
        let _shared = TOKEN_TESTS.read().unwrap_or_else(|e| e.into_inner());
        let uri = uri("token=SE050;object=wg-dh");
        let generated = genkey(&uri).unwrap();
        assert_eq!(pubkey(&uri).unwrap(), generated);
        let key = TokenKey::open(&uri).unwrap();
        assert_eq!(key.public_key(), generated);
        assert!(key.description().contains("wg-dh"), "{}", key.description());
        // Several DHs on the one session, each against an independent software X25519.
        for _ in 0..3 {
            let (secret, public) = peer();
            let ours = key.diffie_hellman(&public).unwrap();
            let theirs = secret.diffie_hellman(&x25519_dalek::PublicKey::from(generated));
            assert_eq!(*ours, *theirs.as_bytes());
        }
        // The derived secrets did not stay behind in the token.
        let context = module_context(&se050_module()).unwrap();
        let slot = context.get_slots_with_token().unwrap()[0];
        let session = context.open_ro_session(slot).unwrap();
        let secrets = session
            .find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
            .unwrap();
        assert!(
            secrets.is_empty(),
            "{} derived secret objects left behind",
            secrets.len()
        );
    }

    #[test]
    fn dh_from_many_threads() {
        let _shared = TOKEN_TESTS.read().unwrap_or_else(|e| e.into_inner());
        let uri = uri("object=wg-threads");
        let public = genkey(&uri).unwrap();
        let key = Arc::new(TokenKey::open(&uri).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let key = key.clone();
                std::thread::spawn(move || {
                    let (secret, peer_public) = peer();
                    let ours = key.diffie_hellman(&peer_public).unwrap();
                    let theirs = secret.diffie_hellman(&x25519_dalek::PublicKey::from(public));
                    assert_eq!(*ours, *theirs.as_bytes());
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    #[test]
    fn low_order_peer_key_is_refused() {
        let _shared = TOKEN_TESTS.read().unwrap_or_else(|e| e.into_inner());
        let uri = uri("object=wg-low-order");
        genkey(&uri).unwrap();
        let key = TokenKey::open(&uri).unwrap();
        // The all-zero point and the order-8 point of RFC 7748's list: the DH result is zero.
        for bad in [[0u8; 32], {
            let mut p = [0u8; 32];
            p[0] = 1;
            p
        }] {
            assert!(
                key.diffie_hellman(&bad).is_err(),
                "low-order point accepted"
            );
        }
        // And the key still works afterwards.
        let (_, public) = peer();
        assert!(key.diffie_hellman(&public).is_ok());
    }

    #[test]
    fn key_by_id_and_private_key_stays_inside() {
        let _shared = TOKEN_TESTS.read().unwrap_or_else(|e| e.into_inner());
        let uri_by_id = uri("id=%57%47%01;object=wg-by-id");
        let public = genkey(&uri_by_id).unwrap();
        let only_id = uri("id=%57%47%01");
        let key = TokenKey::open(&only_id).unwrap();
        assert_eq!(key.public_key(), public);
        let live = key.live.lock().unwrap();
        let live = live.as_ref().unwrap();
        let attributes = live
            .session
            .get_attributes(
                live.private_key,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Derive,
                ],
            )
            .unwrap();
        assert!(
            attributes.contains(&Attribute::Sensitive(true)),
            "{attributes:?}"
        );
        assert!(
            attributes.contains(&Attribute::Extractable(false)),
            "{attributes:?}"
        );
        assert!(
            attributes.contains(&Attribute::Derive(true)),
            "{attributes:?}"
        );
        let value = live
            .session
            .get_attributes(live.private_key, &[AttributeType::Value]);
        assert!(
            !matches!(value.as_deref(), Ok([Attribute::Value(_)])),
            "the private value came out: {value:?}"
        );
    }

    /// Close every session of the slot behind the key's back, as a token reset would.
    fn close_all_sessions(module: &Path, slot: u64) {
        let path = std::ffi::CString::new(module.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: RTLD_NOLOAD only returns the handle of the library cryptoki already loaded;
        // C_CloseAllSessions has the PKCS#11 signature CK_RV (*)(CK_SLOT_ID), called with a
        // slot id the module reported.
        unsafe {
            let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            assert!(!handle.is_null(), "module not loaded");
            let symbol = libc::dlsym(handle, c"C_CloseAllSessions".as_ptr());
            assert!(!symbol.is_null());
            let close: extern "C" fn(libc::c_ulong) -> libc::c_ulong = std::mem::transmute(symbol);
            assert_eq!(close(slot as libc::c_ulong), 0, "C_CloseAllSessions failed");
            libc::dlclose(handle);
        }
    }

    #[test]
    fn a_lost_session_is_reopened() {
        let uri = uri("object=wg-reopen");
        let public = genkey(&uri).unwrap();
        let key = TokenKey::open(&uri).unwrap();
        let handle = |key: &TokenKey| key.live.lock().unwrap().as_ref().unwrap().session.handle();
        let before = handle(&key);
        {
            // No other test may hold a session while they are all closed.
            let _exclusive = TOKEN_TESTS.write().unwrap_or_else(|e| e.into_inner());
            close_all_sessions(&se050_module(), key.slot.id());
        }
        let (secret, peer_public) = peer();
        let ours = key
            .diffie_hellman(&peer_public)
            .expect("DH after the session was closed");
        let theirs = secret.diffie_hellman(&x25519_dalek::PublicKey::from(public));
        assert_eq!(*ours, *theirs.as_bytes());
        let after = handle(&key);
        assert_ne!(before, after, "the DH did not run on a new session");
    }

    #[test]
    fn errors_name_what_is_missing() {
        let _shared = TOKEN_TESTS.read().unwrap_or_else(|e| e.into_inner());
        let uri_a = uri("object=wg-errors");
        genkey(&uri_a).unwrap();
        let again = genkey(&uri_a).unwrap_err();
        assert!(again.0.contains("already has a private key"), "{again}");
        let missing = TokenKey::open(&uri("object=wg-no-such-key")).unwrap_err();
        assert!(
            missing.0.contains("no X25519 private key matching")
                && missing.0.contains("wg-no-such-key"),
            "{missing}"
        );
        let wrong_token = TokenKey::open(&uri("token=NotThere;object=wg-errors")).unwrap_err();
        assert!(
            wrong_token.0.contains("tokens present: `SE050`"),
            "{wrong_token}"
        );
        let wrong_library =
            TokenKey::open(&uri("library-manufacturer=Nobody;object=wg-errors")).unwrap_err();
        assert!(
            wrong_library.0.contains("library attributes"),
            "{wrong_library}"
        );
    }

    #[test]
    fn ec_point_forms() {
        let key = [7u8; 32];
        assert_eq!(parse_ec_point(&key).unwrap(), key);
        let mut der = vec![0x04, 0x20];
        der.extend_from_slice(&key);
        assert_eq!(parse_ec_point(&der).unwrap(), key);
        assert!(parse_ec_point(&der[..33])
            .unwrap_err()
            .0
            .contains("33 bytes"));
        assert!(parse_ec_point(&[]).is_err());
        let mut wrong_tag = der.clone();
        wrong_tag[0] = 0x03;
        assert!(parse_ec_point(&wrong_tag).is_err());
    }

    #[test]
    fn missing_module_is_named() {
        let uri =
            Pkcs11Uri::parse("pkcs11:object=k?module-path=/nonexistent/libnothing.so").unwrap();
        let e = TokenKey::open(&uri).unwrap_err();
        assert!(e.0.contains("/nonexistent/libnothing.so"), "{e}");
    }

    #[test]
    fn refuses_non_private_type_and_genkey_without_name() {
        let e =
            TokenKey::open(&Pkcs11Uri::parse("pkcs11:object=k;type=public").unwrap()).unwrap_err();
        assert!(e.0.contains("type=private"), "{e}");
        let e = genkey(&Pkcs11Uri::parse("pkcs11:token=x").unwrap()).unwrap_err();
        assert!(e.0.contains("object=LABEL or id=ID"), "{e}");
    }

    /// A module that loads but has no tokens: p11-kit's proxy with OpenSC and no readers.
    #[test]
    fn no_token_lists_what_is_there() {
        let uri = Pkcs11Uri::parse("pkcs11:token=NoSuchToken;object=k?module-path=/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so").unwrap();
        let e = TokenKey::open(&uri).unwrap_err();
        assert!(e.0.contains("no token matches"), "{e}");
        assert!(e.0.contains("NoSuchToken"), "{e}");
    }
}
