//! A certificate as this module stores it on the chip (issue 22): one binary file per
//! certificate in `CERT_BASE..=CERT_END`: `P11CERT1`, then entries
//! `type (4, BE) | length (2, BE) | value` for CKA_LABEL, CKA_ID, CKA_SUBJECT, CKA_ISSUER,
//! CKA_SERIAL_NUMBER and CKA_VALUE (the DER certificate); the attributes it reports, and its
//! handle. Below the object cache (objects.rs), which keeps the ones found on the chip; what
//! makes and destroys them (C_CreateObject, C_DestroyObject) is certificate.rs.
//!
//! Handles come from the keys' handle table (handles.rs), bound to the file id and the
//! SHA-256 of the certificate: a handle never names a key, nor a certificate that replaced the
//! one it was made for, and it fits a 32-bit CK_ULONG.

use super::attributes::{bool_value, ulong_value, AttrValue};
use pkcs11_sys::*;

pub const CERT_BASE: u32 = 0x7A00_0000;
pub const CERT_END: u32 = 0x7A0F_FFFF;
const MAGIC: &[u8; 8] = b"P11CERT1";
/// What a certificate's file keeps, in this order.
pub(super) const STORED: [CK_ATTRIBUTE_TYPE; 6] = [
    CKA_LABEL,
    CKA_ID,
    CKA_SUBJECT,
    CKA_ISSUER,
    CKA_SERIAL_NUMBER,
    CKA_VALUE,
];
/// One certificate on the chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub file: u32,
    /// (type, value) in STORED's order.
    pub values: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
}

pub fn is_cert_handle(handle: CK_OBJECT_HANDLE) -> bool {
    super::handles::certificate_binding(handle).is_some()
}

impl Certificate {
    /// Its handle, from the table the keys' handles come from (token/objects.rs).
    pub fn handle(&self) -> Option<CK_OBJECT_HANDLE> {
        super::handles::certificate_handle(self.file, self.get(CKA_VALUE))
    }

    pub(super) fn get(&self, t: CK_ATTRIBUTE_TYPE) -> &[u8] {
        self.values
            .iter()
            .find(|(ty, _)| *ty == t)
            .map(|(_, v)| v.as_slice())
            .unwrap_or_default()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (t, value) in &self.values {
            out.extend_from_slice(&(*t as u32).to_be_bytes());
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    /// None for anything that is not exactly such a file.
    pub fn decode(file: u32, bytes: &[u8]) -> Option<Certificate> {
        let mut rest = bytes.strip_prefix(MAGIC)?;
        let mut values = Vec::new();
        while !rest.is_empty() {
            let t = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as CK_ATTRIBUTE_TYPE;
            let len = u16::from_be_bytes(rest.get(4..6)?.try_into().ok()?) as usize;
            values.push((t, rest.get(6..6 + len)?.to_vec()));
            rest = &rest[6 + len..];
        }
        let order: Vec<_> = values.iter().map(|(t, _)| *t).collect();
        (order == STORED).then_some(Certificate { file, values })
    }

    pub fn attribute(&self, t: CK_ATTRIBUTE_TYPE) -> AttrValue {
        let v = match t {
            CKA_CLASS => ulong_value(CKO_CERTIFICATE),
            CKA_CERTIFICATE_TYPE => ulong_value(CKC_X_509),
            CKA_TOKEN => bool_value(true),
            CKA_PRIVATE | CKA_TRUSTED | CKA_COPYABLE => bool_value(false),
            CKA_MODIFIABLE => bool_value(false),
            CKA_DESTROYABLE => bool_value(true),
            CKA_CERTIFICATE_CATEGORY | CKA_JAVA_MIDP_SECURITY_DOMAIN => ulong_value(0),
            CKA_START_DATE
            | CKA_END_DATE
            | CKA_URL
            | CKA_HASH_OF_SUBJECT_PUBLIC_KEY
            | CKA_HASH_OF_ISSUER_PUBLIC_KEY => Vec::new(),
            t if STORED.contains(&t) => self.get(t).to_vec(),
            _ => return AttrValue::Invalid,
        };
        AttrValue::Value(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_anything_else_is_not_one() {
        let cert = Certificate {
            file: CERT_BASE,
            values: STORED.iter().map(|&t| (t, vec![t as u8; 3])).collect(),
        };
        let bytes = cert.encode();
        assert_eq!(Certificate::decode(CERT_BASE, &bytes), Some(cert.clone()));
        assert_eq!(
            Certificate::decode(CERT_BASE, &bytes[..bytes.len() - 1]),
            None
        );
        assert_eq!(Certificate::decode(CERT_BASE, b"P11CERT1"), None);
        let handle = cert.handle().unwrap();
        assert!(is_cert_handle(handle));
        assert!(handle < super::super::handles::SESSION_HANDLE_BASE);
        assert!(!is_cert_handle(handle ^ 1));
        assert!(!is_cert_handle(5));
    }
}
