//! The virtual applet's ReadObjectAttributes (`80 02 00 3B`, `41 object id`). The answer's TAG_1
//! value (AN12413 "Secure Object attributes"; the same field order in NXP's middleware
//! `Se05x_API_ReadObjectAttributes` and Nitrokey's se05x `ObjectAttributes`):
//! object id (4) | type (1) | authentication indicator (1: 01 no, 02 yes) |
//! failed authentication attempts (2) | authentication object id of the creator (4) |
//! maximum authentication attempts (2) | policy (n) | origin (1).
//!
//! Fidelity notes: the chip does not record here who created an object (owner 0) nor, for a key
//! pair, whether it was generated or imported (pairs answer ORIGIN_INTERNAL, everything else
//! ORIGIN_EXTERNAL); the attributes are answered to any caller.

use super::*;

impl VirtualApplet {
    pub(super) fn read_attributes(&mut self, tlvs: &Tlvs) -> Answer {
        let id = object_id(tlvs)?;
        let object = self.object(id)?;
        let (failures, max_attempts) = match &object.data {
            ObjectData::UserId {
                failures,
                max_attempts,
                ..
            } => (*failures, *max_attempts),
            _ => (0, 0),
        };
        let is_auth_object = matches!(object.data, ObjectData::UserId { .. });
        let origin = match object.data {
            ObjectData::X25519Pair { .. } => ORIGIN_INTERNAL,
            _ => ORIGIN_EXTERNAL,
        };
        let policy = object.policy.as_deref().unwrap_or(&[]);
        let mut attributes = Vec::with_capacity(15 + policy.len());
        attributes.extend_from_slice(&id.to_be_bytes());
        attributes.push(object_type(object));
        attributes.push(if is_auth_object { 0x02 } else { 0x01 });
        attributes.extend_from_slice(&failures.to_be_bytes());
        // The creator: not recorded by this chip (0).
        attributes.extend_from_slice(&0u32.to_be_bytes());
        attributes.extend_from_slice(&max_attempts.to_be_bytes());
        attributes.extend_from_slice(policy);
        attributes.push(origin);
        Ok(Reply::data(tag1(&attributes)))
    }
}
