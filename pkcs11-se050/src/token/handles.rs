//! Token-object handles.
//!
//! A handle is bound to the chip object it was made for: to its object id *and* its public key
//! (which names the private key). A CK_OBJECT_HANDLE is a CK_ULONG, 32 bits on armhf: too narrow
//! to carry a 32-bit object id and more. So the handle is a hash of the object id and the public
//! key (the lowest bit says public), and a table of the process ([`HANDLES`]) holds what each
//! handle was made for: the same key gets the same handle in every process and across C_Finalize
//! (unless two keys' hashes collide: the second then takes the next free number), and a handle is
//! never given to another key in a process. If another process deletes a pair and generates a new
//! one at the same id, the new key gets another handle and the old handles name a key that no
//! longer exists (CKR_OBJECT_HANDLE_INVALID / CKR_KEY_HANDLE_INVALID), never the new key.
//! Which object a handle names now is `ObjectCache::resolve`'s business (objects.rs).

use pkcs11_sys::*;
use std::collections::HashMap;

/// Session objects (derived secrets) get handles from here upwards: the top bit of a CK_ULONG,
/// whatever its width. Token objects get the handles below it.
pub const SESSION_HANDLE_BASE: CK_OBJECT_HANDLE = 1 << (CK_OBJECT_HANDLE::BITS - 1);

/// Which half of a pair a handle names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Half {
    Private,
    Public,
}

/// Every token-object handle given out in this process and what it was made for. One table for
/// the process, not one per ObjectCache: a C_Finalize / C_Initialize makes a new cache, and a
/// handle must keep naming its key, and no other, across it.
static HANDLES: parking_lot::Mutex<HandleTable> =
    parking_lot::Mutex::new(HandleTable { by_handle: None });

struct HandleTable {
    /// handle -> binding and binding -> handle (None until the first handle).
    by_handle: Option<(
        HashMap<CK_OBJECT_HANDLE, Binding>,
        HashMap<Binding, CK_OBJECT_HANDLE>,
    )>,
}

/// Token-object handles are `number << 1 | half` with number in 1..NUMBERS: below the top bit
/// of a CK_ULONG, where the session objects' handles start.
const NUMBERS: u64 = 1 << (CK_OBJECT_HANDLE::BITS - 2);
/// How far past its hash a key's handle may move when other keys hold the numbers there.
const MAX_PROBES: u64 = 1 << 16;

/// FNV-1a (64 bits) of the object id and the public key: the same number in every process and
/// every build of this module, so a key's handle survives a C_Finalize, even a dlclose.
fn key_hash(key_id: u32, public: &[u8; 32]) -> u64 {
    key_id
        .to_be_bytes()
        .iter()
        .chain(public)
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

impl HandleTable {
    /// The handle of `binding`, made on first use. None when every number near its hash is
    /// taken by other keys: never a handle that names another key.
    fn handle(&mut self, binding: Binding) -> Option<CK_OBJECT_HANDLE> {
        let (handles, bound) = self.by_handle.get_or_insert_with(Default::default);
        if let Some(handle) = bound.get(&binding) {
            return Some(*handle);
        }
        let half_bit = match binding.half {
            Half::Private => 0,
            Half::Public => 1,
        };
        let first = key_hash(binding.key_id, &binding.public) % (NUMBERS - 1) + 1;
        for probe in 0..MAX_PROBES {
            let number = (first - 1 + probe) % (NUMBERS - 1) + 1;
            let handle = (number as CK_OBJECT_HANDLE) << 1 | half_bit;
            if let std::collections::hash_map::Entry::Vacant(free) = handles.entry(handle) {
                free.insert(binding);
                bound.insert(binding, handle);
                return Some(handle);
            }
        }
        None
    }

    fn binding(&self, handle: CK_OBJECT_HANDLE) -> Option<Binding> {
        self.by_handle.as_ref()?.0.get(&handle).copied()
    }
}

/// What a token-object handle was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Binding {
    /// The key's object id, or a certificate's file id.
    key_id: u32,
    half: Half,
    /// The key's public key, or the SHA-256 of a certificate's DER value.
    public: [u8; 32],
    /// A certificate (token/certificate.rs), not a key.
    certificate: bool,
}

/// The handle of the certificate in `file` whose DER value is `value`: from the same table as
/// the keys' handles, so that a key's handle never names a certificate (nor the other way), on
/// any CK_ULONG width. None when every number near its hash is taken.
pub fn certificate_handle(file: u32, value: &[u8]) -> Option<CK_OBJECT_HANDLE> {
    use sha2::Digest;
    HANDLES.lock().handle(Binding {
        key_id: file,
        half: Half::Public,
        public: sha2::Sha256::digest(value).into(),
        certificate: true,
    })
}

/// The certificate file a handle was made for, and the SHA-256 of the value it named; None for
/// a key's handle or an unknown one.
pub fn certificate_binding(handle: CK_OBJECT_HANDLE) -> Option<(u32, [u8; 32])> {
    let binding = HANDLES.lock().binding(handle)?;
    binding
        .certificate
        .then_some((binding.key_id, binding.public))
}

/// Which half a token-object handle names; None for anything else (session objects, 0). Which
/// object it names is `ObjectCache::resolve` (objects.rs)'s business.
pub fn split_handle(handle: CK_OBJECT_HANDLE) -> Option<Half> {
    if handle >> 1 == 0 || handle >= SESSION_HANDLE_BASE {
        return None;
    }
    match handle & 1 {
        0 => Some(Half::Private),
        _ => Some(Half::Public),
    }
}

/// The handle of one half of the key pair at `key_id` whose public key is `public`.
pub fn key_handle(key_id: u32, half: Half, public: [u8; 32]) -> Option<CK_OBJECT_HANDLE> {
    HANDLES.lock().handle(Binding {
        key_id,
        half,
        public,
        certificate: false,
    })
}

/// The object id, half and public key a key's handle was made for; None for a certificate's
/// handle or an unknown one.
pub fn key_binding(handle: CK_OBJECT_HANDLE) -> Option<(u32, Half, [u8; 32])> {
    let binding = HANDLES.lock().binding(handle)?;
    (!binding.certificate).then_some((binding.key_id, binding.half, binding.public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_fit_a_ulong_survive_a_new_table_and_never_change_key() {
        let a = Binding {
            key_id: 0x5000_0001,
            half: Half::Private,
            public: [1; 32],
            certificate: false,
        };
        let b = Binding {
            key_id: 0x5000_0002,
            public: [2; 32],
            ..a
        };
        let mut table = HandleTable { by_handle: None };
        let handle_a = table.handle(a).unwrap();
        // The same key, the same handle: in another table (a new process, after a dlclose).
        assert_eq!(HandleTable { by_handle: None }.handle(a), Some(handle_a));
        assert!(handle_a > 1 && handle_a < SESSION_HANDLE_BASE);
        assert_eq!(split_handle(handle_a), Some(Half::Private));
        // b's own number already names another key (a collision): b moves on, a is untouched.
        let natural_b =
            ((key_hash(b.key_id, &b.public) % (NUMBERS - 1) + 1) as CK_OBJECT_HANDLE) << 1;
        let mut table = HandleTable { by_handle: None };
        let (handles, bound) = table.by_handle.get_or_insert_with(Default::default);
        handles.insert(natural_b, a);
        bound.insert(a, natural_b);
        let handle_b = table.handle(b).unwrap();
        assert_ne!(handle_b, natural_b);
        assert_eq!(table.binding(natural_b), Some(a));
        assert_eq!(table.binding(handle_b), Some(b));
        assert_eq!(table.handle(b), Some(handle_b));
    }
}
