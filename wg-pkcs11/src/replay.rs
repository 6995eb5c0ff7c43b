//! The replay window: which transport counters were already received.
//!
//! The kernel's design (RFC 6479 style): a ring of 8192 bits in 64-bit words. Moving the window
//! forward zeroes whole words, so a jump costs at most 128 word writes; one word is always
//! "redundant" (partly ahead of the highest counter), leaving 8192 - 64 = 8128 usable positions.

/// Bits in the ring.
pub const WINDOW_BITS_TOTAL: u64 = 8192;
const WORD_BITS: u64 = 64;
const WORDS: usize = (WINDOW_BITS_TOTAL / WORD_BITS) as usize;
/// How far behind the highest counter seen a counter may be and still be accepted.
pub const WINDOW_SIZE: u64 = WINDOW_BITS_TOTAL - WORD_BITS;

pub use crate::timers::REJECT_AFTER_MESSAGES;

/// The receive-side counter state of one session (1 KiB + 8 bytes).
#[derive(Clone)]
pub struct ReplayWindow {
    /// One more than the highest counter accepted so far (0: nothing accepted yet).
    next: u64,
    ring: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            next: 0,
            ring: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    pub fn new() -> ReplayWindow {
        ReplayWindow::default()
    }

    /// Whether `counter` is new, marking it as seen if so. Call only after the packet carrying it
    /// authenticated, so a forged counter cannot move the window.
    pub fn check_and_update(&mut self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        // Work with counter + 1 so that `next == 0` means "nothing yet".
        let position = counter + 1;
        if position + WINDOW_SIZE < self.next {
            return false; // too old: fell out of the window
        }
        let word = position / WORD_BITS;
        if position > self.next {
            let current_word = self.next / WORD_BITS;
            let advance = (word - current_word).min(WORDS as u64);
            for i in 1..=advance {
                self.ring[((current_word + i) % WORDS as u64) as usize] = 0;
            }
            self.next = position;
        }
        let slot = &mut self.ring[(word % WORDS as u64) as usize];
        let bit = 1u64 << (position % WORD_BITS);
        let fresh = *slot & bit == 0;
        *slot |= bit;
        fresh
    }

    /// The highest counter accepted so far, if any.
    pub fn highest(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simple model: a set of every counter seen and the highest one.
    struct Model {
        seen: std::collections::HashSet<u64>,
        highest: Option<u64>,
    }

    impl Model {
        fn check(&mut self, c: u64) -> bool {
            if c >= REJECT_AFTER_MESSAGES {
                return false;
            }
            if let Some(h) = self.highest {
                if c + WINDOW_SIZE < h {
                    return false;
                }
            }
            if !self.seen.insert(c) {
                return false;
            }
            self.highest = Some(self.highest.map_or(c, |h| h.max(c)));
            true
        }
    }

    #[test]
    fn in_order_then_duplicates() {
        let mut w = ReplayWindow::new();
        for c in 0..20_000 {
            assert!(w.check_and_update(c), "{c}");
        }
        for c in (20_000 - WINDOW_SIZE)..20_000 {
            assert!(!w.check_and_update(c), "duplicate {c}");
        }
        assert_eq!(w.highest(), Some(19_999));
    }

    #[test]
    fn window_edges_exactly() {
        let mut w = ReplayWindow::new();
        assert!(w.check_and_update(10_000));
        // The oldest counter still accepted is WINDOW_SIZE behind the highest.
        assert!(w.check_and_update(10_000 - WINDOW_SIZE));
        assert!(
            !w.check_and_update(10_000 - WINDOW_SIZE - 1),
            "just too old"
        );
        assert!(!w.check_and_update(0), "far too old");
        assert!(w.check_and_update(9_999));
        assert!(!w.check_and_update(9_999));
    }

    #[test]
    fn out_of_order_within_window() {
        let mut w = ReplayWindow::new();
        let order: Vec<u64> = (0..8000u64).rev().collect();
        for &c in &order {
            assert!(w.check_and_update(c), "{c}");
        }
        for &c in &order {
            assert!(!w.check_and_update(c), "dup {c}");
        }
    }

    #[test]
    fn far_jump_clears_stale_bits() {
        let mut w = ReplayWindow::new();
        for c in 0..100 {
            assert!(w.check_and_update(c));
        }
        // Jump by far more than the ring: every old bit must be forgotten, or counters that map
        // to the same ring slots would be refused as duplicates.
        let base = 1_000_000;
        assert!(w.check_and_update(base));
        for c in (base - WINDOW_SIZE)..base {
            assert!(w.check_and_update(c), "{c} is new");
        }
        // A jump by less than the ring size.
        assert!(w.check_and_update(base + 3000));
        for c in (base + 1)..(base + 3000) {
            assert!(w.check_and_update(c), "{c} is new");
        }
        assert!(!w.check_and_update(base + 2999));
    }

    #[test]
    fn reject_after_messages_and_near_wrap() {
        let mut w = ReplayWindow::new();
        assert!(w.check_and_update(REJECT_AFTER_MESSAGES - 1));
        assert!(!w.check_and_update(REJECT_AFTER_MESSAGES));
        assert!(!w.check_and_update(u64::MAX));
        assert!(!w.check_and_update(REJECT_AFTER_MESSAGES - 1));
        assert!(w.check_and_update(REJECT_AFTER_MESSAGES - 2));
        assert!(!w.check_and_update(0));
    }

    #[test]
    fn matches_model_on_pseudorandom_traffic() {
        // Deterministic xorshift: bursts forward, reordering, duplicates and stale counters.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut w = ReplayWindow::new();
        let mut m = Model {
            seen: Default::default(),
            highest: None,
        };
        let mut top = 0u64;
        for _ in 0..200_000 {
            let r = next();
            let c = match r % 10 {
                0..=5 => {
                    top += r % 4;
                    top
                }
                6 | 7 => top.saturating_sub(r % 9000),
                8 => top.saturating_sub(r % 64),
                _ => {
                    top += r % 20_000;
                    top
                }
            };
            assert_eq!(w.check_and_update(c), m.check(c), "counter {c}");
        }
    }
}
