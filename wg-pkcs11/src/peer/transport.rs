//! A peer on the packet path: the session to send with, the session a receiver index names,
//! and what an authenticated message sent or received does (a responder's session confirmed,
//! roaming, byte counts, timers, a rekey asked for at most once per REKEY_TIMEOUT).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Peer;
use crate::keypair::Keypair;
use crate::timers::REKEY_TIMEOUT;

/// What an authenticated transport message did (`Peer::receive_transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Start a handshake: the session is old (already rate-limited by `wants_handshake`).
    pub rekey: bool,
    /// The message confirmed a responder session: a handshake completed.
    pub confirmed: bool,
}

impl Peer {
    /// Packet path: the session to send with, if one is usable. `None`: queue the packet and
    /// ask the handshake worker for an initiation (`wants_handshake` tells whether to ask now).
    pub fn current_keypair(&self, now: Instant) -> Option<Arc<Keypair>> {
        self.keypairs
            .read()
            .current
            .as_ref()
            .filter(|k| k.can_send(now))
            .cloned()
    }

    /// Packet path: the session a received transport message's receiver index names.
    pub fn keypair_for_index(&self, index: u32) -> Option<Arc<Keypair>> {
        let kp = self.keypairs.read();
        for k in [&kp.current, &kp.previous, &kp.next].into_iter().flatten() {
            if k.local_index() == index {
                return Some(Arc::clone(k));
            }
        }
        None
    }

    fn ms_since_created(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.created).as_millis() as u64 + 1
    }

    /// Whether the packet path should ask the handshake worker for an initiation now: at most
    /// once per REKEY_TIMEOUT, so a busy tunnel does not flood the worker with requests.
    pub fn wants_handshake(&self, now: Instant) -> bool {
        let now_ms = self.ms_since_created(now);
        let last = self.handshake_requested_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < REKEY_TIMEOUT.as_millis() as u64 {
            return false;
        }
        self.handshake_requested_ms
            .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// Packet path, after `keypair` decrypted (and replay-checked) a message of `wire_len` bytes
    /// from `src`: confirms a responder's `next` session, follows the peer to `src` (roaming),
    /// counts bytes, feeds the timers. Returns true when a handshake should be started (keep the
    /// key fresh; already rate-limited by `wants_handshake`). May be called once per batch with
    /// the batch's total length, `is_keepalive` false if any message carried data.
    pub fn received_transport(
        &self,
        keypair: &Arc<Keypair>,
        src: SocketAddr,
        wire_len: usize,
        is_keepalive: bool,
        now: Instant,
    ) -> bool {
        self.receive_transport(keypair, src, wire_len, is_keepalive, now)
            .rekey
    }

    /// `received_transport`, also telling whether this message completed a handshake (the
    /// responder's `next` session confirmed), for the device's counters.
    pub fn receive_transport(
        &self,
        keypair: &Arc<Keypair>,
        src: SocketAddr,
        wire_len: usize,
        is_keepalive: bool,
        now: Instant,
    ) -> Received {
        let confirmed = !keypair.is_initiator()
            && self.has_next.load(Ordering::Acquire)
            && self.confirm_next(keypair);
        self.set_endpoint_if_changed(src);
        self.rx_bytes.fetch_add(wire_len as u64, Ordering::Relaxed);
        {
            let mut t = self.timers.lock();
            if confirmed {
                t.handshake_complete();
            }
            t.any_authenticated_packet_received();
            t.any_authenticated_packet_traversal(now);
            if !is_keepalive {
                t.data_received(now);
            }
        }
        if confirmed {
            *self.last_handshake.lock() = Some(SystemTime::now());
        }
        // Only an old initiator session can be stale; look at `current` only then.
        let stale = keypair.needs_rekey_on_receive(now)
            && self
                .keypairs
                .read()
                .current
                .as_ref()
                .is_some_and(|k| k.needs_rekey_on_receive(now));
        let rekey = stale
            && !self.sent_lastminute_handshake.swap(true, Ordering::Relaxed)
            && self.wants_handshake(now);
        Received { rekey, confirmed }
    }

    /// The responder's first message with its `next` session: it becomes current.
    fn confirm_next(&self, keypair: &Arc<Keypair>) -> bool {
        {
            let kp = self.keypairs.read();
            if !kp.next.as_ref().is_some_and(|n| Arc::ptr_eq(n, keypair)) {
                return false;
            }
        }
        let mut kp = self.keypairs.write();
        if !kp.next.as_ref().is_some_and(|n| Arc::ptr_eq(n, keypair)) {
            return false; // another thread confirmed it first
        }
        let next = kp.next.take();
        self.has_next.store(false, Ordering::Release);
        let current = std::mem::replace(&mut kp.current, next);
        // The packet path has no index table: the old `previous` index is freed by the next
        // handshake-worker call (`keypair_for_index` no longer finds it meanwhile).
        if let Some(old) = std::mem::replace(&mut kp.previous, current) {
            old.invalidate();
            self.retired_indices.lock().push(old.local_index());
        }
        self.sent_lastminute_handshake
            .store(false, Ordering::Relaxed);
        true
    }

    /// Packet path, after sending `wire_len` bytes with `keypair` (once per batch is fine).
    /// Returns true when a handshake should be started (REKEY_AFTER_MESSAGES, or the
    /// initiator's REKEY_AFTER_TIME; rate-limited by `wants_handshake`).
    pub fn sent_transport(
        &self,
        keypair: &Keypair,
        wire_len: usize,
        is_keepalive: bool,
        now: Instant,
    ) -> bool {
        self.tx_bytes.fetch_add(wire_len as u64, Ordering::Relaxed);
        {
            let mut t = self.timers.lock();
            t.any_authenticated_packet_traversal(now);
            t.any_authenticated_packet_sent();
            if !is_keepalive {
                t.data_sent(now);
            }
        }
        keypair.needs_rekey_on_send(now) && self.wants_handshake(now)
    }
}
