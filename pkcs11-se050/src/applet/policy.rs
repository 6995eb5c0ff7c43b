//! Object policies: which authentication object may do what with a secure object.
//!
//! On the wire (tag 0x11) a policy is a sequence of entries `len(1) auth-id(4) access(4) [ext]`.
//! Without a session the host acts as auth object 0x00000000, so the entry for id 0 decides what
//! this driver may do; an object with a policy but no entry for id 0 allows nothing.

/// One policy entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyEntry {
    pub auth_object: u32,
    /// POLICY_ALLOW_* bits.
    pub access: u32,
}

/// Encodes entries as the value of the policy TLV.
pub fn encode(entries: &[PolicyEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 9);
    for entry in entries {
        out.push(8);
        out.extend_from_slice(&entry.auth_object.to_be_bytes());
        out.extend_from_slice(&entry.access.to_be_bytes());
    }
    out
}

/// Decodes the value of the policy TLV; `None` when malformed.
pub fn decode(mut bytes: &[u8]) -> Option<Vec<PolicyEntry>> {
    let mut entries = Vec::new();
    while let Some((&len, rest)) = bytes.split_first() {
        let len = len as usize;
        if len < 8 || rest.len() < len {
            return None;
        }
        entries.push(PolicyEntry {
            auth_object: u32::from_be_bytes(rest[0..4].try_into().ok()?),
            access: u32::from_be_bytes(rest[4..8].try_into().ok()?),
        });
        bytes = &rest[len..];
    }
    if entries.is_empty() {
        return None;
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::applet::protocol::*;

    #[test]
    fn round_trip_and_malformed() {
        let entries = [
            PolicyEntry {
                auth_object: 0,
                access: POLICY_ALLOW_KA | POLICY_ALLOW_READ,
            },
            PolicyEntry {
                auth_object: 0x7000_0001,
                access: POLICY_ALLOW_DELETE,
            },
        ];
        let bytes = encode(&entries);
        assert_eq!(bytes.len(), 18);
        assert_eq!(&bytes[..9], &[8, 0, 0, 0, 0, 0x04, 0x20, 0, 0]);
        assert_eq!(decode(&bytes).unwrap(), entries);
        assert!(decode(&bytes[..17]).is_none());
        assert!(decode(&[4, 0, 0, 0, 0]).is_none());
        assert!(decode(&[]).is_none());
    }
}
