//! Per-peer state: keys, sessions, handshake progress, timers, endpoint and counters.
//!
//! A `Peer` is shared as `Arc<Peer>` by every thread of the device. What the packet path touches
//! (the sessions, the endpoint, byte counters, timers) sits behind small locks that nothing slow
//! ever holds; the handshake state has its own lock, held by the handshake worker alone, even
//! while the static key works for tens of milliseconds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Mutex, RwLock};
use zeroize::Zeroizing;

use crate::cookie::CookieState;
use crate::keypair::Keypair;
use crate::noise::handshake::{self, InitiatorPending};
use crate::noise::{
    HandshakeError, Identity, IndexTable, ReceivedInitiation, Timestamp, INITIATION_LEN,
    RESPONSE_LEN,
};
use crate::timers::{TimerActions, Timers, REKEY_TIMEOUT};

/// Initiations from one peer are consumed at most this often (the kernel's
/// INITIATIONS_PER_SECOND = 50): a replayed-but-newer flood cannot churn sessions.
const MIN_INITIATION_INTERVAL: Duration = Duration::from_millis(20);

/// A session leaves its peer: nothing may use it any more (a thread may still hold an Arc to
/// it, e.g. a receive-path cache), and its index is free again.
fn retire(table: &IndexTable, keypair: &Keypair) {
    keypair.invalidate();
    table.free(keypair.local_index());
}

/// The three session slots of a peer, as in the kernel's noise_keypairs.
#[derive(Default)]
struct Keypairs {
    /// The session before `current`: still accepted for receiving (packets in flight).
    previous: Option<Arc<Keypair>>,
    /// The session we send with.
    current: Option<Arc<Keypair>>,
    /// A responder's new session, used once the initiator's first transport message confirms it.
    next: Option<Arc<Keypair>>,
}

/// The handshake worker's state for this peer.
#[derive(Default)]
struct HandshakeSlot {
    pending: Option<InitiatorPending>,
    last_initiation_sent: Option<Instant>,
    last_timestamp_sent: Option<Timestamp>,
    greatest_timestamp: Option<Timestamp>,
    last_initiation_consumed: Option<Instant>,
}

/// One configured peer.
pub struct Peer {
    public: [u8; 32],
    preshared_key: RwLock<Zeroizing<[u8; 32]>>,
    /// DH(our static, their static): one static-key operation per peer, then cached.
    static_static: Mutex<Option<Zeroizing<[u8; 32]>>>,
    handshake: Mutex<HandshakeSlot>,
    keypairs: RwLock<Keypairs>,
    endpoint: RwLock<Option<SocketAddr>>,
    timers: Mutex<Timers>,
    cookie: Mutex<CookieState>,
    rx_bytes: AtomicU64,
    tx_bytes: AtomicU64,
    last_handshake: Mutex<Option<SystemTime>>,
    /// `created` is the zero of the millisecond clocks below.
    created: Instant,
    /// When the packet path last asked for a handshake (ms since `created`, +1; 0 = never).
    handshake_requested_ms: AtomicU64,
    /// The receive side asked for a handshake for the current session already.
    sent_lastminute_handshake: AtomicBool,
    /// Indices of sessions the packet path retired, to be freed from the index table.
    retired_indices: Mutex<Vec<u32>>,
    /// A responder session waits in `next`: lets the packet path skip the keypairs lock.
    has_next: AtomicBool,
}

impl Peer {
    /// A peer with its static public key, optional preshared key, optional initial endpoint and
    /// persistent keepalive interval in seconds (0 = off). A non-zero interval makes the first
    /// `tick` ask for a keepalive (which, with no session yet, means a handshake).
    pub fn new(
        public: [u8; 32],
        preshared_key: Option<[u8; 32]>,
        endpoint: Option<SocketAddr>,
        persistent_keepalive: u16,
        now: Instant,
    ) -> Arc<Peer> {
        let mut timers = Timers::new(0);
        timers.set_persistent_keepalive(persistent_keepalive, now);
        Arc::new(Peer {
            public,
            preshared_key: RwLock::new(Zeroizing::new(preshared_key.unwrap_or([0; 32]))),
            static_static: Mutex::new(None),
            handshake: Mutex::new(HandshakeSlot::default()),
            keypairs: RwLock::new(Keypairs::default()),
            endpoint: RwLock::new(endpoint),
            timers: Mutex::new(timers),
            cookie: Mutex::new(CookieState::new(&public)),
            rx_bytes: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
            last_handshake: Mutex::new(None),
            created: now,
            handshake_requested_ms: AtomicU64::new(0),
            sent_lastminute_handshake: AtomicBool::new(false),
            retired_indices: Mutex::new(Vec::new()),
            has_next: AtomicBool::new(false),
        })
    }

    /// The peer's static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The preshared key (all zeros when none is configured, as the protocol defines).
    pub fn preshared_key(&self) -> Option<[u8; 32]> {
        let k = **self.preshared_key.read();
        (k != [0; 32]).then_some(k)
    }

    pub fn set_preshared_key(&self, key: Option<[u8; 32]>) {
        *self.preshared_key.write() = Zeroizing::new(key.unwrap_or([0; 32]));
    }

    /// Where we send to: configured, or learned from the last authenticated packet (roaming).
    pub fn endpoint(&self) -> Option<SocketAddr> {
        *self.endpoint.read()
    }

    pub fn set_endpoint(&self, endpoint: Option<SocketAddr>) {
        *self.endpoint.write() = endpoint;
    }

    pub fn persistent_keepalive(&self) -> u16 {
        self.timers.lock().persistent_keepalive_interval()
    }

    pub fn set_persistent_keepalive(&self, seconds: u16, now: Instant) {
        self.timers.lock().set_persistent_keepalive(seconds, now);
    }

    /// Bytes of authenticated messages received from this peer (UDP payload sizes).
    pub fn rx_bytes(&self) -> u64 {
        self.rx_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of messages sent to this peer (UDP payload sizes).
    pub fn tx_bytes(&self) -> u64 {
        self.tx_bytes.load(Ordering::Relaxed)
    }

    /// Wall-clock time of the last completed handshake.
    pub fn last_handshake(&self) -> Option<SystemTime> {
        *self.last_handshake.lock()
    }

    /// The cached static-static DH, computed with the static key the first time (handshake
    /// worker only). The device may call this once when the peer is added, to have the one
    /// per-peer token operation done before the first handshake.
    pub fn precompute_static_static(&self, id: &Identity) -> Result<(), HandshakeError> {
        self.static_static(id).map(|_| ())
    }

    fn static_static(&self, id: &Identity) -> Result<Zeroizing<[u8; 32]>, HandshakeError> {
        let mut slot = self.static_static.lock();
        if let Some(ss) = slot.as_ref() {
            return Ok(ss.clone());
        }
        let ss = id.key().diffie_hellman(&self.public)?;
        *slot = Some(ss.clone());
        Ok(ss)
    }

    fn free_retired(&self, table: &IndexTable) {
        for index in self.retired_indices.lock().drain(..) {
            table.free(index);
        }
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
        table: &IndexTable,
        is_retry: bool,
        now: Instant,
    ) -> Result<[u8; INITIATION_LEN], HandshakeError> {
        self.free_retired(table);
        let ss = self.static_static(id)?;
        let mut hs = self.handshake.lock();
        if let Some(last) = hs.last_initiation_sent {
            if now.saturating_duration_since(last) < REKEY_TIMEOUT {
                return Err(HandshakeError::RateLimited);
            }
        }
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
        table: &IndexTable,
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
        let psk = **self.preshared_key.read();
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
        let keypair = Arc::new(Keypair::new(&keys, now));
        {
            // A responder cannot send with the new session before it is confirmed: it goes to
            // `next`, replacing an unconfirmed one; `previous` is dropped too (the kernel's rule).
            let mut kp = self.keypairs.write();
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
        table: &IndexTable,
        msg: &[u8],
        src: SocketAddr,
        now: Instant,
    ) -> Result<(), HandshakeError> {
        self.free_retired(table);
        let mut hs = self.handshake.lock();
        let pending = hs
            .pending
            .as_ref()
            .ok_or(HandshakeError::NoPendingHandshake)?;
        let psk = **self.preshared_key.read();
        let keys = handshake::consume_response(id, pending, &psk, msg)?;
        // The pending handshake's index lives on as the session's local index.
        hs.pending = None;
        drop(hs);
        let keypair = Arc::new(Keypair::new(&keys, now));
        {
            let mut kp = self.keypairs.write();
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

    fn set_endpoint_if_changed(&self, src: SocketAddr) {
        if *self.endpoint.read() != Some(src) {
            *self.endpoint.write() = Some(src);
        }
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
        if stale && !self.sent_lastminute_handshake.swap(true, Ordering::Relaxed) {
            return self.wants_handshake(now);
        }
        false
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

    /// Timer thread: fire what is due. `zero_keys` has already been done when it is reported.
    /// For `send_keepalive` without a session, start a handshake instead (as the kernel does).
    pub fn tick(&self, table: &IndexTable, now: Instant) -> TimerActions {
        let actions = self.timers.lock().tick(now);
        if actions.zero_keys {
            self.zero_keys(table);
        }
        actions
    }

    /// When `tick` has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.lock().next_deadline()
    }

    /// Drop every session and the pending handshake, freeing their indices.
    pub fn zero_keys(&self, table: &IndexTable) {
        self.free_retired(table);
        let (a, b, c) = {
            let mut kp = self.keypairs.write();
            self.has_next.store(false, Ordering::Release);
            (kp.previous.take(), kp.current.take(), kp.next.take())
        };
        for k in [a, b, c].into_iter().flatten() {
            retire(table, &k);
        }
        if let Some(p) = self.handshake.lock().pending.take() {
            table.free(p.local_index);
        }
    }

    /// Handshake worker: our static key was replaced (key rotation). Forget what was derived
    /// from the old key (the cached static-static DH, a pending initiation) and allow an
    /// initiation at once: the REKEY_TIMEOUT spacing was between the old key's handshakes.
    /// The sessions stay and carry traffic until the new key's handshake replaces them.
    pub fn static_key_replaced(&self, table: &IndexTable) {
        *self.static_static.lock() = None;
        let mut hs = self.handshake.lock();
        if let Some(pending) = hs.pending.take() {
            table.free(pending.local_index);
        }
        hs.last_initiation_sent = None;
    }

    /// Before a removed peer is dropped: zero its keys, free its indices, stop its timers.
    pub fn clear(&self, table: &IndexTable) {
        self.zero_keys(table);
        self.timers.lock().stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::CookieChecker;
    use crate::key::{KeyError, SoftKey, StaticKey};
    use crate::noise::{consume_initiation, receiver_index};
    use crate::timers::{REJECT_AFTER_TIME, REKEY_AFTER_TIME};
    use std::sync::atomic::AtomicUsize;

    /// A software key that counts its Diffie-Hellman operations (a token's C_DeriveKey calls).
    struct CountingKey {
        inner: SoftKey,
        count: AtomicUsize,
    }

    impl StaticKey for CountingKey {
        fn public_key(&self) -> [u8; 32] {
            self.inner.public_key()
        }
        fn diffie_hellman(&self, p: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
            self.count.fetch_add(1, Ordering::SeqCst);
            self.inner.diffie_hellman(p)
        }
    }

    /// A key whose token can be switched off, like an unplugged or failing secure element.
    struct FlakyKey {
        inner: SoftKey,
        failing: std::sync::atomic::AtomicBool,
    }

    impl StaticKey for FlakyKey {
        fn public_key(&self) -> [u8; 32] {
            self.inner.public_key()
        }
        fn diffie_hellman(&self, p: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(KeyError::Token("CKR_DEVICE_ERROR".into()));
            }
            self.inner.diffie_hellman(p)
        }
    }

    #[test]
    fn a_failing_token_keeps_the_current_session_and_later_handshakes_succeed() {
        let t0 = Instant::now();
        let flaky = Arc::new(FlakyKey {
            inner: SoftKey::generate(),
            failing: AtomicBool::new(true),
        });
        let a_id = Identity::new(flaky.clone());
        let a_table = IndexTable::new();
        let b = {
            let mut b = Side::new("192.0.2.2:1");
            b.peer = Some(Peer::new(a_id.public_key(), None, None, 0, t0));
            b
        };
        let a_peer = Peer::new(b.id.public_key(), None, Some(b.addr), 0, t0);
        // The per-peer ss fails: no initiation, and nothing cached.
        assert!(matches!(
            a_peer.create_initiation(&a_id, &a_table, false, t0),
            Err(HandshakeError::Key(KeyError::Token(_)))
        ));
        flaky.failing.store(false, Ordering::SeqCst);
        let a = Side {
            key: Arc::new(CountingKey {
                inner: SoftKey::generate(),
                count: AtomicUsize::new(0),
            }),
            id: a_id,
            table: a_table,
            peer: Some(a_peer),
            addr: "192.0.2.1:1".parse().unwrap(),
        };
        handshake(&a, &b, t0).unwrap();
        transfer(&a, &b, b"up", t0).unwrap();
        // The token fails during the rekey (se when the response arrives): the old session goes on.
        let t1 = t0 + Duration::from_secs(121);
        let init = a
            .peer()
            .create_initiation(&a.id, &a.table, false, t1)
            .unwrap();
        let rx = consume_initiation(&b.id, &init).unwrap();
        let resp = b
            .peer()
            .accept_initiation(&b.id, &b.table, rx, a.addr, t1)
            .unwrap();
        flaky.failing.store(true, Ordering::SeqCst);
        assert!(matches!(
            a.peer()
                .consume_response(&a.id, &a.table, &resp, b.addr, t1),
            Err(HandshakeError::Key(_))
        ));
        assert_eq!(transfer(&a, &b, b"still up", t1).unwrap(), b"still up");
        assert_eq!(transfer(&b, &a, b"both ways", t1).unwrap(), b"both ways");
        // The retransmit timer asks again; with the token back the handshake completes.
        flaky.failing.store(false, Ordering::SeqCst);
        let t2 = a.peer().next_deadline().unwrap().max(t1 + REKEY_TIMEOUT);
        let actions = a.peer().tick(&a.table, t2);
        assert!(actions.send_initiation && actions.initiation_is_retry);
        handshake(&a, &b, t2).unwrap();
        assert_eq!(
            transfer(&a, &b, b"new session", t2).unwrap(),
            b"new session"
        );
    }

    struct Side {
        key: Arc<CountingKey>,
        id: Identity,
        table: IndexTable,
        peer: Option<Arc<Peer>>,
        addr: SocketAddr,
    }

    impl Side {
        fn new(addr: &str) -> Side {
            let key = Arc::new(CountingKey {
                inner: SoftKey::generate(),
                count: AtomicUsize::new(0),
            });
            let id = Identity::new(key.clone());
            Side {
                key,
                id,
                table: IndexTable::new(),
                peer: None,
                addr: addr.parse().unwrap(),
            }
        }
        fn dh_count(&self) -> usize {
            self.key.count.load(Ordering::SeqCst)
        }
        fn peer(&self) -> &Arc<Peer> {
            self.peer.as_ref().unwrap()
        }
    }

    fn pair(psk: Option<[u8; 32]>, now: Instant) -> (Side, Side) {
        let mut a = Side::new("192.0.2.1:51820");
        let mut b = Side::new("[2001:db8::2]:51821");
        a.peer = Some(Peer::new(b.id.public_key(), psk, Some(b.addr), 0, now));
        b.peer = Some(Peer::new(a.id.public_key(), psk, None, 0, now));
        (a, b)
    }

    /// One full handshake, `i` initiating; the responder's reply goes through the index table.
    fn handshake(i: &Side, r: &Side, now: Instant) -> Result<(), HandshakeError> {
        let init = i.peer().create_initiation(&i.id, &i.table, false, now)?;
        assert!(CookieChecker::new(&r.id.public_key()).check_mac1(&init));
        let received = consume_initiation(&r.id, &init)?;
        assert_eq!(received.initiator_public(), i.id.public_key());
        let resp = r
            .peer()
            .accept_initiation(&r.id, &r.table, received, i.addr, now)?;
        assert!(CookieChecker::new(&i.id.public_key()).check_mac1(&resp));
        let peer = i
            .table
            .get(receiver_index(&resp).unwrap())
            .expect("index maps to the peer");
        assert!(Arc::ptr_eq(&peer, i.peer()));
        peer.consume_response(&i.id, &i.table, &resp, r.addr, now)
    }

    /// Send `payload` from `s` to `d` through the current sessions; returns the received bytes.
    fn transfer(s: &Side, d: &Side, payload: &[u8], now: Instant) -> Result<Vec<u8>, String> {
        let kp = s.peer().current_keypair(now).ok_or("no sending session")?;
        let mut buf = vec![0u8; payload.len() + 64];
        buf[16..16 + payload.len()].copy_from_slice(payload);
        let len = kp
            .encrypt(&mut buf, payload.len(), now)
            .map_err(|e| e.to_string())?;
        s.peer().sent_transport(&kp, len, payload.is_empty(), now);
        buf.truncate(len);
        let peer = d
            .table
            .get(receiver_index(&buf).unwrap())
            .ok_or("unknown index")?;
        let rkp = peer
            .keypair_for_index(receiver_index(&buf).unwrap())
            .ok_or("no session")?;
        let n = rkp.decrypt(&mut buf, now).map_err(|e| e.to_string())?;
        peer.received_transport(&rkp, s.addr, len, n == 0, now);
        Ok(buf[16..16 + payload.len()].to_vec())
    }

    #[test]
    fn handshake_then_transport_with_one_static_dh_per_side_plus_ss_once() {
        let t0 = Instant::now();
        let (a, b) = pair(Some([9; 32]), t0);
        handshake(&a, &b, t0).unwrap();
        assert_eq!(a.dh_count(), 2, "initiator: ss (once) + se");
        assert_eq!(b.dh_count(), 2, "responder: es + ss (once)");
        assert!(a.peer().current_keypair(t0).is_some());
        assert!(
            b.peer().current_keypair(t0).is_none(),
            "responder waits for confirmation"
        );
        assert_eq!(transfer(&a, &b, b"hello", t0).unwrap(), b"hello");
        assert!(
            b.peer().current_keypair(t0).is_some(),
            "first message confirmed it"
        );
        assert_eq!(transfer(&b, &a, b"world", t0).unwrap(), b"world");
        assert!(a.peer().last_handshake().is_some() && b.peer().last_handshake().is_some());
        assert_eq!(
            b.peer().endpoint(),
            Some(a.addr),
            "responder learned the endpoint"
        );

        // Later handshakes, in either role, cost exactly one static DH per side.
        let t1 = t0 + Duration::from_secs(10);
        handshake(&b, &a, t1).unwrap();
        assert_eq!((a.dh_count(), b.dh_count()), (3, 3));
        let t2 = t1 + Duration::from_secs(10);
        handshake(&a, &b, t2).unwrap();
        assert_eq!((a.dh_count(), b.dh_count()), (4, 4));
        assert_eq!(transfer(&a, &b, b"again", t2).unwrap(), b"again");
        assert_eq!(transfer(&b, &a, b"and back", t2).unwrap(), b"and back");
        assert!(a.peer().tx_bytes() > 0 && a.peer().rx_bytes() > 0);
    }

    #[test]
    fn old_sessions_keep_working_during_rekey_and_indices_are_freed() {
        let t0 = Instant::now();
        let (a, b) = pair(None, t0);
        for round in 0..20u64 {
            let now = t0 + Duration::from_secs(6 * round);
            let (i, r) = if round % 3 == 0 { (&b, &a) } else { (&a, &b) };
            handshake(i, r, now).unwrap();
            // A packet from the responder's old session still arrives (it is `previous`/current).
            let _ = transfer(r, i, b"old", now);
            assert_eq!(transfer(i, r, b"new", now).unwrap(), b"new");
            assert_eq!(transfer(r, i, b"reply", now).unwrap(), b"reply");
            assert!(
                a.table.len() <= 3 && b.table.len() <= 3,
                "round {round}: {} {}",
                a.table.len(),
                b.table.len()
            );
        }
        a.peer().clear(&a.table);
        assert_eq!(a.table.len(), 0);
        assert!(a.peer().current_keypair(t0).is_none());
    }

    #[test]
    fn replayed_initiation_and_wrong_psk_are_refused() {
        let t0 = Instant::now();
        let (a, b) = pair(Some([1; 32]), t0);
        let init = a
            .peer()
            .create_initiation(&a.id, &a.table, false, t0)
            .unwrap();
        let rx = consume_initiation(&b.id, &init).unwrap();
        b.peer()
            .accept_initiation(&b.id, &b.table, rx, a.addr, t0)
            .unwrap();
        let rx = consume_initiation(&b.id, &init).unwrap();
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            b.peer()
                .accept_initiation(&b.id, &b.table, rx, a.addr, later)
                .err(),
            Some(HandshakeError::ReplayedTimestamp)
        );
        // An initiation for another peer object is refused.
        let stranger = Peer::new([3; 32], None, None, 0, t0);
        let rx = consume_initiation(&b.id, &init).unwrap();
        assert_eq!(
            stranger
                .accept_initiation(&b.id, &b.table, rx, a.addr, later)
                .err(),
            Some(HandshakeError::UnknownPeer)
        );
        // Mismatched preshared keys: the initiator refuses the response.
        b.peer().set_preshared_key(Some([2; 32]));
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(
            handshake(&a, &b, t1),
            Err(HandshakeError::Decrypt("response"))
        );
        // Initiations are rate-limited to one per REKEY_TIMEOUT.
        assert_eq!(
            a.peer()
                .create_initiation(&a.id, &a.table, false, t1 + Duration::from_secs(1))
                .err(),
            Some(HandshakeError::RateLimited)
        );
    }

    #[test]
    fn roaming_follows_authenticated_packets_only() {
        let t0 = Instant::now();
        let (mut a, b) = pair(None, t0);
        handshake(&a, &b, t0).unwrap();
        transfer(&a, &b, b"x", t0).unwrap();
        assert_eq!(b.peer().endpoint(), Some(a.addr));
        a.addr = "198.51.100.7:4000".parse().unwrap();
        transfer(&a, &b, b"y", t0).unwrap();
        assert_eq!(b.peer().endpoint(), Some(a.addr), "moved with the peer");
        // A forged packet from elsewhere does not authenticate, so it moves nothing.
        let kp = a.peer().current_keypair(t0).unwrap();
        let mut buf = [0u8; 64];
        let len = kp.encrypt(&mut buf, 8, t0).unwrap();
        buf[20] ^= 1;
        let rkp = b
            .peer()
            .keypair_for_index(receiver_index(&buf[..len]).unwrap())
            .unwrap();
        assert!(rkp.decrypt(&mut buf[..len], t0).is_err());
        assert_eq!(b.peer().endpoint(), Some(a.addr));
    }

    #[test]
    fn rekey_after_time_and_reject_after_time() {
        let t0 = Instant::now();
        let (a, b) = pair(None, t0);
        handshake(&a, &b, t0).unwrap();
        transfer(&a, &b, b"x", t0).unwrap();
        let kp = a.peer().current_keypair(t0).unwrap();
        let later = t0 + REKEY_AFTER_TIME;
        assert!(
            a.peer().sent_transport(&kp, 32, false, later),
            "initiator rekeys after 120 s"
        );
        assert!(
            !a.peer().sent_transport(&kp, 32, false, later),
            "asked once per REKEY_TIMEOUT"
        );
        let bkp = b.peer().current_keypair(t0).unwrap();
        assert!(
            !b.peer().sent_transport(&bkp, 32, false, later),
            "the responder does not"
        );
        assert!(a.peer().current_keypair(t0 + REJECT_AFTER_TIME).is_none());
        assert!(b.peer().current_keypair(t0 + REJECT_AFTER_TIME).is_none());
    }

    #[test]
    fn timers_drive_keepalive_retries_and_zeroing() {
        let t0 = Instant::now();
        let (a, b) = pair(None, t0);
        handshake(&a, &b, t0).unwrap();
        transfer(&a, &b, b"data", t0).unwrap();
        // b received data and sent nothing: a keepalive after KEEPALIVE_TIMEOUT.
        assert!(
            b.peer()
                .tick(&b.table, t0 + Duration::from_secs(10))
                .send_keepalive
        );
        // a sent data and heard nothing: a new handshake after 15 s (+ jitter).
        let act = a.peer().tick(&a.table, t0 + Duration::from_secs(16));
        assert!(act.send_initiation && !act.initiation_is_retry);
        // Keys are zeroed 3 x REJECT_AFTER_TIME after the last session; indices freed.
        let act = b.peer().tick(&b.table, t0 + REJECT_AFTER_TIME * 3);
        assert!(act.zero_keys);
        assert_eq!(b.table.len(), 0);
        assert!(b.peer().keypair_for_index(1).is_none());
    }

    #[test]
    fn sessions_held_elsewhere_stop_working_once_dropped() {
        let t0 = Instant::now();
        let (a, b) = pair(None, t0);
        handshake(&a, &b, t0).unwrap();
        transfer(&a, &b, b"x", t0).unwrap();
        let held = b.peer().current_keypair(t0).unwrap();
        let sender = a.peer().current_keypair(t0).unwrap();
        b.peer().zero_keys(&b.table);
        let mut buf = [0u8; 64];
        let len = sender.encrypt(&mut buf, 8, t0).unwrap();
        assert!(
            held.decrypt(&mut buf[..len], t0).is_err(),
            "a cached Arc must not outlive zeroing"
        );
        assert!(!held.is_valid());
    }

    #[test]
    fn a_configured_peer_stays_small() {
        // Issue 5: under 4 KiB per additional configured peer, AllowedIPs and device state included.
        let size = std::mem::size_of::<Peer>();
        eprintln!(
            "size_of::<Peer>() = {size}, size_of::<Keypair>() = {}",
            std::mem::size_of::<Keypair>()
        );
        assert!(size < 1024, "Peer is {size} bytes");
    }

    #[test]
    fn cookie_reply_makes_the_next_initiation_pass_mac2() {
        let t0 = Instant::now();
        let (a, b) = pair(None, t0);
        let checker = CookieChecker::new(&b.id.public_key());
        let init = a
            .peer()
            .create_initiation(&a.id, &a.table, false, t0)
            .unwrap();
        assert!(checker.check_mac1(&init) && !checker.check_mac2(&init, a.addr, t0));
        let reply = checker.create_cookie_reply(&init, a.addr, t0).unwrap();
        let peer = a.table.get(receiver_index(&reply).unwrap()).unwrap();
        peer.consume_cookie_reply(&reply, t0).unwrap();
        let t1 = t0 + Duration::from_secs(5);
        let init = a
            .peer()
            .create_initiation(&a.id, &a.table, true, t1)
            .unwrap();
        assert!(checker.check_mac1(&init) && checker.check_mac2(&init, a.addr, t1));
    }
}
