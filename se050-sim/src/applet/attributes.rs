//! The virtual applet's ReadObjectAttributes (`80 02 00 3B`, `41 object id`).
//!
//! The answer carries the attributes in TAG_2 (0x42) on applets before 7.2 and in TAG_3 (0x43)
//! from 7.2 on: NXP's middleware `Se05x_API_ReadObjectAttributes` (se05x_04_xx_APDU_impl.h,
//! `#if !SSS_HAVE_SE05X_VER_GTE_07_02` TAG_2, else TAG_3); Nitrokey's se05x commands.toml reads
//! TAG_2 for 3.x. The attributes (AN12413 "Secure Object attributes"; NXP's demo
//! se05x_ReadWithAttestation parses them field by field):
//! object id (4) | type (1) | authentication indicator (1: 01 no, 02 yes) |
//! failed authentication attempts (2; on 7.x for other objects: minimum AEAD tag length) |
//! authentication object id of the creator (4) |
//! maximum authentication attempts (2; on 7.x for other objects: RFU) | policy (n) |
//! origin (1: 01 external, 02 internal, 03 provisioned) | [7.x: object version (4)].
//!
//! Fidelity notes: the creator is the authentication object of the session that created the
//! object (0 outside a session); the object version of a 7.x answer is always 0 here (no
//! object is ever versioned on this chip); the attributes are answered to any caller.

use super::*;

impl VirtualApplet {
    pub(super) fn read_attributes(&mut self, tlvs: &Tlvs) -> Answer {
        let id = object_id(tlvs)?;
        let attributes = self.attributes_of(id)?;
        let tag = if self.is_7_2() { TAG_3 } else { TAG_2 };
        let mut out = Vec::new();
        tlv::push(&mut out, tag, &attributes);
        Ok(Reply::data(out))
    }

    /// The attribute bytes of object `id`, as this chip's applet version lays them out.
    pub(super) fn attributes_of(&self, id: u32) -> Result<Vec<u8>, StatusWord> {
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
        let policy = object.policy.as_deref().unwrap_or(&[]);
        let mut attributes = Vec::with_capacity(19 + policy.len());
        attributes.extend_from_slice(&id.to_be_bytes());
        attributes.push(object_type(object));
        attributes.push(if is_auth_object { 0x02 } else { 0x01 });
        attributes.extend_from_slice(&failures.to_be_bytes());
        attributes.extend_from_slice(&object.creator.to_be_bytes());
        attributes.extend_from_slice(&max_attempts.to_be_bytes());
        attributes.extend_from_slice(policy);
        attributes.push(object.origin);
        if self.is_7_2() {
            attributes.extend_from_slice(&0u32.to_be_bytes());
        }
        Ok(attributes)
    }
}
