//! Module overhead: how many C_DeriveKey (CKM_ECDH1_DERIVE) per second the PKCS#11 module does
//! on a zero-latency virtual SE050, against a bare x25519-dalek Diffie-Hellman in the same
//! process. Each derive is what wg-pkcs11 does per handshake: derive a session secret, read its
//! CKA_VALUE, destroy it.

use crate::args::Options;
use crate::token::{count_for, find_or_generate, open_session, SLICES};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};

/// CKA_EC_PARAMS as a PrintableString curve name (PKCS#11 3.0 for Montgomery keys).
const CURVE25519_PRINTABLE: &[u8] = b"\x13\x0acurve25519";

pub fn run(options: &Options) -> Result<(), String> {
    let module: String = options.required("module")?;
    let label: String = options.optional("label", "bench-derive".to_string())?;
    let pin: String = options.optional("pin", String::new())?;
    let seconds = Duration::from_secs_f64(options.optional("seconds", 3.0)?);

    let session = open_session(&module, &pin)?;
    let private_key = find_or_generate(
        &session,
        &label,
        Mechanism::EccMontgomeryKeyPairGen,
        &[
            Attribute::KeyType(KeyType::EC_MONTGOMERY),
            Attribute::EcParams(CURVE25519_PRINTABLE.to_vec()),
        ],
        &[
            Attribute::KeyType(KeyType::EC_MONTGOMERY),
            Attribute::Derive(true),
        ],
    )?;

    let peer_public = PublicKey::from(&StaticSecret::random_from_rng(rand_core::OsRng));
    let secret = StaticSecret::random_from_rng(rand_core::OsRng);
    let mut shared = Vec::new();
    let mut sink = 0u8;
    let slice = seconds / SLICES;
    let (mut derives, mut bare) = (0u64, 0u64);
    for _ in 0..SLICES {
        derives += count_for(slice, || {
            shared = derive(&session, private_key, peer_public.as_bytes())?;
            Ok(())
        })?;
        bare += count_for(slice, || {
            sink ^= secret.diffie_hellman(&peer_public).as_bytes()[0];
            Ok(())
        })?;
    }
    std::hint::black_box(sink);
    if shared.len() != 32 || shared.iter().all(|&b| b == 0) {
        return Err(format!(
            "C_DeriveKey gave a bad secret ({} bytes)",
            shared.len()
        ));
    }

    let derive_per_s = derives as f64 / seconds.as_secs_f64();
    let bare_per_s = bare as f64 / seconds.as_secs_f64();
    println!("derives={derives}");
    println!("derive_per_s={derive_per_s:.1}");
    println!("bare_dh_per_s={bare_per_s:.1}");
    println!("derive_us={:.2}", 1e6 / derive_per_s);
    println!("bare_dh_us={:.2}", 1e6 / bare_per_s);
    println!("overhead_ratio={:.3}", bare_per_s / derive_per_s);
    Ok(())
}

fn derive(session: &Session, key: ObjectHandle, peer: &[u8; 32]) -> Result<Vec<u8>, String> {
    let mechanism = Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), peer));
    let secret = session
        .derive_key(
            &mechanism,
            key,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::ValueLen(32.into()),
            ],
        )
        .map_err(|e| format!("C_DeriveKey: {e}"))?;
    let value = session
        .get_attributes(secret, &[AttributeType::Value])
        .map_err(|e| format!("C_GetAttributeValue: {e}"));
    session
        .destroy_object(secret)
        .map_err(|e| format!("C_DestroyObject: {e}"))?;
    match value?.into_iter().next() {
        Some(Attribute::Value(bytes)) => Ok(bytes),
        _ => Err("C_GetAttributeValue returned no CKA_VALUE".into()),
    }
}
