//! Receiver indices: the random 32-bit numbers that tell a received response, cookie reply or
//! transport message which peer (and which of its sessions) it belongs to.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use rand_core::{OsRng, RngCore};

use crate::peer::Peer;

/// Receiver index -> peer. Shared by the device's threads; read on every received packet
/// (a read lock, never held across anything slow), written once per handshake.
#[derive(Default)]
pub struct IndexTable {
    map: RwLock<HashMap<u32, Arc<Peer>>>,
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
