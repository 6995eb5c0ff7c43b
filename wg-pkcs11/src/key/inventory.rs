//! What X25519 keys a token holds: for `wg-pkcs11 list`.
//!
//! Each key is reported with a `pkcs11:` URI that names it alone (token label, the key's label
//! and id, `type=private`, the same module the query named), and the public key read through
//! that very URI with [`TokenKey::open`]: a listed URI is one that opened the key it is listed
//! with, so it can be pasted into a config as it is. A key that no URI can single out (two keys
//! with the same label and id) is listed with the reason instead of a URI.

use cryptoki::object::{Attribute, AttributeType, ObjectClass};

use super::pin::read_pin;
use super::token::{
    ck, key_template, matching_tokens, module_context, one_token_for_a_pin, open_session,
    pin_source_error, read_attribute, TokenError,
};
use super::{StaticKey, TokenKey};
use crate::uri::{ObjectType, Pkcs11Uri};

/// One X25519 private key found in a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedKey {
    /// The token's label (CK_TOKEN_INFO.label) and serial number.
    pub token: String,
    pub serial: String,
    /// CKA_LABEL (lossy UTF-8), CKA_ID.
    pub label: Option<String>,
    pub id: Vec<u8>,
    /// The URI that opened this key and its public key, or why no URI names it alone.
    pub opened: Result<(Pkcs11Uri, [u8; 32]), String>,
}

/// The URI naming one key: the token, the key's label and id, and the query's module and
/// pin-source (never its pin-value: a listing is pasted into files and terminals).
fn key_uri(
    query: &Pkcs11Uri,
    token: &str,
    serial: Option<&str>,
    label: Option<&str>,
    id: &[u8],
) -> Pkcs11Uri {
    Pkcs11Uri {
        token: Some(token.to_string()),
        serial: serial.map(str::to_string),
        object: label.map(str::to_string),
        id: (!id.is_empty()).then(|| id.to_vec()),
        object_type: Some(ObjectType::Private),
        module_name: query.module_name.clone(),
        module_path: query.module_path.clone(),
        pin_source: query.pin_source.clone(),
        ..Default::default()
    }
}

/// Every X25519 private key the URI's token(s) hold that matches its object/id, if given.
pub fn list_keys(query: &Pkcs11Uri) -> Result<Vec<ListedKey>, TokenError> {
    let module = query.module().map_err(TokenError)?;
    let context = module_context(&module)?;
    let pin = read_pin(query).map_err(pin_source_error)?;
    let tokens = matching_tokens(&context, query, &module)?;
    one_token_for_a_pin(&tokens, query, pin.as_ref())?;
    // With several tokens of one label the serial tells them apart.
    let several = tokens.len() > 1;
    let mut listed = Vec::new();
    for token in tokens {
        let session = open_session(&context, &token, pin.as_ref())?;
        let found = session
            .find_objects(&key_template(query, ObjectClass::PRIVATE_KEY))
            .map_err(|e| ck(&format!("C_FindObjects in token `{}`", token.label), e))?;
        for handle in found {
            let label = match read_attribute(&session, handle, AttributeType::Label) {
                Some(Attribute::Label(bytes)) if !bytes.is_empty() => {
                    Some(String::from_utf8_lossy(&bytes).into_owned())
                }
                _ => None,
            };
            let id = match read_attribute(&session, handle, AttributeType::Id) {
                Some(Attribute::Id(id)) => id,
                _ => Vec::new(),
            };
            // A label that is not UTF-8 cannot be written as object=; the id still names it.
            let label_for_uri = label.as_deref().filter(|l| !l.contains('\u{FFFD}'));
            let opened = if label_for_uri.is_none() && id.is_empty() {
                Err("the key has neither a label nor an id: no URI can name it".to_string())
            } else {
                let uri = key_uri(
                    query,
                    &token.label,
                    several.then_some(token.serial.as_str()),
                    label_for_uri,
                    &id,
                );
                let mut with_pin = uri.clone();
                with_pin.pin_value = query.pin_value.clone();
                TokenKey::open(&with_pin)
                    .map(|key| (uri, key.public_key()))
                    .map_err(|e| e.0)
            };
            listed.push(ListedKey {
                token: token.label.clone(),
                serial: token.serial.clone(),
                label,
                id,
                opened,
            });
        }
    }
    Ok(listed)
}

/// Delete the X25519 key pair the URI names (its private key, exactly one, and the public key
/// object with the same CKA_ID, or the same label if it has no id): the last step of a
/// rotation. Returns how many objects were destroyed.
pub fn delete_key(uri: &Pkcs11Uri) -> Result<usize, TokenError> {
    if uri.object.is_none() && uri.id.is_none() {
        return Err(TokenError(
            "refusing to delete without object= or id= in the URI".into(),
        ));
    }
    let module = uri.module().map_err(TokenError)?;
    let context = module_context(&module)?;
    let pin = read_pin(uri).map_err(pin_source_error)?;
    let tokens = matching_tokens(&context, uri, &module)?;
    one_token_for_a_pin(&tokens, uri, pin.as_ref())?;
    let mut holders = Vec::new();
    for token in tokens {
        let session = open_session(&context, &token, pin.as_ref())?;
        let private = session
            .find_objects(&key_template(uri, ObjectClass::PRIVATE_KEY))
            .map_err(|e| ck(&format!("C_FindObjects in token `{}`", token.label), e))?;
        if !private.is_empty() {
            holders.push((token, session, private));
        }
    }
    let (token, session, private) = match holders.len() {
        0 => {
            return Err(TokenError(format!(
                "no X25519 private key matches {}",
                uri.redacted()
            )))
        }
        1 => holders.pop().expect("one"),
        n => {
            return Err(TokenError(format!(
                "{n} tokens hold a key matching {}: add token= or serial=",
                uri.redacted()
            )))
        }
    };
    let [private] = private.as_slice() else {
        return Err(TokenError(format!(
            "{} private keys in token `{}` match {}: refusing to delete more than one",
            private.len(),
            token.label,
            uri.redacted()
        )));
    };
    let mut public_template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
    match read_attribute(&session, *private, AttributeType::Id) {
        Some(Attribute::Id(id)) if !id.is_empty() => public_template.push(Attribute::Id(id)),
        _ => match read_attribute(&session, *private, AttributeType::Label) {
            Some(Attribute::Label(label)) if !label.is_empty() => {
                public_template.push(Attribute::Label(label))
            }
            _ => public_template.clear(),
        },
    }
    let publics = if public_template.is_empty() {
        Vec::new()
    } else {
        session
            .find_objects(&public_template)
            .map_err(|e| ck("C_FindObjects (public key)", e))?
    };
    let mut destroyed = 0;
    for handle in std::iter::once(*private).chain(publics) {
        match session.destroy_object(handle) {
            Ok(()) => destroyed += 1,
            // The module may delete the pair as one object (the SE050 keeps one key object).
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::ObjectHandleInvalid,
                _,
            )) if destroyed > 0 => {}
            Err(e) => {
                return Err(ck(
                    &format!("C_DestroyObject in token `{}`", token.label),
                    e,
                ))
            }
        }
    }
    Ok(destroyed)
}
