//! A peer's part of the handshake, on the handshake worker: initiations made, initiations
//! answered, responses and cookie replies consumed, and the cached static-static DH (the one
//! per-peer static-key operation). New sessions are installed here.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use zeroize::Zeroizing;

use super::{retire, Peer};
use crate::keypair::Keypair;
use crate::noise::handshake;
use crate::noise::{
    HandshakeError, Identity, IndexTable, ReceivedInitiation, Timestamp, INITIATION_LEN,
    RESPONSE_LEN,
};
use crate::secret_mem::Secret32;
use crate::timers::REKEY_TIMEOUT;

/// Initiations from one peer are consumed at most this often (the kernel's
/// INITIATIONS_PER_SECOND = 50): a replayed-but-newer flood cannot churn sessions.
pub(super) const MIN_INITIATION_INTERVAL: Duration = Duration::from_millis(20);

impl Peer {
    /// The cached static-static DH, computed with the static key the first time (handshake
    /// worker only). The device may call this once when the peer is added, to have the one
    /// per-peer token operation done before the first handshake.
    pub fn precompute_static_static(&self, id: &Identity) -> Result<(), HandshakeError> {
        self.static_static(id).map(|_| ())
    }

    fn static_static(&self, id: &Identity) -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
        if let Some(ss) = self.static_static.lock().as_ref() {
            return Ok(Zeroizing::new(*ss.expose()));
        }
        // The token works without the lock held: `clear` never waits for it.
        let ss = id.key().diffie_hellman(&self.public)?;
        let mut slot = self.static_static.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(HandshakeError::PeerRemoved);
        }
        *slot = Some(Secret32::new(&ss));
        Ok(ss)
    }

    fn record_sent_handshake_message(&self, len: usize, now: Instant) {
        self.tx_bytes.fetch_add(len as u64, Ordering::Relaxed);
        let mut t = self.timers.lock();
        t.any_authenticated_packet_traversal(now);
        t.any_authenticated_packet_sent();
    }

    /// Handshake worker: a new initiation to this peer (mac1/mac2 included). `is_retry` is
    /// `TimerActions::initiation_is_retry` (false for initiations the packet path asked for).
    /// Refused with `RateLimited` within REKEY_TIMEOUT of the previous one. No static-key
    /// operation, except the first time ever for this peer (the cached `ss`).
    pub fn create_initiation(
        self: &Arc<Self>,
        id: &Identity,
        table: &IndexTable<Peer>,
        is_retry: bool,
        now: Instant,
    ) -> Result<[u8; INITIATION_LEN], HandshakeError> {
        self.free_retired(table);
        {
            // The spacing is checked, and this attempt counted, before any token operation (as
            // the kernel sets last_sent_handshake before creating): a peer whose static DH
            // fails costs at most one token operation per REKEY_TIMEOUT, however many packets
            // ask for it.
            let mut hs = self.handshake.lock();
            if let Some(last) = hs.last_initiation_sent {
                if now.saturating_duration_since(last) < REKEY_TIMEOUT {
                    return Err(HandshakeError::RateLimited);
                }
            }
            hs.last_initiation_sent = Some(now);
        }
        let ss = self.static_static(id)?;
        let mut hs = self.handshake.lock();
        if let Some(old) = hs.pending.take() {
            table.free(old.local_index);
        }
        let local_index = table.allocate(self);
        let mut msg = [0u8; INITIATION_LEN];
        let timestamp = match hs.last_timestamp_sent {
            Some(last) => Timestamp::now().max(last.successor()),
            None => Timestamp::now(),
        };
        hs.last_timestamp_sent = Some(timestamp);
        let pending = match handshake::create_initiation(
            &id.public_key(),
            &self.public,
            &ss,
            local_index,
            timestamp,
            &mut msg,
        ) {
            Ok(p) => p,
            Err(e) => {
                table.free(local_index);
                return Err(e);
            }
        };
        self.cookie.lock().add_macs(&mut msg, now);
        hs.pending = Some(pending);
        hs.last_initiation_sent = Some(now);
        drop(hs);
        self.record_sent_handshake_message(msg.len(), now);
        self.timers.lock().handshake_initiated(now, is_retry);
        Ok(msg)
    }

    /// Handshake worker: answer an initiation that `noise::consume_initiation` attributed to this
    /// peer (the caller looked the peer up by `received.initiator_public()`). Checks the
    /// timestamp, derives the new session (kept as `next` until the initiator's first transport
    /// message confirms it), and returns the response to send to `src`, which becomes the
    /// endpoint. No static-key operation except the first time for this peer (`ss`).
    pub fn accept_initiation(
        self: &Arc<Self>,
        id: &Identity,
        table: &IndexTable<Peer>,
        received: ReceivedInitiation,
        src: SocketAddr,
        now: Instant,
    ) -> Result<[u8; RESPONSE_LEN], HandshakeError> {
        self.free_retired(table);
        if received.initiator_public() != self.public {
            return Err(HandshakeError::UnknownPeer);
        }
        let ss = self.static_static(id)?;
        let (timestamp, state) = handshake::accept_initiation(received, &ss)?;
        let mut hs = self.handshake.lock();
        if hs.greatest_timestamp.is_some_and(|t| timestamp <= t) {
            return Err(HandshakeError::ReplayedTimestamp);
        }
        if hs
            .last_initiation_consumed
            .is_some_and(|t| now.saturating_duration_since(t) < MIN_INITIATION_INTERVAL)
        {
            return Err(HandshakeError::RateLimited);
        }
        hs.greatest_timestamp = Some(timestamp);
        hs.last_initiation_consumed = Some(now);
        // Answering starts the REKEY_TIMEOUT wait too (the kernel's and wireguard-go's
        // last_sent_handshake): an initiation of ours crossing this response would only cost
        // both sides a token operation for a session the other one then drops.
        hs.last_initiation_sent = Some(now);
        let psk = Zeroizing::new(*self.preshared_key.read().expose());
        let local_index = table.allocate(self);
        let mut msg = [0u8; RESPONSE_LEN];
        let keys =
            match handshake::create_response(state, &self.public, &psk, local_index, &mut msg) {
                Ok(k) => k,
                Err(e) => {
                    table.free(local_index);
                    return Err(e);
                }
            };
        drop(hs);
        self.cookie.lock().add_macs(&mut msg, now);
        let keypair = Arc::new(Keypair::made_with(&keys, id.public_key(), now));
        {
            // A responder cannot send with the new session before it is confirmed: it goes to
            // `next`, replacing an unconfirmed one; `previous` is dropped too (the kernel's rule).
            let mut kp = self.keypairs.write();
            if self.closed.load(Ordering::Acquire) {
                retire(table, &keypair);
                return Err(HandshakeError::PeerRemoved);
            }
            if let Some(old) = kp.next.replace(keypair) {
                retire(table, &old);
            }
            if let Some(old) = kp.previous.take() {
                retire(table, &old);
            }
            self.has_next.store(true, Ordering::Release);
        }
        self.set_endpoint_if_changed(src);
        self.rx_bytes
            .fetch_add(INITIATION_LEN as u64, Ordering::Relaxed);
        {
            let mut t = self.timers.lock();
            t.any_authenticated_packet_received();
            t.any_authenticated_packet_traversal(now);
            t.session_derived(now);
        }
        self.record_sent_handshake_message(msg.len(), now);
        Ok(msg)
    }

    /// Handshake worker: consume a response (its receiver index led the caller here; mac1 was
    /// checked). ONE static-key operation (se). On success the new session is current: send the
    /// queued packets now, or a keepalive if there are none, to confirm it to the responder.
    pub fn consume_response(
        self: &Arc<Self>,
        id: &Identity,
        table: &IndexTable<Peer>,
        msg: &[u8],
        src: SocketAddr,
        now: Instant,
    ) -> Result<(), HandshakeError> {
        self.free_retired(table);
        // The pending handshake leaves the lock while the token works (tens of ms, up to the
        // chip-lock timeout if it hangs): `clear` and `zero_keys` never wait for a token.
        let pending = {
            let mut hs = self.handshake.lock();
            match hs.pending.as_ref() {
                Some(p) if crate::noise::receiver_index(msg) == Some(p.local_index) => {}
                // An answer to an initiation we replaced: no token operation for it.
                _ => return Err(HandshakeError::NoPendingHandshake),
            }
            hs.pending.take().expect("checked above")
        };
        let psk = Zeroizing::new(*self.preshared_key.read().expose());
        let keys = match handshake::consume_response(id, &pending, &psk, msg) {
            Ok(keys) => keys,
            Err(e) => {
                // Not the answer: the initiation stays pending for the real one, unless the
                // peer was removed or a newer initiation replaced it meanwhile.
                let mut hs = self.handshake.lock();
                if hs.pending.is_none() && !self.closed.load(Ordering::Acquire) {
                    hs.pending = Some(pending);
                } else {
                    table.free(pending.local_index);
                }
                return Err(e);
            }
        };
        // The pending handshake's index lives on as the session's local index.
        let keypair = Arc::new(Keypair::made_with(&keys, id.public_key(), now));
        {
            let mut kp = self.keypairs.write();
            if self.closed.load(Ordering::Acquire) {
                retire(table, &keypair);
                return Err(HandshakeError::PeerRemoved);
            }
            self.has_next.store(false, Ordering::Release);
            let old_previous = if let Some(next) = kp.next.take() {
                // An unconfirmed responder session becomes `previous`; `current` is dropped.
                let dropped = kp.current.take();
                kp.previous
                    .replace(next)
                    .into_iter()
                    .chain(dropped)
                    .collect::<Vec<_>>()
            } else {
                let current = kp.current.take();
                std::mem::replace(&mut kp.previous, current)
                    .into_iter()
                    .collect()
            };
            for old in old_previous {
                retire(table, &old);
            }
            kp.current = Some(keypair);
        }
        self.sent_lastminute_handshake
            .store(false, Ordering::Relaxed);
        self.set_endpoint_if_changed(src);
        self.rx_bytes.fetch_add(msg.len() as u64, Ordering::Relaxed);
        *self.last_handshake.lock() = Some(SystemTime::now());
        let mut t = self.timers.lock();
        t.any_authenticated_packet_received();
        t.any_authenticated_packet_traversal(now);
        t.session_derived(now);
        t.handshake_complete();
        Ok(())
    }

    /// Handshake worker (or packet path: no static key): take the cookie from a cookie reply
    /// that answers our last initiation or response. The next initiation carries a mac2.
    pub fn consume_cookie_reply(&self, msg: &[u8], now: Instant) -> Result<(), HandshakeError> {
        self.cookie.lock().consume_cookie_reply(msg, now)
    }
}
