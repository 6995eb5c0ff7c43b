//! Initiations the handshake worker already spent a token operation on, remembered by their
//! ephemeral public key, so that a replay costs nothing.
//!
//! A captured initiation replayed later is refused by its timestamp (not newer than the last one
//! accepted), but only after the responder's static-key DH (es), which is what decrypts the
//! sender's identity: anyone who once saw an initiation could make the chip work at the
//! under-load rate forever. A genuine initiator makes a fresh ephemeral key for every initiation,
//! retries included, so an ephemeral seen before is a replay (or a duplicate in the network).
//! Owned by the handshake worker alone: no lock.

use std::collections::{HashSet, VecDeque};

/// Ephemeral keys remembered. At the under-load rate this covers minutes of handshakes; an
/// initiation older than that is still refused by its timestamp, at the cost of one DH.
pub(crate) const CAPACITY: usize = 8192;

pub(crate) struct ConsumedInitiations {
    seen: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl ConsumedInitiations {
    pub(crate) fn new() -> ConsumedInitiations {
        ConsumedInitiations {
            seen: HashSet::with_capacity(CAPACITY),
            order: VecDeque::with_capacity(CAPACITY),
        }
    }

    /// Remember `ephemeral`; false if it was already there (a replay: do not process it).
    pub(crate) fn first_time(&mut self, ephemeral: &[u8; 32]) -> bool {
        if !self.seen.insert(*ephemeral) {
            return false;
        }
        if self.order.len() == CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.order.push_back(*ephemeral);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_le_bytes());
        k
    }

    #[test]
    fn a_repeated_ephemeral_is_a_replay() {
        let mut c = ConsumedInitiations::new();
        assert!(c.first_time(&key(1)));
        assert!(c.first_time(&key(2)));
        assert!(!c.first_time(&key(1)));
        assert!(!c.first_time(&key(2)));
    }

    #[test]
    fn the_oldest_is_forgotten_past_capacity() {
        let mut c = ConsumedInitiations::new();
        for i in 0..CAPACITY {
            assert!(c.first_time(&key(i)));
        }
        assert!(!c.first_time(&key(0)));
        assert!(c.first_time(&key(CAPACITY)));
        // key(0) was pushed out by the newest, and is new again.
        assert!(c.first_time(&key(0)));
        assert!(!c.first_time(&key(CAPACITY)));
        assert_eq!(c.seen.len(), CAPACITY);
        assert_eq!(c.order.len(), CAPACITY);
    }
}
