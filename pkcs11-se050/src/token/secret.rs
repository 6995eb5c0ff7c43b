//! Derived secrets: CKK_GENERIC_SECRET session objects holding an ECDH result.

use super::attributes::{bool_value, ulong_value, AttrValue};
use pkcs11_sys::*;
use std::collections::HashMap;
use std::fmt;
use zeroize::Zeroizing;

/// One derived secret. Its `Debug` shows everything but the value, so that logging an object
/// (or a store of them) can never print a shared secret.
pub struct SecretKey {
    /// The session that made it: the object dies with that session.
    pub session: CK_SESSION_HANDLE,
    /// Wiped when the object is destroyed (Zeroizing's drop).
    pub value: Zeroizing<Vec<u8>>,
    /// Made while a user was logged in (from the user's key): CKA_PRIVATE, and destroyed at
    /// C_Logout as PKCS#11 says of private session objects.
    pub private: bool,
    pub label: Vec<u8>,
    pub id: Vec<u8>,
    pub sensitive: bool,
    pub extractable: bool,
    /// Usage flags the template asked for (kept and reported; this token does nothing with
    /// them: the value is meant to be read by the caller).
    pub usage: Vec<(CK_ATTRIBUTE_TYPE, bool)>,
}

pub const SECRET_USAGE_ATTRIBUTES: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_DERIVE,
];

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("session", &self.session)
            .field("private", &self.private)
            .field(
                "value",
                &format_args!("<{} bytes redacted>", self.value.len()),
            )
            .field("label", &self.label)
            .field("id", &self.id)
            .field("sensitive", &self.sensitive)
            .field("extractable", &self.extractable)
            .field("usage", &self.usage)
            .finish()
    }
}

impl SecretKey {
    pub fn attribute(&self, t: CK_ATTRIBUTE_TYPE) -> AttrValue {
        use AttrValue::*;
        let v = match t {
            CKA_CLASS => ulong_value(CKO_SECRET_KEY),
            CKA_KEY_TYPE => ulong_value(CKK_GENERIC_SECRET),
            CKA_PRIVATE => bool_value(self.private),
            CKA_TOKEN | CKA_MODIFIABLE | CKA_COPYABLE | CKA_LOCAL => bool_value(false),
            CKA_DESTROYABLE => bool_value(true),
            CKA_LABEL => self.label.clone(),
            CKA_ID => self.id.clone(),
            CKA_START_DATE | CKA_END_DATE => Vec::new(),
            CKA_KEY_GEN_MECHANISM => ulong_value(CK_UNAVAILABLE_INFORMATION),
            CKA_VALUE_LEN => ulong_value(self.value.len() as CK_ULONG),
            CKA_SENSITIVE | CKA_ALWAYS_SENSITIVE => bool_value(self.sensitive),
            CKA_EXTRACTABLE => bool_value(self.extractable),
            CKA_NEVER_EXTRACTABLE => bool_value(!self.extractable),
            CKA_TRUSTED | CKA_WRAP_WITH_TRUSTED => bool_value(false),
            CKA_VALUE => {
                // PKCS#11 4.1: never revealed when sensitive or not extractable.
                if self.sensitive || !self.extractable {
                    return Sensitive;
                }
                // The copy handed to the ABI layer is wiped when that layer drops it.
                return Secret(Zeroizing::new(self.value.to_vec()));
            }
            t if SECRET_USAGE_ATTRIBUTES.contains(&t) => bool_value(
                self.usage
                    .iter()
                    .find(|(u, _)| *u == t)
                    .map(|(_, v)| *v)
                    .unwrap_or(false),
            ),
            _ => return Invalid,
        };
        Value(v)
    }
}

/// All session objects of the application, with their handles.
#[derive(Debug)]
pub struct SecretStore {
    pub objects: HashMap<CK_OBJECT_HANDLE, SecretKey>,
    next: CK_OBJECT_HANDLE,
}

impl Default for SecretStore {
    fn default() -> Self {
        SecretStore {
            objects: HashMap::new(),
            next: super::handles::SESSION_HANDLE_BASE,
        }
    }
}

impl SecretStore {
    pub fn insert(&mut self, key: SecretKey) -> CK_OBJECT_HANDLE {
        // Past the top of CK_ULONG (2^31 derives on a 32-bit target) the handles would wrap into
        // the token objects' range: stop there (the C ABI's guard makes it CKR_GENERAL_ERROR).
        self.next = self
            .next
            .checked_add(1)
            .expect("session-object handles exhausted");
        self.objects.insert(self.next, key);
        self.next
    }

    pub fn remove_session(&mut self, session: CK_SESSION_HANDLE) {
        self.objects.retain(|_, k| k.session != session);
    }

    /// C_Logout (or a login the chip lost): the private objects go, their values wiped.
    pub fn remove_private(&mut self) {
        self.objects.retain(|_, k| !k.private);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sensitive: bool, extractable: bool) -> SecretKey {
        SecretKey {
            session: 1,
            value: Zeroizing::new(vec![5; 32]),
            private: true,
            label: vec![],
            id: vec![],
            sensitive,
            extractable,
            usage: vec![(CKA_DERIVE, true)],
        }
    }

    #[test]
    fn value_only_when_neither_sensitive_nor_unextractable() {
        assert_eq!(
            key(false, true).attribute(CKA_VALUE),
            AttrValue::Secret(Zeroizing::new(vec![5; 32]))
        );
        assert_eq!(key(true, true).attribute(CKA_VALUE), AttrValue::Sensitive);
        assert_eq!(key(false, false).attribute(CKA_VALUE), AttrValue::Sensitive);
        assert_eq!(
            key(false, true).attribute(CKA_DERIVE),
            AttrValue::Value(vec![1])
        );
        assert_eq!(
            key(false, true).attribute(CKA_ENCRYPT),
            AttrValue::Value(vec![0])
        );
        assert_eq!(key(false, true).attribute(CKA_EC_POINT), AttrValue::Invalid);
    }

    #[test]
    fn debug_never_shows_the_value() {
        let mut k = key(false, true);
        k.value = Zeroizing::new(vec![0xA7; 32]);
        let mut store = SecretStore::default();
        let shown = format!("{k:?} {:?}", k.attribute(CKA_VALUE));
        store.insert(k);
        let shown_store = format!("{store:?} {store:#?}");
        for text in [&shown, &shown_store] {
            assert!(text.contains("<32 bytes redacted>"), "{text}");
            // Neither as Debug of a byte list (167) nor as hex.
            assert!(
                !text.contains("167") && !text.to_lowercase().contains("a7"),
                "{text}"
            );
        }
    }

    #[test]
    fn store_drops_objects_with_their_session() {
        let mut s = SecretStore::default();
        let a = s.insert(key(false, true));
        let mut other = key(false, true);
        other.session = 2;
        let b = s.insert(other);
        assert_ne!(a, b);
        s.remove_session(1);
        assert!(!s.objects.contains_key(&a) && s.objects.contains_key(&b));
    }

    #[test]
    fn logout_drops_the_private_objects_only() {
        let mut s = SecretStore::default();
        let private = s.insert(key(false, true));
        let mut public = key(false, true);
        public.private = false;
        let public = s.insert(public);
        assert_eq!(
            s.objects[&private].attribute(CKA_PRIVATE),
            AttrValue::Value(vec![1])
        );
        s.remove_private();
        assert!(!s.objects.contains_key(&private) && s.objects.contains_key(&public));
    }
}
