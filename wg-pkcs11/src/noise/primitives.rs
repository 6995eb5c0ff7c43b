//! The Noise primitives of WireGuard: HASH and MAC (BLAKE2s), HMAC-BLAKE2s, the HKDF built on it,
//! and the handshake's AEAD (ChaCha20-Poly1305 with a zero nonce).

use blake2::digest::{consts::U16, FixedOutput, Mac};
use blake2::{Blake2s256, Blake2sMac, Digest};
use hmac::SimpleHmac;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use zeroize::Zeroizing;

/// "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
pub const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// "WireGuard v1 zx2c4 Jason@zx2c4.com"
pub const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
/// A 32-byte secret, zeroed when dropped.
pub type Secret32 = Zeroizing<[u8; 32]>;

/// The AEAD tag did not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AeadError;

/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;

/// HASH(a || b || ...) with BLAKE2s-256.
pub fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn keyed_blake2s(key: &[u8], parts: &[&[u8]]) -> Blake2sMac<U16> {
    let mut m =
        <Blake2sMac<U16> as Mac>::new_from_slice(key).expect("BLAKE2s takes keys up to 32 bytes");
    for p in parts {
        Mac::update(&mut m, p);
    }
    m
}

/// MAC(key, input): keyed BLAKE2s with a 16-byte output (mac1, mac2, cookies).
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    keyed_blake2s(key, parts).finalize_fixed().into()
}

/// Whether `tag` is MAC(key, input), compared in constant time (digest's `verify_slice`), so
/// that the time a check takes tells an attacker nothing about how much of a forged mac1 or
/// mac2 was right.
pub fn verify_mac(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    keyed_blake2s(key, parts).verify_slice(tag).is_ok()
}

/// HMAC-BLAKE2s-256 (the HKDF's PRF).
fn hmac(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut m =
        <SimpleHmac<Blake2s256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        Mac::update(&mut m, p);
    }
    Zeroizing::new(m.finalize_fixed().into())
}

/// KDF1(key, input): one 32-byte output.
pub fn kdf1(key: &[u8; 32], input: &[u8]) -> Zeroizing<[u8; 32]> {
    let t0 = hmac(key, &[input]);
    hmac(&*t0, &[&[1]])
}

/// KDF2(key, input): two 32-byte outputs.
pub fn kdf2(key: &[u8; 32], input: &[u8]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let t0 = hmac(key, &[input]);
    let t1 = hmac(&*t0, &[&[1]]);
    let t2 = hmac(&*t0, &[&*t1, &[2]]);
    (t1, t2)
}

/// KDF3(key, input): three 32-byte outputs (the preshared-key step).
pub fn kdf3(key: &[u8; 32], input: &[u8]) -> (Secret32, Secret32, Secret32) {
    let t0 = hmac(key, &[input]);
    let t1 = hmac(&*t0, &[&[1]]);
    let t2 = hmac(&*t0, &[&*t1, &[2]]);
    let t3 = hmac(&*t0, &[&*t2, &[3]]);
    (t1, t2, t3)
}

fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte ChaCha20 key"))
}

/// AEAD(key, 0, plaintext, ad): `out` receives ciphertext || tag (plaintext.len() + 16 bytes).
pub fn aead_seal(key: &[u8; 32], plaintext: &[u8], ad: &[u8], out: &mut [u8]) {
    let (body, tag_out) = out.split_at_mut(plaintext.len());
    body.copy_from_slice(plaintext);
    let tag = aead_key(key)
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(ad), body)
        .expect("handshake messages are far below the AEAD length limit");
    tag_out[..TAG_LEN].copy_from_slice(tag.as_ref());
}

/// The inverse of `aead_seal`: `out` receives `sealed.len() - 16` bytes of plaintext, or the
/// authentication failed.
pub fn aead_open(
    key: &[u8; 32],
    sealed: &[u8],
    ad: &[u8],
    out: &mut [u8],
) -> Result<(), AeadError> {
    if sealed.len() < TAG_LEN || out.len() != sealed.len() - TAG_LEN {
        return Err(AeadError);
    }
    let mut buf = [0u8; 64];
    let buf = &mut buf[..sealed.len()];
    buf.copy_from_slice(sealed);
    let plain = aead_key(key)
        .open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(ad), buf)
        .map_err(|_| AeadError)?;
    out.copy_from_slice(plain);
    plain.fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_chaining_key_and_hash_match_wireguard() {
        // The values every WireGuard implementation precomputes (wireguard-go noise-protocol.go).
        let ck = hash(&[CONSTRUCTION]);
        assert_eq!(
            ck,
            [
                0x60, 0xe2, 0x6d, 0xae, 0xf3, 0x27, 0xef, 0xc0, 0x2e, 0xc3, 0x35, 0xe2, 0xa0, 0x25,
                0xd2, 0xd0, 0x16, 0xeb, 0x42, 0x06, 0xf8, 0x72, 0x77, 0xf5, 0x2d, 0x38, 0xd1, 0x98,
                0x8b, 0x78, 0xcd, 0x36
            ]
        );
        let h = hash(&[&ck, IDENTIFIER]);
        assert_eq!(
            h,
            [
                0x22, 0x11, 0xb3, 0x61, 0x08, 0x1a, 0xc5, 0x66, 0x69, 0x12, 0x43, 0xdb, 0x45, 0x8a,
                0xd5, 0x32, 0x2d, 0x9c, 0x6c, 0x66, 0x22, 0x93, 0xe8, 0xb7, 0x0e, 0xe1, 0x9c, 0x65,
                0xba, 0x07, 0x9e, 0xf3
            ]
        );
    }

    #[test]
    fn kdf_outputs_chain_like_hkdf() {
        let key = [7u8; 32];
        let (a1, a2, a3) = kdf3(&key, b"input");
        let (b1, b2) = kdf2(&key, b"input");
        let c1 = kdf1(&key, b"input");
        assert_eq!(*a1, *b1);
        assert_eq!(*a2, *b2);
        assert_eq!(*a1, *c1);
        assert_ne!(*a2, *a3);
    }

    #[test]
    fn aead_round_trip_and_tamper() {
        let key = [3u8; 32];
        let mut sealed = [0u8; 48];
        aead_seal(&key, &[9u8; 32], b"ad", &mut sealed);
        let mut plain = [0u8; 32];
        aead_open(&key, &sealed, b"ad", &mut plain).unwrap();
        assert_eq!(plain, [9u8; 32]);
        assert!(aead_open(&key, &sealed, b"other ad", &mut plain).is_err());
        sealed[5] ^= 1;
        assert!(aead_open(&key, &sealed, b"ad", &mut plain).is_err());
    }

    #[test]
    fn mac_is_keyed() {
        assert_ne!(mac(&[1; 32], &[b"x"]), mac(&[2; 32], &[b"x"]));
        assert_eq!(mac(&[1; 32], &[b"ab", b"c"]), mac(&[1; 32], &[b"abc"]));
    }
}
