//! C_DeriveKey with CKM_ECDH1_DERIVE on a P-256 key (issue 22): one ECDH on the chip, the
//! x coordinate of the shared point as a session secret, as for X25519 (derive.rs).
//!
//! The peer's point is checked on the host first (on the curve, not the identity): the chip
//! would refuse a bad point, and nothing it would refuse is sent to it.

use super::chip::EcCurve;
use super::derive::{DeriveParams, SecretTemplate};
use super::error::{answer, refuse, Result};
use super::objects::{split_handle, Half};
use super::secret::SecretKey;
use super::Token;
use pkcs11_sys::*;
use zeroize::Zeroizing;

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

    pub(super) fn derive_ec(
        &self,
        session: CK_SESSION_HANDLE,
        curve: EcCurve,
        params: &DeriveParams,
        base: CK_OBJECT_HANDLE,
        template: &super::attributes::Template,
    ) -> Result<CK_OBJECT_HANDLE> {
        if curve != EcCurve::NistP256 {
            return Err(refuse(
                CKR_KEY_TYPE_INCONSISTENT,
                "CKM_ECDH1_DERIVE with an Ed25519 key: Ed25519 keys only sign (CKM_EDDSA)",
            ));
        }
        let peer = decode_p256_peer(&params.public_data)?;
        let secret = SecretTemplate::parse(template)?;
        self.require_user_for_keys()?;
        let logged_in = self.sessions.lock().user.is_some();
        let (key_id, bound) =
            match self.loaded_cache()?.resolve(base) {
                Some((pair, Half::Private)) => (pair.key_id, pair.point.clone()),
                Some((_, Half::Public)) => return Err(refuse(
                    CKR_KEY_TYPE_INCONSISTENT,
                    "the base key of CKM_ECDH1_DERIVE must be the private key, not the public one",
                )),
                None => {
                    return Err(answer(
                        CKR_KEY_HANDLE_INVALID,
                        format_args!("no key {base:#x}"),
                    ))
                }
            };
        let shared = {
            let mut link = self.link.lock();
            let chip = link
                .chip(&self.config)
                .map_err(|e| e.to_ckr("opening the chip"))?;
            // As for X25519: the handle stays bound to the key it was made for.
            match chip.read_ec_public(key_id, curve) {
                Ok(public) if public == bound => chip.ecdh_p256(key_id, &peer),
                Ok(_) => {
                    return Err(refuse(
                        CKR_KEY_HANDLE_INVALID,
                        format_args!("key {key_id:#010x} was replaced by another key"),
                    ))
                }
                Err(e) => Err(e),
            }
        }
        .map_err(|e| e.to_ckr(&format!("P-256 ECDH with key {key_id:#010x}")))?;
        let value: Zeroizing<Vec<u8>> = Zeroizing::new(shared[..secret.len].to_vec());
        let sessions = self.sessions.lock();
        if logged_in && sessions.user.is_none() {
            return Err(answer(
                CKR_USER_NOT_LOGGED_IN,
                "logged out while the ECDH ran: its result is not kept",
            ));
        }
        let handle = self.secrets.lock().insert(SecretKey {
            session,
            value,
            private: sessions.user.is_some(),
            label: secret.label,
            id: secret.id,
            sensitive: secret.sensitive,
            extractable: secret.extractable,
            usage: secret.usage,
        });
        Ok(handle)
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
