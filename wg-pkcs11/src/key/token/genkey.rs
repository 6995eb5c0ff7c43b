//! `genkey` and `pubkey`: a new X25519 key pair made in the token, and the public key of one.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};

use super::super::pin::read_pin;
use super::super::StaticKey;
use super::lookup::{
    ec_point_of, key_template, matching_tokens, module_context, open_session, warn_not_in_hardware,
};
use super::{ck, object_name, pin_source_error, TokenError, TokenKey};
use crate::uri::Pkcs11Uri;

/// RFC 8410 id-X25519 (1.3.101.110) as a DER OBJECT IDENTIFIER: the curve of a new key pair.
const X25519_OID_DER: [u8; 5] = [0x06, 0x03, 0x2B, 0x65, 0x6E];

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
