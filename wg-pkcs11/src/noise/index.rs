//! Receiver indices: the random 32-bit numbers that tell a received response, cookie reply or
//! transport message which peer (and which of its sessions) it belongs to.
//!
//! The table holds `Arc<P>` for any `P`: the device's is `IndexTable<Peer>`. It knows nothing of
//! peers, so it sits below them (as the kernel's peerlookup.c holds opaque `wg_peer` pointers).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use parking_lot::RwLock;
use rand_core::{OsRng, RngCore};

/// Indices are drawn from the OS's generator, so nobody can choose keys that collide in the
/// table: a multiplicative spread of the index is hash enough, and much cheaper than SipHash on
/// every received packet.
#[derive(Default)]
struct IndexHasher(u64);

impl Hasher for IndexHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, i: u32) {
        // Fibonacci hashing: spreads the index over all 64 bits (hashbrown uses the top ones too).
        self.0 = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Receiver index -> peer (`P`). Shared by the device's threads; read on every received packet
/// (a read lock, never held across anything slow), written once per handshake.
pub struct IndexTable<P> {
    map: RwLock<HashMap<u32, Arc<P>, BuildHasherDefault<IndexHasher>>>,
}

impl<P> Default for IndexTable<P> {
    fn default() -> Self {
        IndexTable {
            map: RwLock::default(),
        }
    }
}

impl<P> IndexTable<P> {
    pub fn new() -> IndexTable<P> {
        IndexTable::default()
    }

    /// A fresh random index, not zero and not in use, now mapped to `peer`.
    pub(crate) fn allocate(&self, peer: &Arc<P>) -> u32 {
        let mut map = self.map.write();
        loop {
            let index = OsRng.next_u32();
            if index != 0 && !map.contains_key(&index) {
                map.insert(index, Arc::clone(peer));
                return index;
            }
        }
    }

    /// Forget `index` (its handshake or session is gone).
    pub(crate) fn free(&self, index: u32) {
        self.map.write().remove(&index);
    }

    /// The peer that owns `index`, if any.
    pub fn get(&self, index: u32) -> Option<Arc<P>> {
        self.map.read().get(&index).cloned()
    }

    /// How many indices are in use.
    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    /// Whether no index is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands for a peer: the table only keeps and returns it.
    struct Owner;

    #[test]
    fn allocate_get_free() {
        let table = IndexTable::new();
        let peer = Arc::new(Owner);
        let indices: Vec<u32> = (0..1000).map(|_| table.allocate(&peer)).collect();
        assert_eq!(table.len(), 1000, "all distinct");
        assert!(indices.iter().all(|&i| i != 0));
        for &i in &indices {
            assert!(Arc::ptr_eq(&table.get(i).unwrap(), &peer));
        }
        for &i in &indices[..500] {
            table.free(i);
            assert!(table.get(i).is_none());
        }
        assert_eq!(table.len(), 500);
    }
}
