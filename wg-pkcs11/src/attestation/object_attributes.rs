//! The object attributes the chip signs in an attested read, and what the verifier requires of
//! them: origin "generated inside the chip", no export, key agreement only in the PIN session
//! where a PIN is set.
//!
//! Layout (AN12413 "Secure Object attributes"; NXP `Se05x_API_ReadObjectAttributes`; the module's
//! `applet/attributes.rs`): object id (4) | class (1) | authentication indicator (1) | attempts
//! counter (2) | authentication object id (4) | maximum attempts (2) | policy set (n) |
//! origin (1). A policy set is entries `len(1) auth-object(4) access(4) [ext]`.
//! Policy bits and origins: NXP `se05x_const.h` `POLICY_OBJ_*`, `se05x_enums.h`
//! `kSE05x_Origin_*`.

use super::Refusal;

const HEADER_LEN: usize = 14;
pub const CLASS_EC_KEY_PAIR: u8 = 0x01;
pub const ORIGIN_EXTERNAL: u8 = 0x01;
pub const ORIGIN_INTERNAL: u8 = 0x02;
pub const ORIGIN_PROVISIONED: u8 = 0x03;
pub const POLICY_ALLOW_KA: u32 = 0x0400_0000;
pub const POLICY_ALLOW_WRAP: u32 = 0x0040_0000;
pub const POLICY_ALLOW_ATTESTATION: u32 = 0x0000_8000;
pub const POLICY_ALLOW_IMPORT_EXPORT: u32 = 0x0000_1000;
/// Without a session the host acts as this authentication object.
pub const EVERYONE: u32 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEntry {
    pub auth_object: u32,
    pub access: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAttributes {
    pub object_id: u32,
    pub class: u8,
    pub policy: Vec<PolicyEntry>,
    pub origin: u8,
}

/// Who may use the key for key agreement, as the policy says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAgreement {
    /// No PIN: anyone who reaches the chip.
    Anyone,
    /// Only inside a session authenticated with one of these objects (the user PIN).
    OnlyIn(Vec<u32>),
}

impl SignedAttributes {
    pub fn parse(bytes: &[u8]) -> Result<SignedAttributes, Refusal> {
        let bad = |why: &str| Refusal::BadResponse(format!("attributes: {why}"));
        if bytes.len() < HEADER_LEN + 1 {
            return Err(bad("shorter than the fixed fields"));
        }
        let policy_bytes = &bytes[HEADER_LEN..bytes.len() - 1];
        let mut policy = Vec::new();
        let mut rest = policy_bytes;
        while let Some((&len, tail)) = rest.split_first() {
            let len = len as usize;
            if len < 8 || tail.len() < len {
                return Err(bad("a policy entry is malformed"));
            }
            policy.push(PolicyEntry {
                auth_object: u32::from_be_bytes(tail[0..4].try_into().expect("4 bytes")),
                access: u32::from_be_bytes(tail[4..8].try_into().expect("4 bytes")),
            });
            rest = &tail[len..];
        }
        Ok(SignedAttributes {
            object_id: u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes")),
            class: bytes[4],
            policy,
            origin: bytes[bytes.len() - 1],
        })
    }

    /// The object was generated inside the chip.
    pub fn check_origin(&self) -> Result<(), Refusal> {
        match self.origin {
            ORIGIN_INTERNAL => Ok(()),
            ORIGIN_EXTERNAL => Err(Refusal::Origin(
                "the key was imported (origin EXTERNAL), not generated inside the chip".into(),
            )),
            ORIGIN_PROVISIONED => Err(Refusal::Origin(
                "the key was provisioned by NXP (origin PROVISIONED), not generated for this device"
                    .into(),
            )),
            other => Err(Refusal::Origin(format!("unknown origin code {other:02X}"))),
        }
    }

    /// No export; key agreement only inside the PIN session where one is set. Returns who may
    /// use the key.
    pub fn check_policy(&self) -> Result<KeyAgreement, Refusal> {
        if self.policy.is_empty() {
            return Err(Refusal::Policy(
                "the key has no policy (the chip's default applies, nothing is restricted); \
                 not attestable, regenerate it"
                    .into(),
            ));
        }
        for entry in &self.policy {
            if entry.access & POLICY_ALLOW_IMPORT_EXPORT != 0 {
                return Err(Refusal::Policy(format!(
                    "authentication object {:08X} may export the key (POLICY_OBJ_ALLOW_IMPORT_EXPORT)",
                    entry.auth_object
                )));
            }
            if entry.access & POLICY_ALLOW_WRAP != 0 {
                return Err(Refusal::Policy(format!(
                    "authentication object {:08X} may wrap the key out (POLICY_OBJ_ALLOW_WRAP)",
                    entry.auth_object
                )));
            }
        }
        let ka: Vec<u32> = self
            .policy
            .iter()
            .filter(|e| e.access & POLICY_ALLOW_KA != 0)
            .map(|e| e.auth_object)
            .collect();
        let protected: Vec<u32> = ka.iter().copied().filter(|&id| id != EVERYONE).collect();
        match (ka.contains(&EVERYONE), protected.is_empty()) {
            (true, true) => Ok(KeyAgreement::Anyone),
            (true, false) => Err(Refusal::Policy(format!(
                "key agreement is allowed inside the PIN session ({}) and also without it",
                ids(&protected)
            ))),
            (false, false) => Ok(KeyAgreement::OnlyIn(protected)),
            (false, true) => Err(Refusal::Policy(
                "nobody may use the key for key agreement".into(),
            )),
        }
    }
}

pub fn ids(ids: &[u32]) -> String {
    ids.iter()
        .map(|id| format!("{id:08X}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn attributes(id: u32, policy: &[(u32, u32)], origin: u8) -> Vec<u8> {
        let mut out = id.to_be_bytes().to_vec();
        out.extend_from_slice(&[CLASS_EC_KEY_PAIR, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
        for (auth, access) in policy {
            out.push(8);
            out.extend_from_slice(&auth.to_be_bytes());
            out.extend_from_slice(&access.to_be_bytes());
        }
        out.push(origin);
        out
    }

    #[test]
    fn policies() {
        let pin = 0x7AFF_0001;
        let check = |p: &[(u32, u32)]| {
            SignedAttributes::parse(&attributes(1, p, ORIGIN_INTERNAL))
                .unwrap()
                .check_policy()
        };
        assert_eq!(
            check(&[(pin, POLICY_ALLOW_KA), (0, 0x0004_0000)]).unwrap(),
            KeyAgreement::OnlyIn(vec![pin])
        );
        assert_eq!(
            check(&[(0, POLICY_ALLOW_KA)]).unwrap(),
            KeyAgreement::Anyone
        );
        assert!(check(&[(pin, POLICY_ALLOW_KA), (0, POLICY_ALLOW_KA)]).is_err());
        assert!(check(&[(0, POLICY_ALLOW_KA | POLICY_ALLOW_IMPORT_EXPORT)]).is_err());
        assert!(check(&[]).is_err());
    }

    #[test]
    fn malformed() {
        assert!(SignedAttributes::parse(&[0; 14]).is_err());
        let mut a = attributes(1, &[(0, 1)], ORIGIN_INTERNAL);
        a.insert(14, 3); // entry length below 8
        assert!(SignedAttributes::parse(&a).is_err());
    }
}
