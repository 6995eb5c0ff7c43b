//! The handshake worker: the only thread that runs static-key operations
//! (a token takes tens of milliseconds each), fed by a queue the packet
//! threads push to and never wait on.
//!
//! Two lanes: our own initiations (at most one queued per peer) go first, so a
//! flood of incoming initiations cannot delay our rekeys; incoming handshake
//! messages are bounded and dropped when the lane is full. "Under load", the
//! signal the UDP thread uses to demand cookies, is the incoming lane's depth
//! (as in wireguard-go) or its rate: a token fast enough to keep the queue
//! short must still not be spent without bound, since every ECDH wears the
//! SE050's NVM.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::counters::DropReason;
use super::{PeerState, Shared};
use crate::noise::{self, INITIATION_LEN, RESPONSE_LEN};

/// Incoming handshake messages the queue holds before dropping.
const MAX_INCOMING: usize = 64;
/// From this depth on the device is "under load": initiations need a valid mac2.
const UNDER_LOAD_DEPTH: usize = 2;
/// Once under load, stay so this long (wireguard-go keeps one second too).
const UNDER_LOAD_HOLD: Duration = Duration::from_secs(1);
/// Incoming handshake messages per second the worker takes before the device
/// counts as under load even with a short queue. Legitimate peers rekey every
/// two minutes (1,000 peers: about 8 a second); past this, initiations need a
/// cookie (mac2) and each source is rate-limited.
const INCOMING_PER_SECOND: u64 = 20;
const RATE_WINDOW: Duration = Duration::from_secs(1);

pub(crate) enum Job {
    /// Compute and cache the peer's static-static DH.
    Precompute(Arc<PeerState>),
    Initiate(Arc<PeerState>),
    Initiation {
        msg: [u8; INITIATION_LEN],
        src: SocketAddr,
    },
    Response {
        msg: [u8; RESPONSE_LEN],
        src: SocketAddr,
    },
    /// Key rotation: use this static key from now on (see key_switch.rs).
    ReplaceKey(super::key_switch::Replacement),
}

#[derive(Default)]
struct Lanes {
    own: VecDeque<Job>,
    incoming: VecDeque<Job>,
}

pub(crate) struct JobQueue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
    depth: AtomicUsize,
    /// Nanoseconds since `epoch` until which we count as under load.
    load_until: AtomicU64,
    /// Start (nanoseconds since `epoch`) of the current rate window, and the
    /// incoming messages queued in it.
    window_start: AtomicU64,
    window_count: AtomicU64,
    epoch: Instant,
}

impl JobQueue {
    pub(crate) fn new() -> JobQueue {
        JobQueue {
            lanes: Mutex::new(Lanes::default()),
            ready: Condvar::new(),
            depth: AtomicUsize::new(0),
            load_until: AtomicU64::new(0),
            window_start: AtomicU64::new(0),
            window_count: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub(crate) fn push_own(&self, job: Job) {
        self.lanes.lock().own.push_back(job);
        self.ready.notify_one();
    }

    /// Queue an incoming handshake message; false (dropped) when full.
    pub(crate) fn push_incoming(&self, job: Job, now: Instant) -> bool {
        let mut lanes = self.lanes.lock();
        if lanes.incoming.len() >= MAX_INCOMING {
            return false;
        }
        self.count_incoming(now);
        lanes.incoming.push_back(job);
        self.depth.store(lanes.incoming.len(), Ordering::Relaxed);
        drop(lanes);
        self.ready.notify_one();
        true
    }

    /// Count one queued incoming message in the current rate window (called
    /// with the lanes locked, so windows are not restarted concurrently).
    fn count_incoming(&self, now: Instant) {
        let t = self.nanos(now);
        if t.saturating_sub(self.window_start.load(Ordering::Relaxed))
            >= RATE_WINDOW.as_nanos() as u64
        {
            self.window_start.store(t, Ordering::Relaxed);
            self.window_count.store(0, Ordering::Relaxed);
        }
        self.window_count.fetch_add(1, Ordering::Relaxed);
    }

    fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Whether initiations must carry a valid mac2 before they are queued.
    pub(crate) fn under_load(&self, now: Instant) -> bool {
        let t = self.nanos(now);
        let in_window = t.saturating_sub(self.window_start.load(Ordering::Relaxed))
            < RATE_WINDOW.as_nanos() as u64;
        if self.depth.load(Ordering::Relaxed) >= UNDER_LOAD_DEPTH
            || (in_window && self.window_count.load(Ordering::Relaxed) >= INCOMING_PER_SECOND)
        {
            self.load_until
                .store(t + UNDER_LOAD_HOLD.as_nanos() as u64, Ordering::Relaxed);
            return true;
        }
        t < self.load_until.load(Ordering::Relaxed)
    }

    fn pop(&self, shared: &Shared) -> Option<Job> {
        let mut lanes = self.lanes.lock();
        loop {
            if shared.stopping() {
                return None;
            }
            if let Some(j) = lanes.own.pop_front() {
                return Some(j);
            }
            if let Some(j) = lanes.incoming.pop_front() {
                self.depth.store(lanes.incoming.len(), Ordering::Relaxed);
                return Some(j);
            }
            self.ready.wait(&mut lanes);
        }
    }

    pub(crate) fn wake_all(&self) {
        let _guard = self.lanes.lock();
        self.ready.notify_all();
    }
}

pub(crate) fn run(shared: Arc<Shared>) {
    while let Some(job) = shared.jobs.pop(&shared) {
        match job {
            Job::Precompute(state) => {
                if !state.removed.load(Ordering::Acquire) {
                    if let Err(e) = state.peer.precompute_static_static(&shared.identity) {
                        log::warn!("static-static DH for a peer failed: {e} (retried at its first handshake)");
                    }
                }
            }
            Job::Initiate(state) => initiate(&shared, &state),
            Job::Initiation { msg, src } => respond(&shared, &msg, src),
            Job::Response { msg, src } => complete(&shared, &msg, src),
            Job::ReplaceKey(replacement) => super::key_switch::apply(&shared, replacement),
        }
    }
}

fn initiate(shared: &Shared, state: &Arc<PeerState>) {
    state.initiation_queued.store(false, Ordering::Release);
    let is_retry = state.initiation_is_retry.swap(false, Ordering::AcqRel);
    if state.removed.load(Ordering::Acquire) {
        return;
    }
    let Some(endpoint) = state.peer.endpoint() else {
        shared.counters.discard(DropReason::NoEndpoint);
        return;
    };
    match state
        .peer
        .create_initiation(&shared.identity, &shared.index, is_retry, Instant::now())
    {
        Ok(msg) => match shared.udp.load().send_to(&msg, endpoint) {
            Ok(()) => {
                shared
                    .counters
                    .initiations_sent
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                log::debug!("sending initiation to {endpoint}: {e}");
                shared.counters.discard(DropReason::SendError);
            }
        },
        Err(e) => log::debug!("no initiation: {e}"),
    }
}

fn respond(shared: &Shared, msg: &[u8; INITIATION_LEN], src: SocketAddr) {
    let now = Instant::now();
    // The responder's one static-key operation (es), before we know who sent it.
    let received = match noise::consume_initiation(&shared.identity, msg) {
        Ok(r) => r,
        Err(e) => {
            log::debug!("initiation from {src} rejected: {e}");
            shared.counters.discard(DropReason::Handshake);
            return;
        }
    };
    let Some(state) = shared.peer_state(&received.initiator_public()) else {
        log::debug!("initiation from {src}: unknown peer");
        shared.counters.discard(DropReason::Handshake);
        return;
    };
    match state
        .peer
        .accept_initiation(&shared.identity, &shared.index, received, src, now)
    {
        Ok(response) => match shared.udp.load().send_to(&response, src) {
            Ok(()) => {
                shared
                    .counters
                    .responses_sent
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                log::debug!("sending response to {src}: {e}");
                shared.counters.discard(DropReason::SendError);
            }
        },
        Err(e) => {
            log::debug!("initiation from {src} refused: {e}");
            shared.counters.discard(DropReason::Handshake);
        }
    }
}

fn complete(shared: &Shared, msg: &[u8; RESPONSE_LEN], src: SocketAddr) {
    let now = Instant::now();
    let Some(peer) = noise::receiver_index(msg).and_then(|i| shared.index.get(i)) else {
        shared.counters.discard(DropReason::UnknownIndex);
        return;
    };
    // The initiator's one static-key operation (se).
    match peer.consume_response(&shared.identity, &shared.index, msg, src, now) {
        Ok(()) => {
            shared
                .counters
                .handshakes_completed
                .fetch_add(1, Ordering::Relaxed);
            if let Some(state) = shared.peer_state(&peer.public_key()) {
                // Send what waited for this session, or a keepalive to confirm it.
                shared.request_flush(&state);
            }
        }
        Err(e) => {
            log::debug!("response from {src} refused: {e}");
            shared.counters.discard(DropReason::Handshake);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn initiation() -> Job {
        Job::Initiation {
            msg: [0; INITIATION_LEN],
            src: "127.0.0.1:1".parse().unwrap(),
        }
    }

    /// A fast token keeps the queue short; the rate alone must still bring
    /// cookies in, so a flood cannot spend token operations without bound.
    #[test]
    fn a_high_rate_of_incoming_messages_is_load_even_with_a_short_queue() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        for i in 0..INCOMING_PER_SECOND {
            let now = t0 + Duration::from_millis(i * 10);
            assert!(!queue.under_load(now), "under load after {i} messages");
            assert!(queue.push_incoming(initiation(), now));
            // The worker keeps up: the queue never grows past one.
            queue.lanes.lock().incoming.clear();
            queue.depth.store(0, Ordering::Relaxed);
        }
        let now = t0 + Duration::from_millis(INCOMING_PER_SECOND * 10);
        assert!(queue.under_load(now));
        // Load is held for a second after it was last seen, then lifts.
        assert!(queue.under_load(now + Duration::from_millis(900)));
        assert!(!queue.under_load(now + RATE_WINDOW + UNDER_LOAD_HOLD));
    }

    #[test]
    fn a_slow_rate_is_never_load() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        for i in 0..100u64 {
            let now = t0 + Duration::from_millis(i * 100);
            assert!(!queue.under_load(now), "message {i}");
            assert!(queue.push_incoming(initiation(), now));
            queue.lanes.lock().incoming.clear();
            queue.depth.store(0, Ordering::Relaxed);
        }
    }
}
