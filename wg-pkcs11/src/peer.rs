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
use crate::secret_mem::Secret32;
use crate::sticky::StickySource;
use crate::timers::{TimerActions, Timers, REKEY_TIMEOUT};

/// Initiations from one peer are consumed at most this often (the kernel's
/// INITIATIONS_PER_SECOND = 50): a replayed-but-newer flood cannot churn sessions.
const MIN_INITIATION_INTERVAL: Duration = Duration::from_millis(20);

/// A session leaves its peer: nothing may use it any more (a thread may still hold an Arc to
/// it, e.g. a receive-path cache), and its index is free again.
fn retire(table: &IndexTable<Peer>, keypair: &Keypair) {
    keypair.invalidate();
    table.free(keypair.local_index());
}

/// What an authenticated transport message did (`Peer::receive_transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Start a handshake: the session is old (already rate-limited by `wants_handshake`).
    pub rekey: bool,
    /// The message confirmed a responder session: a handshake completed.
    pub confirmed: bool,
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
    /// In locked, non-dumpable memory (`secret_mem`), as the cached static-static DH.
    preshared_key: RwLock<Secret32>,
    /// DH(our static, their static): one static-key operation per peer, then cached.
    static_static: Mutex<Option<Secret32>>,
    handshake: Mutex<HandshakeSlot>,
    keypairs: RwLock<Keypairs>,
    endpoint: RwLock<Option<SocketAddr>>,
    /// The local address the endpoint last reached us on: our replies leave from it.
    sticky: StickySource,
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
    /// The peer was removed (`clear`): no session is installed and no secret cached from now
    /// on. Set under the keypairs lock, which every installation holds, so a handshake that
    /// finishes after the removal cannot leave keys behind.
    closed: AtomicBool,
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
            preshared_key: RwLock::new(Secret32::new(&preshared_key.unwrap_or([0; 32]))),
            static_static: Mutex::new(None),
            handshake: Mutex::new(HandshakeSlot::default()),
            keypairs: RwLock::new(Keypairs::default()),
            endpoint: RwLock::new(endpoint),
            sticky: StickySource::default(),
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
            closed: AtomicBool::new(false),
        })
    }

    /// The peer's static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The preshared key (all zeros when none is configured, as the protocol defines).
    pub fn preshared_key(&self) -> Option<[u8; 32]> {
        let k = *self.preshared_key.read().expose();
        (k != [0; 32]).then_some(k)
    }

    pub fn set_preshared_key(&self, key: Option<[u8; 32]>) {
        *self.preshared_key.write() = Secret32::new(&key.unwrap_or([0; 32]));
    }

    /// Where we send to: configured, or learned from the last authenticated packet (roaming).
    pub fn endpoint(&self) -> Option<SocketAddr> {
        *self.endpoint.read()
    }

    pub fn set_endpoint(&self, endpoint: Option<SocketAddr>) {
        *self.endpoint.write() = endpoint;
    }

    /// The source address to send to the endpoint from (learned by the device, see `sticky`).
    pub fn sticky_source(&self) -> &StickySource {
        &self.sticky
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

    /// Our static public key in the handshake that made the session we send with (rotation:
    /// proof that the peer accepted a new key); `None` without a current session.
    pub fn current_session_static_key(&self) -> Option<[u8; 32]> {
        self.keypairs
            .read()
            .current
            .as_ref()
            .map(|k| k.static_public())
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

    fn free_retired(&self, table: &IndexTable<Peer>) {
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

    /// A handshake was asked for by anything but the retransmit timer (see
    /// `Timers::handshake_wanted`): the retries start over.
    pub fn handshake_wanted(&self) {
        self.timers.lock().handshake_wanted();
    }

    /// Timer thread: fire what is due. `zero_keys` has already been done when it is reported.
    /// For `send_keepalive` without a session, start a handshake instead (as the kernel does).
    ///
    /// As the kernel's timers: a timer that starts a handshake (a retry, or data sent without
    /// an answer) forgets the sticky source, in case it is the trouble; a keepalive sent on an
    /// initiator's session older than REKEY_AFTER_TIME starts a rekey, as any sent message does
    /// (keep_key_fresh after a keepalive too).
    pub fn tick(&self, table: &IndexTable<Peer>, now: Instant) -> TimerActions {
        let mut actions = self.timers.lock().tick(now);
        if actions.zero_keys {
            self.zero_keys(table);
        }
        if actions.send_initiation {
            self.sticky.clear();
        }
        if actions.send_keepalive && !actions.send_initiation {
            let stale = self
                .current_keypair(now)
                .is_some_and(|k| k.needs_rekey_on_send(now));
            if stale && self.wants_handshake(now) {
                actions.send_initiation = true;
                actions.initiation_is_retry = false;
            }
        }
        actions
    }

    /// When `tick` has something to do next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.lock().next_deadline()
    }

    /// Drop every session and the pending handshake, freeing their indices.
    pub fn zero_keys(&self, table: &IndexTable<Peer>) {
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
    /// The sessions stay and carry traffic until the new key's handshake replaces them; each
    /// records the static key that made it (`current_session_static_key`).
    pub fn static_key_replaced(&self, table: &IndexTable<Peer>) {
        *self.static_static.lock() = None;
        let mut hs = self.handshake.lock();
        if let Some(pending) = hs.pending.take() {
            table.free(pending.local_index);
        }
        hs.last_initiation_sent = None;
    }

    /// Before a removed peer is dropped: zero its keys, free its indices, stop its timers, wipe
    /// its cached static-static secret. From now on no session is installed: a handshake the
    /// worker finishes after this is refused (`PeerRemoved`) and its keys wiped.
    pub fn clear(&self, table: &IndexTable<Peer>) {
        {
            let _kp = self.keypairs.write();
            self.closed.store(true, Ordering::Release);
        }
        self.zero_keys(table);
        *self.static_static.lock() = None;
        self.timers.lock().stop();
    }

    /// Whether `clear` was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
