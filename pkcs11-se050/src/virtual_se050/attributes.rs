//! The virtual applet's ReadObjectAttributes (`80 02 00 3B`); layout in `applet/attributes.rs`.
//!
//! Fidelity notes: the chip does not record here who created an object (owner 0) nor, for a key
//! pair, whether it was generated or imported (pairs answer ORIGIN_INTERNAL, everything else
//! ORIGIN_EXTERNAL); the attributes are answered to any caller.

use super::*;
use crate::applet::attributes::{ObjectAttributes, ORIGIN_EXTERNAL, ORIGIN_INTERNAL};

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
        let attributes = ObjectAttributes {
            id,
            class: object_type(object),
            is_auth_object: matches!(object.data, ObjectData::UserId { .. }),
            failures,
            owner: 0,
            max_attempts,
            policy: object.policy.clone().unwrap_or_default(),
            origin: match object.data {
                ObjectData::X25519Pair { .. } => ORIGIN_INTERNAL,
                _ => ORIGIN_EXTERNAL,
            },
        };
        Ok(Reply::data(tag1(&attributes.encode())))
    }
}
