//! The token side inside the guest: the module (`$E2E_MODULE`) through cryptoki, as a PKCS#11
//! application uses it. Its configuration says `transport = "i2c"`: the production path.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

const OID_X25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x6E];

fn session() -> Result<(Pkcs11, Session), String> {
    let module = std::env::var("E2E_MODULE").map_err(|_| "E2E_MODULE is not set".to_string())?;
    let pkcs11 = Pkcs11::new(&module).map_err(|e| format!("loading {module}: {e}"))?;
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| format!("C_Initialize: {e}"))?;
    let slot = *pkcs11
        .get_slots_with_token()
        .map_err(|e| format!("C_GetSlotList: {e}"))?
        .first()
        .ok_or("no slot with a token")?;
    let session = pkcs11
        .open_rw_session(slot)
        .map_err(|e| format!("C_OpenSession: {e}"))?;
    Ok((pkcs11, session))
}

/// Generates an X25519 pair labelled `label`; prints its public key.
pub fn keygen(label: &str) -> Result<(), String> {
    let (_pkcs11, session) = session()?;
    let public = vec![
        Attribute::Token(true),
        Attribute::EcParams(OID_X25519.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let private = vec![
        Attribute::Token(true),
        Attribute::Derive(true),
        Attribute::Sensitive(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let (public, _) = session
        .generate_key_pair(&Mechanism::EccMontgomeryKeyPairGen, &public, &private)
        .map_err(|e| format!("C_GenerateKeyPair: {e}"))?;
    let attrs = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .map_err(|e| format!("C_GetAttributeValue: {e}"))?;
    let Some(Attribute::EcPoint(point)) = attrs.first() else {
        return Err("the public key has no CKA_EC_POINT".into());
    };
    let raw = match point.len() {
        34 if point[..2] == [0x04, 0x20] => &point[2..],
        32 => &point[..],
        n => return Err(format!("CKA_EC_POINT of {n} bytes")),
    };
    println!("public {}", hex(raw));
    Ok(())
}

/// ECDH between the private key labelled `label` and `peer_hex`; prints the shared secret.
pub fn ecdh(label: &str, peer_hex: &str) -> Result<(), String> {
    let peer = unhex(peer_hex)?;
    let (_pkcs11, session) = session()?;
    let private = find_private(&session, label)?;
    let template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    let mechanism = Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), &peer));
    let secret = session
        .derive_key(&mechanism, private, &template)
        .map_err(|e| format!("C_DeriveKey: {e}"))?;
    let attrs = session
        .get_attributes(secret, &[AttributeType::Value])
        .map_err(|e| format!("C_GetAttributeValue: {e}"))?;
    let Some(Attribute::Value(value)) = attrs.first() else {
        return Err("the derived key has no CKA_VALUE".into());
    };
    println!("secret {}", hex(value));
    Ok(())
}

fn find_private(session: &Session, label: &str) -> Result<ObjectHandle, String> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| format!("C_FindObjects: {e}"))?;
    found
        .first()
        .copied()
        .ok_or_else(|| format!("no private key labelled {label}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("{text:?} is not hex"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| format!("{text:?} is not hex"))
        })
        .collect()
}
