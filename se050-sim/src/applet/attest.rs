//! ReadObject with attestation (`80 22 00 00`: INS READ | ATTEST): an object's contents and
//! attributes, signed by the chip's attestation key with the host's freshness value; and
//! ReadObjectAttributes with attestation (`80 22 00 3B`: the same answer without TAG_1;
//! impl04 `Se05x_API_ReadObjectAttributes_W_Attst` / `_V2`, Nitrokey's `read_attributes_attest`). Request
//! and answer layouts per applet version, with their sources: FORMATS.md and `attestation.rs`.
//!
//! Fidelity notes:
//! - what the policy bit `POLICY_OBJ_ALLOW_ATTESTATION` guards: the attestation KEY (fsl_sss_policy.h
//!   lists it among an asymmetric key's rights, "can_Attest: Allow to attest an object", and
//!   NXP's se05x_ReadWithAttestation demo attests a binary file whose policy has no such bit).
//!   A key without it for the caller answers 6986; the attested object needs no bit: its
//!   contents are included when its policy lets the caller read them (and it has readable
//!   contents: a public key, a file), else the answer has no TAG_1 ("Keys with no read policy
//!   will not return TAG1", `Se05x_API_ReadObject_W_Attst`);
//! - checks, in order: object id (6A80), attestation key id present (6A80), algorithm byte
//!   (6A80), freshness exactly 16 bytes (6A80; NXP's builder makes it optional, this chip
//!   requires it: an attestation without the verifier's nonce proves nothing fresh), the
//!   attestation key exists (6A80), is a P-256 key pair (6985), allows attestation (6986), the
//!   algorithm is EC_SHA_256 (6A80), the object exists (6A80), offset/length in range (6A80);
//! - the 7.x answer's object size (TAG_4) is what ReadSize answers for the object (a file's
//!   size, an EC key's curve size: 32);
//! - the answer's TLVs use the shortest length form, like every other answer of this chip; the
//!   7.x signature covers them re-encoded with 3-byte lengths, as NXP's verifier rebuilds them.

use super::*;
use crate::attestation::{self, Attested};

impl VirtualApplet {
    pub(super) fn read_attested(&mut self, apdu: &CommandApdu, tlvs: &Tlvs) -> Answer {
        let id = object_id(tlvs)?;
        let offset = optional_u16(tlvs, TAG_2)?;
        let length = optional_u16(tlvs, TAG_3)?;
        let attestation_key = tlvs
            .require_u32(TAG_5)
            .map_err(|_| StatusWord::WRONG_DATA)?;
        let [algorithm] = tlvs
            .require_array::<1>(TAG_6)
            .map_err(|_| StatusWord::WRONG_DATA)?;
        let freshness = tlvs.require(TAG_7).map_err(|_| StatusWord::WRONG_DATA)?;
        if freshness.len() != FRESHNESS_LEN {
            return Err(StatusWord::WRONG_DATA);
        }
        let key = self.object(attestation_key)?;
        let ObjectData::P256Pair { private, .. } = &key.data else {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        };
        if !allows(self.auth, key, POLICY_ALLOW_ATTESTATION) {
            return Err(StatusWord::NOT_ALLOWED_BY_POLICY);
        }
        if algorithm != ATTESTATION_ALGO_EC_SHA_256 {
            return Err(StatusWord::WRONG_DATA);
        }
        let private = private.clone();
        let object = self.object(id)?;
        // ReadObjectAttributes with attestation (P2 ATTRIBUTES) answers no contents.
        let contents = readable_contents(object)
            .filter(|_| apdu.p2 == P2_DEFAULT)
            .filter(|_| allows(self.auth, object, POLICY_ALLOW_READ));
        let data = match contents {
            Some(contents) => {
                let start = offset.unwrap_or(0);
                let end = length.map_or(contents.len(), |length| start + length);
                if start > contents.len() || end > contents.len() || length == Some(0) {
                    return Err(StatusWord::WRONG_DATA);
                }
                Some(contents[start..end].to_vec())
            }
            None => None,
        };
        let object_size = size_of(&object.data);
        let attributes = self.attributes_of(id)?;
        let timestamp = timestamp_now();
        let chip_id = self.unique_id();
        let parts = Attested {
            data: data.as_deref(),
            attributes: &attributes,
            timestamp: &timestamp,
            chip_id: &chip_id,
        };
        let mut out = Vec::new();
        if let Some(data) = &data {
            tlv::push(&mut out, TAG_1, data);
        }
        if self.is_7_2() {
            let header = [CLA_IOT, apdu.ins, apdu.p1, apdu.p2];
            let message = attestation::message_7x(&parts, header, &apdu.data, object_size);
            let signature =
                attestation::sign(&private, &message).ok_or(StatusWord::NO_PRECISE_DIAGNOSIS)?;
            tlv::push(&mut out, TAG_2, &chip_id);
            tlv::push(&mut out, TAG_3, &attributes);
            tlv::push(&mut out, TAG_4, &object_size.to_be_bytes());
            tlv::push(&mut out, TAG_TIMESTAMP, &timestamp);
            tlv::push(&mut out, TAG_SIGNATURE, &signature);
        } else {
            let message = attestation::message_3x(&parts, freshness);
            let signature =
                attestation::sign(&private, &message).ok_or(StatusWord::NO_PRECISE_DIAGNOSIS)?;
            tlv::push(&mut out, TAG_2, &attributes);
            tlv::push(&mut out, TAG_3, &timestamp);
            tlv::push(&mut out, TAG_4, freshness);
            tlv::push(&mut out, TAG_5, &chip_id);
            tlv::push(&mut out, TAG_6, &signature);
        }
        Ok(Reply {
            data: out.into(),
            counter: Some(Counter::AttestedReads),
            busy: self.latency,
        })
    }

    /// The chip's 18-byte unique id (object 0x7FFF0206).
    fn unique_id(&self) -> Vec<u8> {
        match self.store.state().objects.get(&UNIQUE_ID).map(|o| &o.data) {
            Some(ObjectData::BinaryFile { data }) => data.clone(),
            _ => vec![0; UNIQUE_ID_LEN],
        }
    }
}

/// What ReadObject answers for the object, if anything: a key pair's public key, a file.
pub(super) fn readable_contents(object: &SecureObject) -> Option<&[u8]> {
    match &object.data {
        ObjectData::X25519Pair { public, .. } => Some(public),
        ObjectData::P256Pair { public, .. } => Some(public),
        ObjectData::Ed25519Pair { public, .. } => Some(public),
        ObjectData::BinaryFile { data } => Some(data),
        ObjectData::X25519Private { .. }
        | ObjectData::AesKey { .. }
        | ObjectData::UserId { .. } => None,
    }
}
