//! Signatures per second through the PKCS#11 module (issue 22): C_Sign with CKM_ECDSA_SHA256
//! on a P-256 key and CKM_EDDSA on an Ed25519 key on the virtual SE050, against a bare
//! software signature in the same process (RustCrypto p256, ed25519-dalek), taking turns in
//! short slices as derive-rate does. Each module signature is also verified on the host by the
//! module itself (token/sign.rs), which is part of what is measured.

use crate::args::Options;
use crate::token::{count_for, find_or_generate, open_session, SLICES};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::Session;
use ed25519_dalek::Signer;
use std::time::Duration;
const OID_P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];
const MESSAGE: &[u8] = b"a 64-byte log line that a device signs with its SE050 key ......";

pub fn run(options: &Options) -> Result<(), String> {
    let module: String = options.required("module")?;
    let pin: String = options.optional("pin", String::new())?;
    let seconds = Duration::from_secs_f64(options.optional("seconds", 3.0)?);
    let session = open_session(&module, &pin)?;
    let ecdsa_key =
        find_or_generate_signer(&session, "bench-p256", Mechanism::EccKeyPairGen, OID_P256)?;
    let eddsa_key = find_or_generate_signer(
        &session,
        "bench-ed25519",
        Mechanism::EccEdwardsKeyPairGen,
        OID_ED25519,
    )?;
    let eddsa = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
    let soft_p256 = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let soft_ed = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let slice = seconds / SLICES;
    let (mut ecdsa, mut ed, mut bare_ecdsa, mut bare_ed) = (0u64, 0u64, 0u64, 0u64);
    let mut sink = 0u8;
    for _ in 0..SLICES {
        ecdsa += count_for(slice, || sign(&session, &Mechanism::EcdsaSha256, ecdsa_key))?;
        bare_ecdsa += count_for(slice, || {
            let signature: p256::ecdsa::Signature =
                p256::ecdsa::signature::Signer::sign(&soft_p256, MESSAGE);
            sink ^= signature.to_bytes()[0];
            Ok(())
        })?;
        ed += count_for(slice, || sign(&session, &eddsa, eddsa_key))?;
        bare_ed += count_for(slice, || {
            sink ^= soft_ed.sign(MESSAGE).to_bytes()[0];
            Ok(())
        })?;
    }
    std::hint::black_box(sink);
    let per_s = |n: u64| n as f64 / seconds.as_secs_f64();
    println!("ecdsa_signs={ecdsa}");
    println!("ecdsa_sign_per_s={:.1}", per_s(ecdsa));
    println!("bare_ecdsa_per_s={:.1}", per_s(bare_ecdsa));
    println!(
        "ecdsa_overhead_ratio={:.3}",
        per_s(bare_ecdsa) / per_s(ecdsa).max(1e-9)
    );
    println!("eddsa_signs={ed}");
    println!("eddsa_sign_per_s={:.1}", per_s(ed));
    println!("bare_eddsa_per_s={:.1}", per_s(bare_ed));
    println!(
        "eddsa_overhead_ratio={:.3}",
        per_s(bare_ed) / per_s(ed).max(1e-9)
    );
    Ok(())
}

fn sign(session: &Session, mechanism: &Mechanism, key: ObjectHandle) -> Result<(), String> {
    let signature = session
        .sign(mechanism, key, MESSAGE)
        .map_err(|e| format!("C_Sign: {e}"))?;
    if signature.len() != 64 {
        return Err(format!("a signature of {} bytes", signature.len()));
    }
    Ok(())
}

/// A signing pair on the curve `params` names.
fn find_or_generate_signer(
    session: &Session,
    label: &str,
    mechanism: Mechanism,
    params: &[u8],
) -> Result<ObjectHandle, String> {
    find_or_generate(
        session,
        label,
        mechanism,
        &[Attribute::EcParams(params.to_vec())],
        &[Attribute::Sign(true)],
    )
}
