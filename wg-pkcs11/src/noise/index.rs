//! Receiver indices: the random 32-bit numbers that tell a received response, cookie reply or
//! transport message which peer (and which of its sessions) it belongs to.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use parking_lot::RwLock;
use rand_core::{OsRng, RngCore};

use crate::peer::Peer;

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

/// Receiver index -> peer. Shared by the device's threads; read on every received packet
/// (a read lock, never held across anything slow), written once per handshake.
#[derive(Default)]
pub struct IndexTable {
    map: RwLock<HashMap<u32, Arc<Peer>, BuildHasherDefault<IndexHasher>>>,
}

impl IndexTable {
    pub fn new() -> IndexTable {
        IndexTable::default()
    }

    /// A fresh random index, not zero and not in use, now mapped to `peer`.
    pub(crate) fn allocate(&self, peer: &Arc<Peer>) -> u32 {
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
    pub fn get(&self, index: u32) -> Option<Arc<Peer>> {
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
    use std::time::Instant;

    #[test]
    fn allocate_get_free() {
        let table = IndexTable::new();
        let peer = Peer::new([1; 32], None, None, 0, Instant::now());
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
