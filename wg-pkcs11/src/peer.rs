//! Per-peer state: keys, sessions, handshake progress, timers, endpoint and counters.
//!
//! A `Peer` is shared as `Arc<Peer>` by every thread of the device. What the packet path touches
//! (the sessions, the endpoint, byte counters, timers) sits behind small locks that nothing slow
//! ever holds; the handshake state has its own lock, held by the handshake worker alone, even
//! while the static key works for tens of milliseconds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use parking_lot::{Mutex, RwLock};

use crate::cookie::CookieState;
use crate::keypair::Keypair;
use crate::noise::handshake::InitiatorPending;
use crate::noise::{IndexTable, Timestamp};
use crate::secret_mem::Secret32;
use crate::sticky::StickySource;
use crate::timers::{TimerActions, Timers};

mod handshake;
mod transport;

pub use transport::Received;

/// A session leaves its peer: nothing may use it any more (a thread may still hold an Arc to
/// it, e.g. a receive-path cache), and its index is free again.
fn retire(table: &IndexTable<Peer>, keypair: &Keypair) {
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

    fn free_retired(&self, table: &IndexTable<Peer>) {
        for index in self.retired_indices.lock().drain(..) {
            table.free(index);
        }
    }

    fn set_endpoint_if_changed(&self, src: SocketAddr) {
        if *self.endpoint.read() != Some(src) {
            *self.endpoint.write() = Some(src);
        }
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
mod tests;
