//! NIST P-256 and Ed25519 as the chip encodes them, on vetted crates (RustCrypto's `p256`,
//! `ed25519-dalek`).
//!
//! Encodings, each from NXP's Plug & Trust middleware (NXP/plug-and-trust @ 9721d640,
//! `sss/src/se05x/fsl_sss_se05x_apis.c`):
//! - P-256 public key: the uncompressed point `04 || X || Y` (65 bytes) in WriteECKey's TAG_4 and
//!   in ReadObject's answer (the middleware only adds or strips the DER SubjectPublicKeyInfo
//!   header around it: `sss_se05x_key_store_get_key`); private key: the 32-byte big-endian
//!   scalar in TAG_3. ECDSASign answers a DER `ECDSA-Sig-Value` (passed through unchanged by
//!   `sss_se05x_asymmetric_sign_digest`). ECDH takes the peer's `04 || X || Y` and answers the
//!   shared X coordinate (32 bytes).
//! - Ed25519 (`kSE05x_ECCurve_ECC_ED_25519`): the public key is reversed byte for byte against
//!   RFC 8032 (`sss_se05x_key_store_set_ecc_keypair` / `_set_ecc_public_key` reverse it before
//!   writing, `sss_se05x_key_store_get_key` reverses what it reads, as for X25519); the private
//!   key is NOT reversed ("SE05x expects private key to be in litte endian format": the RFC 8032
//!   32-byte secret is written as is); EdDSASign's 64-byte answer is R and S each reversed
//!   (`sss_se05x_asymmetric_sign`, kSSS_CipherType_EC_TWISTED_ED: "Revert Endianness" of each
//!   half).

use ed25519_dalek::Signer;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// A fresh P-256 pair: (private scalar, big-endian; public `04 || X || Y`).
pub fn p256_generate() -> (Zeroizing<[u8; 32]>, [u8; 65]) {
    let secret = p256::SecretKey::random(&mut OsRng);
    p256_pair_of(&secret)
}

/// The pair of a private scalar given by the host; `None` if it is not a valid scalar.
pub fn p256_from_private(private: &[u8]) -> Option<(Zeroizing<[u8; 32]>, [u8; 65])> {
    let secret = p256::SecretKey::from_slice(private).ok()?;
    (private.len() == 32).then(|| p256_pair_of(&secret))
}

fn p256_pair_of(secret: &p256::SecretKey) -> (Zeroizing<[u8; 32]>, [u8; 65]) {
    let private = Zeroizing::new(<[u8; 32]>::from(secret.to_bytes()));
    let point = secret.public_key().to_encoded_point(false);
    let public: [u8; 65] = point
        .as_bytes()
        .try_into()
        .expect("uncompressed P-256 point");
    (private, public)
}

/// ECDSA over a hash the host computed, answered as DER. `None` if the key is unusable.
pub fn p256_sign_prehash(private: &[u8; 32], hash: &[u8]) -> Option<Vec<u8>> {
    let key = p256::ecdsa::SigningKey::from_slice(private).ok()?;
    let signature: p256::ecdsa::Signature = key.sign_prehash(hash).ok()?;
    Some(signature.to_der().as_bytes().to_vec())
}

/// The ECDH shared secret (X coordinate) with a peer's uncompressed point; `None` if the point
/// is not on the curve.
pub fn p256_ecdh(private: &[u8; 32], peer: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    if peer.len() != 65 || peer[0] != 0x04 {
        return None;
    }
    let secret = p256::SecretKey::from_slice(private).ok()?;
    let peer = p256::PublicKey::from_sec1_bytes(peer).ok()?;
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(shared.raw_secret_bytes());
    Some(out)
}

/// A fresh Ed25519 pair: (private key as RFC 8032 writes it; public key in the chip's order).
pub fn ed25519_generate() -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let mut private = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(private.as_mut());
    let public = ed25519_public_chip_order(&private);
    (private, public)
}

/// The public key of an RFC 8032 private key, reversed as the chip keeps and answers it.
pub fn ed25519_public_chip_order(private: &[u8; 32]) -> [u8; 32] {
    let key = ed25519_dalek::SigningKey::from_bytes(private);
    let mut public = key.verifying_key().to_bytes();
    public.reverse();
    public
}

/// PureEdDSA of `message`, answered as the chip does: R and S each reversed.
pub fn ed25519_sign_chip_order(private: &[u8; 32], message: &[u8]) -> [u8; 64] {
    let key = ed25519_dalek::SigningKey::from_bytes(private);
    let mut signature = key.sign(message).to_bytes();
    signature[..32].reverse();
    signature[32..].reverse();
    signature
}

#[cfg(test)]
#[path = "ec_tests.rs"]
mod tests;

/// P-256's domain parameter `param` (`kSE05x_ECCurveParam_*`: 01 a, 02 b, 04 G, 08 n, 10 the
/// prime) as SetECCurveParam carries it (big-endian; G as `04 || x || y`), computed from
/// RustCrypto's curve so that no hand-typed constant can be wrong; `None` for another value.
pub fn p256_parameter(param: u8) -> Option<Vec<u8>> {
    use p256::elliptic_curve::bigint::ArrayEncoding;
    use p256::elliptic_curve::Curve;
    use p256::FieldElement;
    let bytes = |f: FieldElement| f.to_bytes().to_vec();
    let generator = p256::AffinePoint::GENERATOR.to_encoded_point(false);
    match param {
        0x01 => Some(bytes(-FieldElement::from_u64(3))),
        0x02 => {
            // y^2 = x^3 + a x + b at the generator.
            let x = FieldElement::from_bytes(generator.x()?).into_option()?;
            let y = FieldElement::from_bytes(generator.y()?).into_option()?;
            Some(bytes(
                y.square() - x.square() * x + FieldElement::from_u64(3) * x,
            ))
        }
        0x04 => Some(generator.as_bytes().to_vec()),
        0x08 => Some(p256::NistP256::ORDER.to_be_byte_array().to_vec()),
        0x10 => {
            // p - 1 ends in ...FE: adding one carries nowhere.
            let mut prime = bytes(-FieldElement::ONE);
            prime[31] += 1;
            Some(prime)
        }
        _ => None,
    }
}
