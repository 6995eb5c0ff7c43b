//! C_DeriveKey with CKM_ECDH1_DERIVE on a P-256 key (issue 22): what differs from X25519, the
//! base key's curve and the peer's point. The ECDH itself (one on the chip, the x coordinate of
//! the shared point as a session secret) runs on derive.rs's path, as for X25519.
//!
//! The peer's point is checked on the host first (on the curve, not the identity): the chip
//! would refuse a bad point, and nothing it would refuse is sent to it.

use super::chip::EcCurve;
use super::error::{refuse, Result};
use super::handles::split_handle;
use super::Token;
use pkcs11_sys::*;

/// The peer's point for CKM_ECDH1_DERIVE with a base key on `curve`: only P-256 keys agree.
pub(super) fn p256_peer(curve: EcCurve, data: &[u8]) -> Result<Vec<u8>> {
    if curve != EcCurve::NistP256 {
        return Err(refuse(
            CKR_KEY_TYPE_INCONSISTENT,
            "CKM_ECDH1_DERIVE with an Ed25519 key: Ed25519 keys only sign (CKM_EDDSA)",
        ));
    }
    decode_p256_peer(data)
}

/// The peer's public key: the uncompressed point (65 bytes), raw or in a DER OCTET STRING.
/// A compressed point is expanded; the point must lie on P-256.
pub fn decode_p256_peer(data: &[u8]) -> Result<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let raw = match data {
        [0x04, len, rest @ ..] if *len as usize == rest.len() && matches!(rest.len(), 33 | 65) => {
            rest
        }
        other => other,
    };
    let point = p256::PublicKey::from_sec1_bytes(raw).map_err(|_| {
        refuse(
            CKR_MECHANISM_PARAM_INVALID,
            format_args!(
                "the peer's P-256 public key ({} bytes) is not a point on the curve (expected \
                 04 || X || Y, raw or in a DER OCTET STRING)",
                data.len()
            ),
        )
    })?;
    Ok(point.to_encoded_point(false).as_bytes().to_vec())
}

impl Token {
    /// The curve of the P-256 / Ed25519 pair `handle` names; None for anything else.
    pub(super) fn ec_curve_of(&self, handle: CK_OBJECT_HANDLE) -> Result<Option<EcCurve>> {
        if split_handle(handle).is_none() {
            return Ok(None);
        }
        Ok(self
            .loaded_cache()?
            .resolve(handle)
            .and_then(|(pair, _)| pair.ec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    #[test]
    fn peer_points_are_checked_on_the_host() {
        let point = p256::SecretKey::from_slice(&[3; 32])
            .unwrap()
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        assert_eq!(decode_p256_peer(&point).unwrap(), point);
        let der = [vec![0x04, 0x41], point.clone()].concat();
        assert_eq!(decode_p256_peer(&der).unwrap(), point);
        let mut off_curve = point.clone();
        off_curve[64] ^= 1;
        assert_eq!(
            decode_p256_peer(&off_curve).unwrap_err().rv(),
            CKR_MECHANISM_PARAM_INVALID
        );
        assert!(decode_p256_peer(&[0u8; 32]).is_err());
    }
}
