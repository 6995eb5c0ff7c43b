//! The attributes a key pair's halves report (C_GetAttributeValue, C_FindObjects): an X25519
//! pair's here, with what a P-256 or Ed25519 pair reports differently from ec_keys.rs. Above
//! the object cache (objects.rs) that holds the pairs, and above the key kinds.

use super::attributes::{bool_value, ulong_value, AttrValue};
use super::ec;
use super::handles::Half;
use super::objects::KeyPair;
use crate::config::EcPointFormat;
use pkcs11_sys::*;

impl KeyPair {
    /// The value of one attribute of either half.
    pub fn attribute(
        &self,
        half: Half,
        t: CK_ATTRIBUTE_TYPE,
        ec_point: EcPointFormat,
    ) -> AttrValue {
        use AttrValue::*;
        if let Some(curve) = self.ec {
            if let Some(value) = super::ec_keys::attribute(self, curve, half, t) {
                return value;
            }
        }
        let private = half == Half::Private;
        let v = match t {
            CKA_CLASS => ulong_value(if private {
                CKO_PRIVATE_KEY
            } else {
                CKO_PUBLIC_KEY
            }),
            CKA_KEY_TYPE => ulong_value(CKK_EC_MONTGOMERY),
            CKA_TOKEN => bool_value(true),
            CKA_PRIVATE => bool_value(private),
            CKA_MODIFIABLE => bool_value(true),
            CKA_COPYABLE => bool_value(false),
            CKA_DESTROYABLE => bool_value(true),
            CKA_LABEL => self.label.clone(),
            CKA_ID => self.id.clone(),
            CKA_UNIQUE_ID => {
                format!("{:08X}{}", self.key_id, if private { 'S' } else { 'P' }).into_bytes()
            }
            CKA_LOCAL => bool_value(self.generated),
            CKA_KEY_GEN_MECHANISM => ulong_value(if self.generated {
                CKM_EC_MONTGOMERY_KEY_PAIR_GEN
            } else {
                CK_UNAVAILABLE_INFORMATION
            }),
            CKA_ALLOWED_MECHANISMS => ulong_value(CKM_ECDH1_DERIVE),
            CKA_START_DATE | CKA_END_DATE | CKA_SUBJECT => Vec::new(),
            CKA_DERIVE => bool_value(true),
            CKA_EC_PARAMS => ec::EC_PARAMS_CURVE25519.to_vec(),
            CKA_PUBLIC_KEY_INFO => spki(&self.public),
            // Private-key attributes.
            CKA_SIGN
            | CKA_SIGN_RECOVER
            | CKA_DECRYPT
            | CKA_UNWRAP
            | CKA_ALWAYS_AUTHENTICATE
            | CKA_WRAP_WITH_TRUSTED
                if private =>
            {
                bool_value(false)
            }
            CKA_SENSITIVE | CKA_ALWAYS_SENSITIVE | CKA_NEVER_EXTRACTABLE if private => {
                bool_value(true)
            }
            CKA_EXTRACTABLE if private => bool_value(false),
            CKA_VALUE if private => return Sensitive,
            // Public-key attributes.
            CKA_VERIFY | CKA_VERIFY_RECOVER | CKA_ENCRYPT | CKA_WRAP | CKA_TRUSTED if !private => {
                bool_value(false)
            }
            CKA_EC_POINT if !private => ec::encode_point(&self.public, ec_point),
            _ => return Invalid,
        };
        Value(v)
    }
}

/// DER SubjectPublicKeyInfo of an X25519 public key (RFC 8410).
fn spki(public: &[u8; 32]) -> Vec<u8> {
    let mut v = vec![
        0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x6E, 0x03, 0x21, 0x00,
    ];
    v.extend_from_slice(public);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> KeyPair {
        KeyPair::generated_for_tests()
    }

    #[test]
    fn private_value_is_sensitive_and_public_has_its_point() {
        let p = pair();
        assert_eq!(
            p.attribute(Half::Private, CKA_VALUE, EcPointFormat::Der),
            AttrValue::Sensitive
        );
        assert_eq!(
            p.attribute(Half::Private, CKA_EC_POINT, EcPointFormat::Der),
            AttrValue::Invalid
        );
        let AttrValue::Value(point) = p.attribute(Half::Public, CKA_EC_POINT, EcPointFormat::Der)
        else {
            panic!("no point")
        };
        assert_eq!(point.len(), 34);
        assert_eq!(
            p.attribute(Half::Public, CKA_EC_POINT, EcPointFormat::Raw),
            AttrValue::Value(vec![9; 32])
        );
        assert_eq!(
            p.attribute(Half::Private, CKA_SENSITIVE, EcPointFormat::Der),
            AttrValue::Value(vec![1])
        );
        assert_eq!(
            p.attribute(Half::Public, CKA_SENSITIVE, EcPointFormat::Der),
            AttrValue::Invalid
        );
        assert_eq!(
            p.attribute(Half::Public, 0x8000_1234, EcPointFormat::Der),
            AttrValue::Invalid
        );
    }
}
