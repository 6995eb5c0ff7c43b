//! The byte order in which the chip keeps and exchanges X25519 values.
//!
//! RFC 7748 (section 5) encodes scalars and u-coordinates little-endian. The SE050 takes and
//! gives them the other way round, big-endian, for the IoT applet's MONT_DH_25519 curve: its
//! public keys (ReadObject, WriteECKey with TAG_4), private keys (WriteECKey with TAG_3), the
//! peer key of ECDHGenerateSharedSecret and the shared secret it answers. Sources, as gathered
//! in the project's notes (/work/shared/notes/se050.md, "Byte order of X25519"): NXP's Plug &
//! Trust middleware, Nitrokey's trussed-se050-backend and the kernel patch of kmwebnet/
//! wireguard-se all reverse the peer key before ECDHGenerateSharedSecret, the secret after it and
//! the public key read by ReadObject. In NXP's host code the reversal sits in the SSS/mbedTLS
//! key-store layer (a "Reverse Endianness" step for MONT_DH_25519 keys under
//! `MBEDTLS_DO_LITTLE_ENDIAN`), not in the APDU layer; the exact function was not re-checked for
//! this file. The chip here stores them in its own (big-endian) order too, so the state file
//! holds what a real chip's NVM would.
//!
//! This module is the only place of the chip that converts; the tests pin it to RFC 7748's
//! published vectors.

use crate::wire::apdu::StatusWord;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// A 32-byte value in the chip's order turned into RFC 7748 order (the same reversal both ways).
pub fn rfc_order(chip: &[u8]) -> Result<Zeroizing<[u8; 32]>, StatusWord> {
    let mut out: [u8; 32] = chip.try_into().map_err(|_| StatusWord::WRONG_DATA)?;
    out.reverse();
    Ok(Zeroizing::new(out))
}

/// An RFC 7748 value in the chip's order.
pub fn to_chip_order(rfc: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new(*rfc);
    out.reverse();
    out
}

/// The private and public key of `secret`, both in the chip's order.
pub fn chip_order_pair(secret: &StaticSecret) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let private = to_chip_order(&secret.to_bytes());
    let public = *to_chip_order(PublicKey::from(secret).as_bytes());
    (private, public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(text: &str) -> [u8; 32] {
        let bytes: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    }

    /// RFC 7748 section 6.1: Alice's and Bob's keys and their shared secret (RFC order).
    const ALICE_PRIVATE: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const ALICE_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const BOB_PUBLIC: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
    const SHARED: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

    #[test]
    fn rfc7748_vectors_in_the_chips_order() {
        let alice = StaticSecret::from(hex32(ALICE_PRIVATE));
        let (private, public) = chip_order_pair(&alice);
        // The chip's order is the RFC's reversed: first chip byte = last RFC byte.
        assert_eq!(private[0], 0x2a);
        assert_eq!(private[31], 0x77);
        let mut expected_public = hex32(ALICE_PUBLIC);
        expected_public.reverse();
        assert_eq!(public, expected_public);
        assert_eq!(public[0], 0x6a, "big-endian: the RFC's last byte first");
        // Bob's key as a host sends it to the chip (reversed), the secret as the chip answers.
        let mut bob_chip = hex32(BOB_PUBLIC);
        bob_chip.reverse();
        let peer = PublicKey::from(*rfc_order(&bob_chip).unwrap());
        let secret = StaticSecret::from(*rfc_order(&private[..]).unwrap());
        let answered = to_chip_order(secret.diffie_hellman(&peer).as_bytes());
        let mut expected = hex32(SHARED);
        expected.reverse();
        assert_eq!(*answered, expected);
    }

    #[test]
    fn only_32_bytes_are_a_key() {
        assert_eq!(rfc_order(&[0; 31]).err(), Some(StatusWord::WRONG_DATA));
        assert_eq!(rfc_order(&[0; 33]).err(), Some(StatusWord::WRONG_DATA));
    }
}
