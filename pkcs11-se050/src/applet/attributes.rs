//! ReadObjectAttributes (`80 02 00 3B`, `41 object id`): what the chip says about an object,
//! among it the failure counter of an authentication object.
//!
//! The answer carries the attributes in TAG_2 (0x42) on applets before 7.2 and in TAG_3 (0x43)
//! from 7.2 on: NXP's middleware `Se05x_API_ReadObjectAttributes` (se05x_04_xx_APDU_impl.h,
//! `#if !SSS_HAVE_SE05X_VER_GTE_07_02 ... tlvGet_u8buf(TAG_2)` else `TAG_3`), and Nitrokey's
//! se05x commands.toml (`[read_attributes.response] TAG_2 = attributes`) for 3.x. The tag is
//! chosen from the version the applet answered at SELECT ([`attributes_tag`]).
//!
//! Layout of the attributes value (AN12413 "Secure Object attributes"; the same field order
//! in NXP's middleware `Se05x_API_ReadObjectAttributes`, in Nitrokey's `se05x` crate
//! `ObjectAttributes`, and in Worldcoin's orb firmware, which all parse it):
//! object id (4) | object class (1) | authentication indicator (1: 01 not set, 02 set) |
//! authentication attempts counter (2) | authentication object id (4) |
//! maximum authentication attempts (2) | policy set (n) | origin (1).
//!
//! Where sources differ: Nitrokey's trussed-se050-backend reads the counter through the
//! attested variant (ReadAttestObject, INS_READ | 0x20, signed by an attestation key), NXP's
//! middleware also offers this plain one; both carry the same attribute bytes. The counter is the
//! number of failed attempts so far (the orb code and Nitrokey both compare it with the maximum),
//! not the attempts left. Whether a real chip applies an object's policy to this read is not
//! public; the virtual chip answers it for anyone (the attributes hold no secret).

use super::*;

/// The fixed part of the attributes, before the policy set.
const HEADER_LEN: usize = 14;

/// Secure object attributes, as ReadObjectAttributes answers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectAttributes {
    pub id: u32,
    pub class: ObjectType,
    /// The object is an authentication object (a UserID, an AES key for sessions...).
    pub is_auth_object: bool,
    /// Failed authentication attempts so far (auth objects).
    pub failures: u16,
    /// The authentication object that created it (0: none).
    pub owner: u32,
    /// Maximum failed attempts before it is blocked; 0: no limit.
    pub max_attempts: u16,
    /// The policy set, as on the wire (tag 0x11 value); empty: no policy.
    pub policy: Vec<u8>,
    pub origin: u8,
}

/// Origin codes.
pub const ORIGIN_EXTERNAL: u8 = 0x01;
pub const ORIGIN_INTERNAL: u8 = 0x02;

impl ObjectAttributes {
    /// Whether the chip refuses to authenticate with it any more.
    pub fn blocked(&self) -> bool {
        self.max_attempts != 0 && self.failures >= self.max_attempts
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.policy.len() + 1);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(self.class.code());
        out.push(if self.is_auth_object { 0x02 } else { 0x01 });
        out.extend_from_slice(&self.failures.to_be_bytes());
        out.extend_from_slice(&self.owner.to_be_bytes());
        out.extend_from_slice(&self.max_attempts.to_be_bytes());
        out.extend_from_slice(&self.policy);
        out.push(self.origin);
        out
    }

    /// Parses the attributes of an SE050 (applet 3.x: ... policy | origin) or of a 7.x applet,
    /// which appends the object's version (4 bytes) after the origin (NXP's demo
    /// se05x_ReadWithAttestation: `KEYOBJ_VERSION_LENGTH`, "Data is retrieved for Se051"). The
    /// policy set is walked entry by entry (each starts with its length, at least 4), as that
    /// demo does, so the origin is found whatever follows it.
    pub fn parse(bytes: &[u8]) -> Option<ObjectAttributes> {
        if bytes.len() < HEADER_LEN + 1 {
            return None;
        }
        let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let is_auth_object = match bytes[5] {
            0x01 => false,
            0x02 => true,
            _ => return None,
        };
        let mut at = HEADER_LEN;
        while *bytes.get(at)? >= 4 {
            at += 1 + usize::from(bytes[at]);
        }
        let origin = *bytes.get(at)?;
        if !matches!(bytes.len() - at - 1, 0 | 4) {
            return None;
        }
        Some(ObjectAttributes {
            id: u32_at(0),
            class: ObjectType::from_code(bytes[4]),
            is_auth_object,
            failures: u16_at(6),
            owner: u32_at(8),
            max_attempts: u16_at(12),
            policy: bytes[HEADER_LEN..at].to_vec(),
            origin,
        })
    }
}

/// The tag of the attributes in ReadObjectAttributes' answer for applet `version`.
pub fn attributes_tag(version: AppletVersion) -> u8 {
    if (version.major, version.minor) >= (7, 2) {
        TAG_3
    } else {
        TAG_2
    }
}

impl<T: ApduTransport> Se050<T> {
    /// ReadObjectAttributes of the object at `id`.
    pub fn read_attributes(&mut self, id: ObjectId) -> Result<ObjectAttributes, Se050Error> {
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        let name = || format!("ReadObjectAttributes {id}");
        let response =
            self.exchange(&name, INS_READ, P1_DEFAULT, P2_ATTRIBUTES, data, Some(256))?;
        let tlvs = Tlvs::parse(&response).map_err(|e| bad(&name, e.to_string()))?;
        let value = tlvs
            .require(attributes_tag(self.version))
            .map_err(|e| bad(&name, e.to_string()))?;
        let attributes = ObjectAttributes::parse(value)
            .ok_or_else(|| bad(&name, format!("{} bytes of attributes", value.len())))?;
        if attributes.id != id.value() {
            return Err(bad(
                &name,
                format!("attributes of object {:#010x}", attributes.id),
            ));
        }
        Ok(attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_refuse_short_or_odd_answers() {
        let a = ObjectAttributes {
            id: 0x7000_0010,
            class: ObjectType::UserId,
            is_auth_object: true,
            failures: 3,
            owner: 0,
            max_attempts: 10,
            policy: vec![8, 0, 0, 0, 0, 0, 0x10, 0, 0],
            origin: ORIGIN_EXTERNAL,
        };
        let bytes = a.encode();
        assert_eq!(&bytes[..8], &[0x70, 0, 0, 0x10, 0x0C, 0x02, 0, 3]);
        assert_eq!(ObjectAttributes::parse(&bytes), Some(a.clone()));
        assert!(!a.blocked());
        assert!(ObjectAttributes {
            failures: 10,
            ..a.clone()
        }
        .blocked());
        assert!(!ObjectAttributes {
            max_attempts: 0,
            failures: 99,
            ..a
        }
        .blocked());
        assert_eq!(ObjectAttributes::parse(&bytes[..14]), None);
        // A 7.x applet's attributes: the object version (4 bytes) after the origin.
        let mut with_version = bytes.clone();
        with_version.extend_from_slice(&[0, 0, 0, 1]);
        assert_eq!(
            ObjectAttributes::parse(&with_version).unwrap().origin,
            ORIGIN_EXTERNAL
        );
        with_version.push(0);
        assert_eq!(ObjectAttributes::parse(&with_version), None);
        let mut odd = bytes.clone();
        odd[5] = 7;
        assert_eq!(ObjectAttributes::parse(&odd), None);
    }

    #[test]
    fn attributes_tag_follows_the_applet_version() {
        let v = |major, minor| AppletVersion {
            major,
            minor,
            patch: 0,
            config: 0,
            securebox_major: 0,
            securebox_minor: 0,
        };
        assert_eq!(attributes_tag(v(3, 1)), TAG_2);
        assert_eq!(attributes_tag(v(7, 0)), TAG_2);
        assert_eq!(attributes_tag(v(7, 2)), TAG_3);
        assert_eq!(attributes_tag(v(8, 0)), TAG_3);
    }
}
