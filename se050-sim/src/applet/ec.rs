//! NIST P-256 and Ed25519 keys on the virtual applet: WriteECKey (generated inside or written
//! from outside), ECDSASign on a host-computed hash, EdDSASign (PureEdDSA over the whole
//! message), and ECDH on P-256. Layouts: FORMATS.md; encodings and their sources: `crate::ec`.
//!
//! Fidelity notes (choices where the public sources say no more):
//! - a key written with its private key is ORIGIN_EXTERNAL, a generated one ORIGIN_INTERNAL;
//! - WriteECKey with a public key only (P1 KEY_PUBLIC) or a private key only (P1 KEY_PRIVATE)
//!   is not modelled for these curves: 6A86;
//! - the signature checks, in order: the object exists (else 6A80), is a key of a curve that
//!   signs (else 6985), the policy allows SIGN (else 6986), the algorithm fits the curve (ECDSA
//!   algorithms for P-256, ED25519PURE for Ed25519; else 6A80), the hash has the algorithm's
//!   length (else 6A80). An EdDSA message is limited by the APDU (889 bytes of data in all: at
//!   most 876 bytes of message); a longer command answers 6700;
//! - ECDH on P-256 takes only an uncompressed point on the curve (else 6A80).

use super::*;

impl VirtualApplet {
    /// WriteECKey for NIST P-256 and Ed25519 (`p1` carries the key part, TAG_2 the curve).
    pub(super) fn write_ec_key_signing(&mut self, p1: u8, id: u32, tlvs: &Tlvs) -> Answer {
        let [curve] = tlvs
            .require_array::<1>(TAG_2)
            .map_err(|_| StatusWord::WRONG_DATA)?;
        let policy = policy_of(tlvs)?;
        if p1 & !P1_EC != P1_KEY_PAIR {
            return Err(StatusWord::WRONG_P1P2);
        }
        // A Weierstrass curve exists only once CreateECCurve and its parameters made it.
        if !self.curve_is_set(curve) {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let given_public = tlvs.get(TAG_4);
        let (data, counter, busy, origin) = match tlvs.get(TAG_3) {
            None => {
                if given_public.is_some() {
                    return Err(StatusWord::WRONG_DATA);
                }
                let data = if curve == CURVE_NIST_P256 {
                    let (private, public) = crate::ec::p256_generate();
                    ObjectData::P256Pair { private, public }
                } else {
                    let (private, public) = crate::ec::ed25519_generate();
                    ObjectData::Ed25519Pair { private, public }
                };
                (data, Counter::Keygen, self.latency, ORIGIN_INTERNAL)
            }
            Some(private) => {
                let data = if curve == CURVE_NIST_P256 {
                    let (private, public) =
                        crate::ec::p256_from_private(private).ok_or(StatusWord::WRONG_DATA)?;
                    if given_public.is_some_and(|given| given != public) {
                        return Err(StatusWord::WRONG_DATA);
                    }
                    ObjectData::P256Pair { private, public }
                } else {
                    let private: [u8; 32] =
                        private.try_into().map_err(|_| StatusWord::WRONG_DATA)?;
                    let private = Zeroizing::new(private);
                    let public = crate::ec::ed25519_public_chip_order(&private);
                    if given_public.is_some_and(|given| given != public) {
                        return Err(StatusWord::WRONG_DATA);
                    }
                    ObjectData::Ed25519Pair { private, public }
                };
                (data, Counter::Writes, Duration::ZERO, ORIGIN_EXTERNAL)
            }
        };
        let needed = if counter == Counter::Keygen {
            POLICY_ALLOW_GEN
        } else {
            POLICY_ALLOW_WRITE
        };
        self.put_object(id, data, policy, needed, origin)?;
        Ok(Reply {
            data: SecretBytes::default(),
            counter: Some(counter),
            busy,
        })
    }

    /// ECDSASign / EdDSASign (`80 03 0C 09`): TAG_1 key id, TAG_2 algorithm, TAG_3 input.
    pub(super) fn sign(&mut self, tlvs: &Tlvs) -> Answer {
        let object = self.object(object_id(tlvs)?)?;
        if !matches!(
            object.data,
            ObjectData::P256Pair { .. } | ObjectData::Ed25519Pair { .. }
        ) {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        if !allows(self.auth, object, POLICY_ALLOW_SIGN) {
            return Err(StatusWord::NOT_ALLOWED_BY_POLICY);
        }
        let [algorithm] = tlvs
            .require_array::<1>(TAG_2)
            .map_err(|_| StatusWord::WRONG_DATA)?;
        let input = tlvs.require(TAG_3).map_err(|_| StatusWord::WRONG_DATA)?;
        let signature = match &object.data {
            ObjectData::P256Pair { private, .. } => {
                let hash_len = ecdsa_hash_len(algorithm).ok_or(StatusWord::WRONG_DATA)?;
                if input.len() != hash_len {
                    return Err(StatusWord::WRONG_DATA);
                }
                crate::ec::p256_sign_prehash(private, input).ok_or(StatusWord::WRONG_DATA)?
            }
            ObjectData::Ed25519Pair { private, .. } => {
                if algorithm != EDDSA_ED25519_PURE {
                    return Err(StatusWord::WRONG_DATA);
                }
                crate::ec::ed25519_sign_chip_order(private, input).to_vec()
            }
            _ => return Err(StatusWord::CONDITIONS_NOT_SATISFIED),
        };
        Ok(Reply {
            data: tag1(&signature).into(),
            counter: Some(Counter::Signatures),
            busy: self.latency,
        })
    }

    /// ECDH with a P-256 key: the shared X coordinate.
    pub(super) fn ecdh_p256(&self, object: &SecureObject, peer: &[u8]) -> Answer {
        let ObjectData::P256Pair { private, .. } = &object.data else {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        };
        if !allows(self.auth, object, POLICY_ALLOW_KA) {
            return Err(StatusWord::NOT_ALLOWED_BY_POLICY);
        }
        let shared = crate::ec::p256_ecdh(private, peer).ok_or(StatusWord::WRONG_DATA)?;
        Ok(Reply {
            data: SecretBytes::new(tag1(shared.as_slice())),
            counter: Some(Counter::Ecdh),
            busy: self.latency,
        })
    }
}
