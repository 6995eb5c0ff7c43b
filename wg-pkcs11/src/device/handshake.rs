//! The handshake worker: the only thread that runs static-key operations
//! (a token takes tens of milliseconds each), fed by a queue the packet
//! threads push to and never wait on.
//!
//! Two lanes: our own initiations (at most one queued per peer) go first, so a
//! flood of incoming initiations cannot delay our rekeys; incoming handshake
//! messages are bounded and dropped when the lane is full. The incoming lane's
//! depth is the "under load" signal the UDP thread uses to demand cookies.

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
    epoch: Instant,
}

impl JobQueue {
    pub(crate) fn new() -> JobQueue {
        JobQueue {
            lanes: Mutex::new(Lanes::default()),
            ready: Condvar::new(),
            depth: AtomicUsize::new(0),
            load_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub(crate) fn push_own(&self, job: Job) {
        self.lanes.lock().own.push_back(job);
        self.ready.notify_one();
    }

    /// Queue an incoming handshake message; false (dropped) when full.
    pub(crate) fn push_incoming(&self, job: Job) -> bool {
        let mut lanes = self.lanes.lock();
        if lanes.incoming.len() >= MAX_INCOMING {
            return false;
        }
        lanes.incoming.push_back(job);
        self.depth.store(lanes.incoming.len(), Ordering::Relaxed);
        drop(lanes);
        self.ready.notify_one();
        true
    }

    /// Whether initiations must carry a valid mac2 before they are queued.
    pub(crate) fn under_load(&self, now: Instant) -> bool {
        let t = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        if self.depth.load(Ordering::Relaxed) >= UNDER_LOAD_DEPTH {
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
