//! Device-wide counters, readable at any time (for `wg show`, logs and tests).
//! Relaxed atomics: each is an independent tally, incremented once per batch
//! or per event, never per byte.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a packet was dropped. Every drop is counted under exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a WireGuard message: wrong type, reserved bytes, or length.
    Malformed,
    /// An initiation or response whose mac1 is wrong (never answered).
    Mac1,
    /// Under load, an initiation or response without a valid mac2 (answered with a cookie).
    CookieRequired,
    /// A response, cookie reply or transport for a receiver index we do not know.
    UnknownIndex,
    /// A transport packet that failed authentication or the replay window, or had no live key.
    Decrypt,
    /// A handshake message the protocol core rejected (bad AEAD, replayed timestamp, unknown peer...).
    Handshake,
    /// A decrypted packet whose source the sending peer is not allowed to use.
    AllowedIps,
    /// A decrypted packet that is not IPv4/IPv6 or is shorter than its header says.
    InnerPacket,
    /// A packet from the TUN with no peer routing its destination.
    NoRoute,
    /// A packet for a peer with no known endpoint.
    NoEndpoint,
    /// A packet from the TUN the offload code could not split.
    Offload,
    /// The handshake queue is full.
    QueueFull,
    /// Under load, a source sent handshake messages faster than 20 per second.
    RateLimited,
    /// The per-peer queue of packets waiting for a session is full.
    StagedOverflow,
    /// The socket or TUN refused a write.
    SendError,
    /// Staged packets thrown away when the handshake attempts gave up.
    HandshakeFailed,
    /// An initiation not answered because its sender has replaced it: it waited longer than
    /// REKEY_TIMEOUT, or a newer one from the same source took its place in the queue.
    Stale,
    /// An initiation whose ephemeral key was already consumed (a replay): no token operation.
    Replayed,
    /// An initiation with a small-order ephemeral key: refused before any token operation.
    LowOrder,
}

impl DropReason {
    pub const ALL: [DropReason; 19] = [
        DropReason::Malformed,
        DropReason::Mac1,
        DropReason::CookieRequired,
        DropReason::UnknownIndex,
        DropReason::Decrypt,
        DropReason::Handshake,
        DropReason::AllowedIps,
        DropReason::InnerPacket,
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::Offload,
        DropReason::QueueFull,
        DropReason::RateLimited,
        DropReason::StagedOverflow,
        DropReason::SendError,
        DropReason::HandshakeFailed,
        DropReason::Stale,
        DropReason::Replayed,
        DropReason::LowOrder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Mac1 => "mac1",
            DropReason::CookieRequired => "cookie_required",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::Decrypt => "decrypt",
            DropReason::Handshake => "handshake",
            DropReason::AllowedIps => "allowed_ips",
            DropReason::InnerPacket => "inner_packet",
            DropReason::NoRoute => "no_route",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::Offload => "offload",
            DropReason::QueueFull => "queue_full",
            DropReason::RateLimited => "rate_limited",
            DropReason::StagedOverflow => "staged_overflow",
            DropReason::SendError => "send_error",
            DropReason::HandshakeFailed => "handshake_failed",
            DropReason::Stale => "stale_initiation",
            DropReason::Replayed => "replayed_initiation",
            DropReason::LowOrder => "low_order_key",
        }
    }
}

#[derive(Default)]
pub struct Counters {
    drops: [AtomicU64; DropReason::ALL.len()],
    /// Static-key Diffie-Hellman operations (token operations) and their total time.
    pub token_operations: AtomicU64,
    pub token_failures: AtomicU64,
    pub token_nanos: AtomicU64,
    pub initiations_sent: AtomicU64,
    pub responses_sent: AtomicU64,
    /// Handshakes completed as initiator (a valid response consumed).
    pub handshakes_completed: AtomicU64,
    /// Handshakes completed as responder (the initiator's first message confirmed the session).
    pub sessions_confirmed: AtomicU64,
    pub cookie_replies_sent: AtomicU64,
    pub keepalives_sent: AtomicU64,
    pub rx_packets: AtomicU64,
    pub tx_packets: AtomicU64,
    /// A packet loop panicked and was restarted (a bug; should stay 0).
    pub loop_restarts: AtomicU64,
    /// Transport messages a crypto helper sealed or opened beside the loop thread
    /// (crypto_pool): 0 on one core.
    pub sealed_on_helper: AtomicU64,
    pub opened_on_helper: AtomicU64,
}

/// A copy of all counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub drops: Vec<(DropReason, u64)>,
    pub token_operations: u64,
    pub token_failures: u64,
    pub token_nanos: u64,
    pub initiations_sent: u64,
    pub responses_sent: u64,
    pub handshakes_completed: u64,
    pub sessions_confirmed: u64,
    pub cookie_replies_sent: u64,
    pub keepalives_sent: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub loop_restarts: u64,
    pub sealed_on_helper: u64,
    pub opened_on_helper: u64,
}

impl CounterSnapshot {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops
            .iter()
            .find(|(r, _)| *r == reason)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().map(|(_, n)| n).sum()
    }
}

impl CounterSnapshot {
    /// Handshakes completed in either role.
    pub fn handshakes(&self) -> u64 {
        self.handshakes_completed + self.sessions_confirmed
    }

    /// One info line on the handshake path since `before`, or None when nothing happened
    /// there: handshakes completed, initiations not answered (stale, replayed, low-order),
    /// cookie replies sent under load, and the chip operations spent.
    pub fn handshake_summary(&self, before: &CounterSnapshot) -> Option<String> {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        let drop = |r: DropReason| d(self.dropped(r), before.dropped(r));
        let handshakes = d(self.handshakes(), before.handshakes());
        let (stale, replayed, low) = (
            drop(DropReason::Stale),
            drop(DropReason::Replayed),
            drop(DropReason::LowOrder),
        );
        let cookies = d(self.cookie_replies_sent, before.cookie_replies_sent);
        let chip = d(self.token_operations, before.token_operations);
        let failed = d(self.token_failures, before.token_failures);
        if handshakes + stale + replayed + low + cookies + chip == 0 {
            return None;
        }
        let per = if handshakes > 0 {
            format!(" ({:.2} per handshake)", chip as f64 / handshakes as f64)
        } else {
            String::new()
        };
        Some(format!(
            "handshakes completed: {handshakes}; initiations dropped: {stale} stale, {replayed} \
             replayed, {low} low-order; cookie replies sent under load: {cookies}; chip \
             operations: {chip}{per}, {failed} failed"
        ))
    }
}

impl Counters {
    pub fn discard(&self, reason: DropReason) {
        self.discard_n(reason, 1);
    }

    pub fn discard_n(&self, reason: DropReason, n: u64) {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.drops[i].fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            drops: DropReason::ALL
                .iter()
                .zip(&self.drops)
                .map(|(r, n)| (*r, n.load(Relaxed)))
                .collect(),
            token_operations: self.token_operations.load(Relaxed),
            token_failures: self.token_failures.load(Relaxed),
            token_nanos: self.token_nanos.load(Relaxed),
            initiations_sent: self.initiations_sent.load(Relaxed),
            responses_sent: self.responses_sent.load(Relaxed),
            handshakes_completed: self.handshakes_completed.load(Relaxed),
            sessions_confirmed: self.sessions_confirmed.load(Relaxed),
            cookie_replies_sent: self.cookie_replies_sent.load(Relaxed),
            keepalives_sent: self.keepalives_sent.load(Relaxed),
            rx_packets: self.rx_packets.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            loop_restarts: self.loop_restarts.load(Relaxed),
            sealed_on_helper: self.sealed_on_helper.load(Relaxed),
            opened_on_helper: self.opened_on_helper.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_counts_separately() {
        let c = Counters::default();
        c.discard(DropReason::Mac1);
        c.discard_n(DropReason::SendError, 3);
        let s = c.snapshot();
        assert_eq!(s.dropped(DropReason::Mac1), 1);
        assert_eq!(s.dropped(DropReason::SendError), 3);
        assert_eq!(s.dropped(DropReason::Malformed), 0);
        assert_eq!(s.dropped_total(), 4);
    }

    #[test]
    fn the_summary_counts_what_happened_since_the_last_one() {
        let c = Counters::default();
        let quiet = c.snapshot();
        assert_eq!(
            c.snapshot().handshake_summary(&quiet),
            None,
            "nothing to say"
        );
        c.handshakes_completed.fetch_add(1, Relaxed);
        c.sessions_confirmed.fetch_add(3, Relaxed);
        c.token_operations.fetch_add(6, Relaxed);
        c.cookie_replies_sent.fetch_add(7, Relaxed);
        c.discard_n(DropReason::Stale, 2);
        c.discard(DropReason::Replayed);
        c.discard_n(DropReason::LowOrder, 5);
        let busy = c.snapshot();
        assert_eq!(
            busy.handshake_summary(&quiet).unwrap(),
            "handshakes completed: 4; initiations dropped: 2 stale, 1 replayed, 5 low-order; \
             cookie replies sent under load: 7; chip operations: 6 (1.50 per handshake), 0 failed"
        );
        c.token_operations.fetch_add(1, Relaxed);
        assert_eq!(
            c.snapshot().handshake_summary(&busy).unwrap(),
            "handshakes completed: 0; initiations dropped: 0 stale, 0 replayed, 0 low-order; \
             cookie replies sent under load: 0; chip operations: 1, 0 failed"
        );
    }
}
