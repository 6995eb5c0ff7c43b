//! What the handshake path did since the device started, as `wg-pkcs11 show` reports it
//! (issue 15, "say what happens"): handshakes completed, initiations dropped as stale or
//! replayed (and low-order), cookie replies sent under load, static-key (chip) operations spent.
//!
//! It travels over UAPI `get` as `wg_pkcs11_NAME=VALUE` device keys, like the key's health
//! (`key::health`); `wg` ignores them. `to_pairs` / `from_pairs` are the two ends.

use super::counters::{CounterSnapshot, DropReason};

/// The handshake path's totals since the device started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeStats {
    /// In either role: a response consumed, or a responder session confirmed.
    pub handshakes_completed: u64,
    /// Initiations not answered because their sender had replaced them (waited longer than
    /// REKEY_TIMEOUT, or a newer one from the same source took their place).
    pub initiations_stale: u64,
    /// Initiations whose ephemeral key was consumed before: no token operation.
    pub initiations_replayed: u64,
    /// Initiations with a small-order ephemeral key: no token operation.
    pub initiations_low_order: u64,
    /// Cookie replies sent instead of spending a token operation (under load).
    pub cookie_replies_sent: u64,
    /// Static-key Diffie-Hellman operations: chip operations for a token key.
    pub chip_operations: u64,
    pub chip_failures: u64,
}

/// (UAPI name without the `wg_pkcs11_` prefix, field) for every count.
const NAMES: [&str; 7] = [
    "handshakes_completed",
    "initiations_stale",
    "initiations_replayed",
    "initiations_low_order",
    "cookie_replies_sent",
    "chip_operations",
    "chip_operation_failures",
];

impl HandshakeStats {
    pub fn from_snapshot(s: &CounterSnapshot) -> HandshakeStats {
        HandshakeStats {
            handshakes_completed: s.handshakes(),
            initiations_stale: s.dropped(DropReason::Stale),
            initiations_replayed: s.dropped(DropReason::Replayed),
            initiations_low_order: s.dropped(DropReason::LowOrder),
            cookie_replies_sent: s.cookie_replies_sent,
            chip_operations: s.token_operations,
            chip_failures: s.token_failures,
        }
    }

    fn values(&self) -> [u64; 7] {
        [
            self.handshakes_completed,
            self.initiations_stale,
            self.initiations_replayed,
            self.initiations_low_order,
            self.cookie_replies_sent,
            self.chip_operations,
            self.chip_failures,
        ]
    }

    fn field(&mut self, name: &str) -> Option<&mut u64> {
        Some(match name {
            "handshakes_completed" => &mut self.handshakes_completed,
            "initiations_stale" => &mut self.initiations_stale,
            "initiations_replayed" => &mut self.initiations_replayed,
            "initiations_low_order" => &mut self.initiations_low_order,
            "cookie_replies_sent" => &mut self.cookie_replies_sent,
            "chip_operations" => &mut self.chip_operations,
            "chip_operation_failures" => &mut self.chip_failures,
            _ => return None,
        })
    }

    /// The UAPI pairs (names without the prefix).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        NAMES
            .iter()
            .zip(self.values())
            .map(|(n, v)| (*n, v.to_string()))
            .collect()
    }

    /// Back from the pairs; `None` when the daemon sent none of them (another implementation,
    /// or an older wg-pkcs11). A count that is missing or not a number reads as 0.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<HandshakeStats> {
        let mut stats = HandshakeStats::default();
        let mut any = false;
        for (name, value) in pairs {
            if let Some(field) = stats.field(name) {
                *field = value.parse().unwrap_or_default();
                any = true;
            }
        }
        any.then_some(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::counters::Counters;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn every_count_comes_from_its_counter_and_survives_the_pairs() {
        let c = Counters::default();
        c.handshakes_completed.fetch_add(2, Relaxed);
        c.sessions_confirmed.fetch_add(3, Relaxed);
        c.discard_n(DropReason::Stale, 4);
        c.discard_n(DropReason::Replayed, 5);
        c.discard_n(DropReason::LowOrder, 6);
        c.cookie_replies_sent.fetch_add(7, Relaxed);
        c.token_operations.fetch_add(8, Relaxed);
        c.token_failures.fetch_add(9, Relaxed);
        let stats = HandshakeStats::from_snapshot(&c.snapshot());
        assert_eq!(
            stats,
            HandshakeStats {
                handshakes_completed: 5,
                initiations_stale: 4,
                initiations_replayed: 5,
                initiations_low_order: 6,
                cookie_replies_sent: 7,
                chip_operations: 8,
                chip_failures: 9,
            }
        );
        let pairs = stats.to_pairs();
        assert_eq!(pairs.len(), NAMES.len());
        let back = HandshakeStats::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        assert_eq!(back, Some(stats));
        // Other keys (the key's health) are not ours; none of ours: nothing to show.
        assert_eq!(HandshakeStats::from_pairs([("ecdh_count", "3")]), None);
    }
}
