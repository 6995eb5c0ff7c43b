//! Initiations the handshake worker already spent a token operation on and that authenticated,
//! remembered by their ephemeral public key, so that a replay costs nothing.
//!
//! A captured initiation replayed later is refused by its timestamp (not newer than the last one
//! accepted), but only after the responder's static-key DH (es), which is what decrypts the
//! sender's identity: anyone who once saw an initiation could make the chip work at the
//! under-load rate forever. A genuine initiator makes a fresh ephemeral key for every initiation,
//! retries included, so an ephemeral seen before is a replay (or a duplicate in the network).
//!
//! An ephemeral is remembered only once its initiation authenticated (the encrypted timestamp
//! opened, whatever it said): the ephemeral travels in clear, so a copy with the same ephemeral
//! and garbage after it, handled first, would otherwise make the genuine initiation a "replay"
//! (issue 20). Garbage is never remembered; each distinct garbage message costs one DH, which
//! the queue's waste budget bounds (cookies). Owned by the handshake worker alone: no lock.

use std::collections::{HashSet, VecDeque};

/// Ephemeral keys remembered. At the under-load rate this covers minutes of handshakes; an
/// initiation older than that is still refused by its timestamp, at the cost of one DH.
pub(crate) const CAPACITY: usize = 8192;

/// An ephemeral key is remembered by its first 8 bytes. A replay repeats all 32, so it is always
/// caught; a genuine initiation is refused by mistake only if its fresh random key shares 64
/// bits with one of the CAPACITY remembered ones (odds 2^-51), and nobody can aim for that, since
/// nobody knows an ephemeral before its initiation is sent. A quarter of the memory of whole keys.
type Fingerprint = u64;

fn fingerprint(ephemeral: &[u8; 32]) -> Fingerprint {
    u64::from_le_bytes(ephemeral[..8].try_into().expect("8 of 32 bytes"))
}

pub(crate) struct ConsumedInitiations {
    /// Sized for twice CAPACITY, so that at most a quarter of its slots are live: should
    /// deleted entries ever use up its free slots, hashbrown rehashes them in place (it grows
    /// only a table more than half full), and its memory stays what `prefault` touched.
    seen: HashSet<Fingerprint>,
    order: VecDeque<Fingerprint>,
}

impl ConsumedInitiations {
    pub(crate) fn new() -> ConsumedInitiations {
        let mut consumed = ConsumedInitiations {
            seen: HashSet::with_capacity(2 * CAPACITY),
            order: VecDeque::with_capacity(CAPACITY),
        };
        consumed.prefault();
        consumed
    }

    /// Writes every page of both tables once, then empties them. The allocations are made at
    /// full size up front, but the kernel maps a page only when it is first written, and the
    /// hash table's entries land on random pages: the resident size then crept up by about
    /// 0.5 MiB over the first ten minutes of rekeys (the soak measured it), which hides a real
    /// leak behind a slope that is not one. Filled once and cleared, the tables keep their pages
    /// and their capacity, and the daemon's memory is what it will be from its first minute.
    fn prefault(&mut self) {
        for filler in 0..2 * CAPACITY as Fingerprint {
            self.seen.insert(filler);
        }
        for filler in 0..CAPACITY as Fingerprint {
            self.order.push_back(filler);
        }
        self.seen.clear();
        self.order.clear();
    }

    /// Whether an authenticated initiation with `ephemeral` was consumed before (a replay: do
    /// not process it).
    pub(crate) fn contains(&self, ephemeral: &[u8; 32]) -> bool {
        self.seen.contains(&fingerprint(ephemeral))
    }

    /// Remember the ephemeral of an initiation that authenticated; false if it was already there.
    pub(crate) fn remember(&mut self, ephemeral: &[u8; 32]) -> bool {
        let ephemeral = fingerprint(ephemeral);
        if !self.seen.insert(ephemeral) {
            return false;
        }
        if self.order.len() == CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        self.order.push_back(ephemeral);
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
    fn prefaulting_leaves_it_empty_and_never_regrows() {
        let mut c = ConsumedInitiations::new();
        assert!(c.seen.is_empty() && c.order.is_empty());
        // The fillers are forgotten: the same values are new ephemerals, not replays.
        assert!(c.remember(&key(0)));
        let (set_capacity, ring_capacity) = (c.seen.capacity(), c.order.capacity());
        // Enough turnover for the table to fill its slots with deleted entries several times:
        // it must rehash them in place, never grow (a grown table is a new allocation, and
        // resident memory that creeps up during a long run).
        for i in 1..CAPACITY * 8 {
            c.remember(&key(i));
            assert!(
                c.seen.capacity() <= set_capacity,
                "grew after {i} initiations"
            );
        }
        assert_eq!(c.order.capacity(), ring_capacity);
    }

    #[test]
    fn a_repeated_ephemeral_is_a_replay() {
        let mut c = ConsumedInitiations::new();
        assert!(c.remember(&key(1)));
        assert!(c.remember(&key(2)));
        assert!(!c.remember(&key(1)));
        assert!(!c.remember(&key(2)));
        assert!(c.contains(&key(1)) && !c.contains(&key(3)));
        assert!(!c.contains(&key(3)), "asking does not remember");
    }

    #[test]
    fn the_oldest_is_forgotten_past_capacity() {
        let mut c = ConsumedInitiations::new();
        for i in 0..CAPACITY {
            assert!(c.remember(&key(i)));
        }
        assert!(!c.remember(&key(0)));
        assert!(c.remember(&key(CAPACITY)));
        // key(0) was pushed out by the newest, and is new again.
        assert!(c.remember(&key(0)));
        assert!(!c.remember(&key(CAPACITY)));
        assert_eq!(c.seen.len(), CAPACITY);
        assert_eq!(c.order.len(), CAPACITY);
    }
}
