//! The Curve25519 points of small order, refused before any Diffie-Hellman with the static key.
//!
//! An X25519 with one of these gives an all-zero secret whatever the scalar, which the kernel
//! refuses after the fact ("Reject all-zero DH results"). On a token that refusal comes too late:
//! the chip has already spent (and worn its storage for) an ECDH. Comparing the 32 bytes with this
//! short list costs nanoseconds, so a hostile initiation carrying one costs no token operation.
//!
//! X25519 ignores the top bit of the u-coordinate (RFC 7748, section 5) and reduces it modulo
//! p = 2^255 - 19, so the list holds every encoding that lands on a small-order point: 0, 1, the
//! two points of order 8, p - 1, p and p + 1 (the same seven values libsodium and the curve's
//! literature list); the comparison masks the top bit. The unit tests check each entry really is
//! small-order with x25519-dalek, so a typo here goes red.

/// The u-coordinates (little-endian, top bit clear) of the small-order points and their
/// non-canonical aliases below 2^255.
const LOW_ORDER: [[u8; 32]; 7] = [
    // 0 (order 4)
    [0; 32],
    // 1 (order 1)
    one(),
    // 325606250916557431795983626356110631294008115727848805560023387167927233504 (order 8)
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    // 39382357235489614581723060781553021112529911719440698176882885853963445705823 (order 8)
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    // p - 1 (order 2)
    p_plus(-1),
    // p (= 0)
    p_plus(0),
    // p + 1 (= 1)
    p_plus(1),
];

const fn one() -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
}

/// p + delta for a small delta, little-endian: p = 2^255 - 19 is 0xed, 0xff * 30, 0x7f.
const fn p_plus(delta: i8) -> [u8; 32] {
    let mut b = [0xffu8; 32];
    b[0] = (0xed_i16 + delta as i16) as u8;
    b[31] = 0x7f;
    b
}

/// Whether `point` (an X25519 public value, RFC 7748 byte order) has small order: a
/// Diffie-Hellman with it would give all zeros.
pub fn is_low_order(point: &[u8; 32]) -> bool {
    let mut masked = *point;
    masked[31] &= 0x7f;
    LOW_ORDER.contains(&masked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;
    use x25519_dalek::{PublicKey, StaticSecret};

    fn dh_is_zero(point: &[u8; 32]) -> bool {
        let secret = StaticSecret::random_from_rng(OsRng);
        !secret
            .diffie_hellman(&PublicKey::from(*point))
            .was_contributory()
    }

    #[test]
    fn every_listed_point_and_its_top_bit_alias_gives_an_all_zero_dh() {
        for (i, p) in LOW_ORDER.iter().enumerate() {
            assert!(dh_is_zero(p), "entry {i} is not a small-order point");
            assert!(is_low_order(p), "entry {i}");
            let mut high = *p;
            high[31] |= 0x80;
            assert!(
                dh_is_zero(&high) && is_low_order(&high),
                "entry {i}, top bit set"
            );
        }
    }

    #[test]
    fn ordinary_public_keys_are_not_low_order() {
        for _ in 0..200 {
            let public = PublicKey::from(&StaticSecret::random_from_rng(OsRng)).to_bytes();
            assert!(!is_low_order(&public));
            assert!(!dh_is_zero(&public));
        }
        // Neighbours of listed values are ordinary points.
        let mut two = [0u8; 32];
        two[0] = 2;
        assert!(!is_low_order(&two));
        assert!(!is_low_order(&p_plus(2)));
    }
}
