//! A static key held in memory (a base64 `PrivateKey` in the configuration).

use rand_core::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::{KeyError, StaticKey};
use crate::secret_mem::{scrub_stack, Locked, Secret32};

/// An X25519 private key in process memory: in a locked, non-dumpable slot (`secret_mem`),
/// wiped on drop. The stack below each operation on it is scrubbed (x25519-dalek takes the
/// scalar by value).
pub struct SoftKey {
    secret: Locked<StaticSecret>,
    public: [u8; 32],
}

impl SoftKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> SoftKey {
        SoftKey::from_secret(StaticSecret::random_from_rng(OsRng))
    }

    /// The key whose private half is `bytes` (clamped as X25519 requires).
    pub fn from_bytes(bytes: [u8; 32]) -> SoftKey {
        SoftKey::from_secret(StaticSecret::from(bytes))
    }

    /// The key held in `secret` (a config file's `PrivateKey`), copied into the key's own slot.
    pub fn from_locked(secret: &Secret32) -> SoftKey {
        SoftKey::with_secret(Locked::new(|| StaticSecret::from(*secret.expose())))
    }

    fn from_secret(secret: StaticSecret) -> SoftKey {
        SoftKey::with_secret(Locked::new(|| secret))
    }

    fn with_secret(secret: Locked<StaticSecret>) -> SoftKey {
        let public = PublicKey::from(&*secret).to_bytes();
        scrub_stack();
        SoftKey { secret, public }
    }

    /// The private key bytes (for `wg genkey`-like output and interop tests).
    pub fn private_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }
}

impl std::fmt::Debug for SoftKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private half.
        f.debug_struct("SoftKey")
            .field("public", &self.public)
            .finish()
    }
}

impl StaticKey for SoftKey {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn diffie_hellman(&self, peer_public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let shared = self.secret.diffie_hellman(&PublicKey::from(*peer_public));
        scrub_stack();
        if !shared.was_contributory() {
            return Err(KeyError::NonContributory);
        }
        Ok(Zeroizing::new(shared.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree() {
        let a = SoftKey::generate();
        let b = SoftKey::generate();
        let ab = a.diffie_hellman(&b.public_key()).unwrap();
        let ba = b.diffie_hellman(&a.public_key()).unwrap();
        assert_eq!(*ab, *ba);
        assert_ne!(*ab, [0u8; 32]);
    }

    #[test]
    fn low_order_points_are_refused() {
        let a = SoftKey::generate();
        // The identity and a point of order 8 (RFC 7748 / libsodium blocklist).
        let zero = [0u8; 32];
        let mut one = [0u8; 32];
        one[0] = 1;
        let order8: [u8; 32] = [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
            0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
            0x5f, 0x49, 0xb8, 0x00,
        ];
        for p in [zero, one, order8] {
            assert_eq!(a.diffie_hellman(&p), Err(KeyError::NonContributory));
        }
    }

    #[test]
    fn from_bytes_round_trips() {
        let a = SoftKey::generate();
        let b = SoftKey::from_bytes(*a.private_bytes());
        assert_eq!(a.public_key(), b.public_key());
    }
}
