//! Attribute templates and the encodings of attribute values.
//!
//! The ABI layer copies each caller template into a `Template` (type + bytes); from there on
//! everything is safe Rust. Values are kept in their wire form: CK_BBOOL as one byte, CK_ULONG
//! in native byte order and width, byte strings as they are.

use super::error::{refuse, Result};
use pkcs11_sys::*;
use zeroize::Zeroizing;

/// The storage-object and common key attributes (PKCS#11 3.0 sections 4.4 and 4.7) that a
/// template for any key this token makes may name; each kind of key adds its own.
pub const KEY_TEMPLATE_COMMON: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_CLASS,
    CKA_KEY_TYPE,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_MODIFIABLE,
    CKA_COPYABLE,
    CKA_DESTROYABLE,
    CKA_LABEL,
    CKA_ID,
    CKA_DERIVE,
    CKA_START_DATE,
    CKA_END_DATE,
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    pub entries: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
}

/// The answer for one attribute of an object. Its `Debug` redacts a `Secret`.
#[derive(Clone, PartialEq, Eq)]
pub enum AttrValue {
    Value(Vec<u8>),
    /// A value that is a secret (CKA_VALUE of an extractable derived key): revealed like
    /// `Value`, but every copy of it this module makes is wiped when dropped.
    Secret(Zeroizing<Vec<u8>>),
    /// The attribute exists but must not be revealed (CKR_ATTRIBUTE_SENSITIVE).
    Sensitive,
    /// The object has no such attribute (CKR_ATTRIBUTE_TYPE_INVALID).
    Invalid,
}

impl std::fmt::Debug for AttrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrValue::Value(bytes) => f.debug_tuple("Value").field(bytes).finish(),
            AttrValue::Secret(bytes) => write!(f, "Secret(<{} bytes redacted>)", bytes.len()),
            AttrValue::Sensitive => f.write_str("Sensitive"),
            AttrValue::Invalid => f.write_str("Invalid"),
        }
    }
}

impl AttrValue {
    /// The bytes to hand out, for `Value` and `Secret`.
    pub fn revealed(&self) -> Option<&[u8]> {
        match self {
            AttrValue::Value(bytes) => Some(bytes),
            AttrValue::Secret(bytes) => Some(bytes),
            AttrValue::Sensitive | AttrValue::Invalid => None,
        }
    }
}

pub fn bool_value(b: bool) -> Vec<u8> {
    vec![if b { CK_TRUE } else { CK_FALSE }]
}

pub fn ulong_value(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

impl Template {
    pub fn new(entries: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>) -> Template {
        Template { entries }
    }

    pub fn get(&self, t: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
        self.entries
            .iter()
            .rev()
            .find(|(ty, _)| *ty == t)
            .map(|(_, v)| v.as_slice())
    }

    pub fn types(&self) -> impl Iterator<Item = CK_ATTRIBUTE_TYPE> + '_ {
        self.entries.iter().map(|(t, _)| *t)
    }

    /// A CK_BBOOL attribute: exactly one byte, 0 or 1 (any non-zero is true, as most tokens do).
    pub fn get_bool(&self, t: CK_ATTRIBUTE_TYPE) -> Result<Option<bool>> {
        match self.get(t) {
            None => Ok(None),
            Some([b]) => Ok(Some(*b != 0)),
            Some(v) => Err(refuse(
                CKR_ATTRIBUTE_VALUE_INVALID,
                format_args!(
                    "{} must be one CK_BBOOL byte, got {} bytes",
                    attr_name(t),
                    v.len()
                ),
            )),
        }
    }

    /// A CK_ULONG attribute in native byte order and width.
    pub fn get_ulong(&self, t: CK_ATTRIBUTE_TYPE) -> Result<Option<CK_ULONG>> {
        match self.get(t) {
            None => Ok(None),
            Some(v) if v.len() == std::mem::size_of::<CK_ULONG>() => Ok(Some(
                CK_ULONG::from_ne_bytes(v.try_into().expect("length checked")),
            )),
            Some(v) => Err(refuse(
                CKR_ATTRIBUTE_VALUE_INVALID,
                format_args!(
                    "{} must be a CK_ULONG ({} bytes), got {} bytes",
                    attr_name(t),
                    std::mem::size_of::<CK_ULONG>(),
                    v.len()
                ),
            )),
        }
    }

    /// Checks that a CK_ULONG attribute, when present, has the one value this object can have.
    pub fn expect_ulong(&self, t: CK_ATTRIBUTE_TYPE, want: CK_ULONG, what: &str) -> Result<()> {
        match self.get_ulong(t)? {
            Some(v) if v != want => Err(refuse(
                CKR_TEMPLATE_INCONSISTENT,
                format_args!(
                    "{} = {v:#x} in the {what} template; only {want:#x} fits",
                    attr_name(t)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Checks that a boolean attribute, when present, has the one value this object can have.
    pub fn expect_bool(&self, t: CK_ATTRIBUTE_TYPE, want: bool, why: &str) -> Result<()> {
        match self.get_bool(t)? {
            Some(v) if v != want => Err(refuse(
                CKR_ATTRIBUTE_VALUE_INVALID,
                format_args!("{} = {v} refused: {why}", attr_name(t)),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses every attribute in none of the `allowed` lists, naming it.
    pub fn only(&self, allowed: &[&[CK_ATTRIBUTE_TYPE]], what: &str) -> Result<()> {
        for t in self.types() {
            if !allowed.iter().any(|list| list.contains(&t)) {
                return Err(refuse(
                    CKR_ATTRIBUTE_TYPE_INVALID,
                    format_args!("{} is not supported in the {what} template", attr_name(t)),
                ));
            }
        }
        Ok(())
    }
}

/// Does an object whose attributes are given by `lookup` match every entry of `template`?
pub fn matches(template: &Template, lookup: impl Fn(CK_ATTRIBUTE_TYPE) -> AttrValue) -> bool {
    template.entries.iter().all(|(t, want)| match lookup(*t) {
        AttrValue::Value(have) => &have == want,
        AttrValue::Secret(have) => *have == *want,
        _ => false,
    })
}

/// Attribute names for log messages.
pub fn attr_name(t: CK_ATTRIBUTE_TYPE) -> String {
    let name = match t {
        CKA_CLASS => "CKA_CLASS",
        CKA_TOKEN => "CKA_TOKEN",
        CKA_PRIVATE => "CKA_PRIVATE",
        CKA_LABEL => "CKA_LABEL",
        CKA_VALUE => "CKA_VALUE",
        CKA_KEY_TYPE => "CKA_KEY_TYPE",
        CKA_ID => "CKA_ID",
        CKA_SENSITIVE => "CKA_SENSITIVE",
        CKA_ENCRYPT => "CKA_ENCRYPT",
        CKA_DECRYPT => "CKA_DECRYPT",
        CKA_WRAP => "CKA_WRAP",
        CKA_UNWRAP => "CKA_UNWRAP",
        CKA_SIGN => "CKA_SIGN",
        CKA_SIGN_RECOVER => "CKA_SIGN_RECOVER",
        CKA_VERIFY => "CKA_VERIFY",
        CKA_VERIFY_RECOVER => "CKA_VERIFY_RECOVER",
        CKA_DERIVE => "CKA_DERIVE",
        CKA_START_DATE => "CKA_START_DATE",
        CKA_END_DATE => "CKA_END_DATE",
        CKA_VALUE_LEN => "CKA_VALUE_LEN",
        CKA_EXTRACTABLE => "CKA_EXTRACTABLE",
        CKA_LOCAL => "CKA_LOCAL",
        CKA_NEVER_EXTRACTABLE => "CKA_NEVER_EXTRACTABLE",
        CKA_ALWAYS_SENSITIVE => "CKA_ALWAYS_SENSITIVE",
        CKA_KEY_GEN_MECHANISM => "CKA_KEY_GEN_MECHANISM",
        CKA_MODIFIABLE => "CKA_MODIFIABLE",
        CKA_COPYABLE => "CKA_COPYABLE",
        CKA_DESTROYABLE => "CKA_DESTROYABLE",
        CKA_EC_PARAMS => "CKA_EC_PARAMS",
        CKA_EC_POINT => "CKA_EC_POINT",
        CKA_ALWAYS_AUTHENTICATE => "CKA_ALWAYS_AUTHENTICATE",
        CKA_WRAP_WITH_TRUSTED => "CKA_WRAP_WITH_TRUSTED",
        CKA_TRUSTED => "CKA_TRUSTED",
        CKA_SUBJECT => "CKA_SUBJECT",
        CKA_PUBLIC_KEY_INFO => "CKA_PUBLIC_KEY_INFO",
        CKA_ALLOWED_MECHANISMS => "CKA_ALLOWED_MECHANISMS",
        CKA_UNIQUE_ID => "CKA_UNIQUE_ID",
        _ => return format!("attribute {t:#x}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_getters_check_lengths() {
        let t = Template::new(vec![
            (CKA_TOKEN, vec![1]),
            (CKA_VALUE_LEN, ulong_value(16)),
            (CKA_DERIVE, vec![1, 0]),
        ]);
        assert_eq!(t.get_bool(CKA_TOKEN).unwrap(), Some(true));
        assert_eq!(t.get_ulong(CKA_VALUE_LEN).unwrap(), Some(16));
        assert_eq!(
            t.get_bool(CKA_DERIVE).unwrap_err().rv(),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert_eq!(
            t.get_ulong(CKA_TOKEN).unwrap_err().rv(),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert_eq!(t.get_bool(CKA_SIGN).unwrap(), None);
        assert_eq!(
            t.only(&[&[CKA_TOKEN]], "x").unwrap_err().rv(),
            CKR_ATTRIBUTE_TYPE_INVALID
        );
    }

    #[test]
    fn matching_needs_every_entry_equal() {
        let t = Template::new(vec![(CKA_CLASS, ulong_value(CKO_PRIVATE_KEY))]);
        assert!(matches(&t, |_| AttrValue::Value(ulong_value(
            CKO_PRIVATE_KEY
        ))));
        assert!(!matches(&t, |_| AttrValue::Value(ulong_value(
            CKO_PUBLIC_KEY
        ))));
        assert!(!matches(&t, |_| AttrValue::Sensitive));
        assert!(matches(&Template::default(), |_| AttrValue::Invalid));
    }
}
