//! Finding what a URI names: the module (loaded once per process), the tokens that match, a
//! session (logged in when a PIN is given), and the key pair's objects in it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::slot::Slot;

use super::super::ck_error::describe;
use super::super::login::{log_in, LoginError, LoginTarget};
use super::super::pin::Pin;
use super::super::refusals::RefusalMemory;
use super::{ck, TokenError};
use crate::uri::Pkcs11Uri;

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
pub(super) fn warn_not_in_hardware(what: &str, token: &MatchedToken) {
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

pub(super) fn open_logged_in(
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

pub(super) fn ec_point_of(
    session: &Session,
    object: ObjectHandle,
) -> Option<Result<[u8; 32], TokenError>> {
    match read_attribute(session, object, AttributeType::EcPoint)? {
        Attribute::EcPoint(point) => Some(parse_ec_point(&point)),
        _ => None,
    }
}

/// The private key the URI names in one opened token, and its public key.
pub(super) fn find_key(
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
