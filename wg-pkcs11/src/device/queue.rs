//! The handshake worker's queue: three lanes, every job stamped with the time it arrived.
//!
//! Why it is shaped like this (issues 15 and 20): with a token taking 300 ms per ECDH, the
//! responder's one token operation (es) comes BEFORE it can tell who sent an initiation, and
//! anyone who knows our public key can make a valid mac1. So nothing a packet does before it
//! authenticated may displace or invalidate anything:
//!
//! - `own`: our own initiations (at most one per peer, cheap: no token operation once `ss` is
//!   cached) go first, so a flood of incoming messages cannot delay our rekeys.
//! - `incoming`: handshake messages from the network, bounded, first in first out as in the
//!   kernel. A newer initiation from the same source never replaces a queued one (a spoofer of
//!   a peer's address would otherwise overwrite the peer's real initiation); a genuine initiator
//!   sends at most one initiation per REKEY_TIMEOUT, so its older one is stale (below) by the
//!   time its retry comes. An initiation whose answer could not leave before its sender retries
//!   (it waited REKEY_TIMEOUT less the expected chip time) is dropped unprocessed. When several
//!   wait, messages from a configured peer's current endpoint (and responses, which answer our
//!   own initiations) are served before unknown sources.
//! - `precompute`: the per-peer static-static DH of newly added peers, only when nothing else
//!   waits (it is also computed lazily at the peer's first handshake), so a bulk `wg set` of
//!   N peers never queues N chip operations ahead of a rekey.
//!
//! "Under load", the signal the UDP thread uses to demand cookies (mac2) before queueing, is
//! measured in chip time, not packets a second: (1) the backlog, the waiting messages times the
//! measured time of one chip operation, reaching UNDER_LOAD_BACKLOG (held for a second, as
//! wireguard-go); (2) the chip's budget for handshake messages that did not authenticate
//! (`note_wasted`) running out: a few, then one per WASTE_INTERVAL. A genuine peer's message
//! authenticates, so only garbage (or a replay, or an unknown key) draws on that budget, and a
//! blind spoofer, who never sees the cookie, costs at most one chip operation per WASTE_INTERVAL
//! whatever the chip's speed; the real peer gets the cookie and retries with mac2.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::PeerState;
use crate::key::StaticKey;
use crate::noise::{INITIATION_LEN, RESPONSE_LEN};
use crate::sticky::LocalAddr;
use crate::timers::REKEY_TIMEOUT;

/// Incoming handshake messages the queue holds before dropping (wireguard-go: 1024). Long
/// enough for a storm of peers answering cookies at once; what waits too long is dropped
/// unprocessed when its turn comes, so a long queue never means answering stale messages.
const MAX_INCOMING: usize = 1024;
/// Initiations from one IP address (several peers behind one NAT, each its own port) queued at
/// once; a further one is refused (never swapped for a queued one: the newcomer is no more
/// authentic than what waits). Under load a source needs a cookie for its address and is
/// rate-limited per address, but without this cap a flood from many ports of one address would
/// still fill the queue ahead of everyone else.
const MAX_PER_ADDRESS: usize = 4;
/// From this much expected chip work waiting on, the device is "under load": initiations need a
/// valid mac2. With a 300 ms chip that is four waiting messages; a software key never gets there.
pub(crate) const UNDER_LOAD_BACKLOG: Duration = Duration::from_secs(1);
/// Once the backlog made us under load, stay so this long (wireguard-go keeps one second too).
const UNDER_LOAD_HOLD: Duration = Duration::from_secs(1);
/// Chip operations spent on handshake messages that then failed to authenticate (garbage, a
/// replay, an unknown key) that are tolerated at once before the device counts as under load...
pub(crate) const WASTE_BURST: u64 = 3;
/// ...and then one per this interval: a peer we no longer know, retrying every REKEY_TIMEOUT,
/// stays within it; a spoofer does not.
pub(crate) const WASTE_INTERVAL: Duration = REKEY_TIMEOUT;
/// The time of one chip operation assumed before the first one was measured.
const INITIAL_CHIP_TIME: Duration = Duration::from_millis(100);
/// An initiation older than this is not answered: its initiator retried (REKEY_TIMEOUT plus
/// jitter after sending it) and discards a response to the old one. The answer itself takes a
/// chip operation: `take` drops what cannot be answered in time.
pub(crate) const STALE_AFTER: Duration = REKEY_TIMEOUT;

pub(crate) enum Job {
    Initiate(Arc<PeerState>),
    Initiation {
        msg: [u8; INITIATION_LEN],
        src: SocketAddr,
        /// The local address it arrived on: the response leaves from it (sticky source).
        local: Option<LocalAddr>,
    },
    Response {
        msg: [u8; RESPONSE_LEN],
        src: SocketAddr,
        local: Option<LocalAddr>,
    },
    /// Key rotation: use this static key from now on (see key_switch.rs), then say so on `done`.
    ReplaceKey {
        key: Arc<dyn StaticKey>,
        done: mpsc::Sender<()>,
    },
}

/// A job and the time it was queued.
pub(crate) struct Queued {
    pub(crate) job: Job,
    pub(crate) arrived: Instant,
    /// It carried a valid mac2: its sender received our cookie at its source address (a blind
    /// spoofer of that address cannot).
    pub(crate) proven: bool,
}

/// What `push_incoming` did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Its address already holds MAX_PER_ADDRESS places: refused (the device is under load
    /// from now on), nothing queued was touched.
    AddressFull,
    /// It carried a valid mac2 and took the place of one from its address that did not (whose
    /// source was only claimed): only a sender that can receive at that address can do this.
    DisplacedUnproven,
    /// The lane is full.
    Full,
}

/// The next thing for the worker to do, and the stale initiations dropped to reach it.
pub(crate) struct Taken {
    pub(crate) next: Next,
    pub(crate) stale_dropped: u64,
}

/// Returned by value once per job and never stored: the size of its largest variant (an
/// initiation, its source and the local address it came to) costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Next {
    Job(Queued),
    Precompute(Arc<PeerState>),
    /// Only stale messages were waiting.
    Nothing,
}

#[derive(Default)]
struct Lanes {
    own: VecDeque<Queued>,
    incoming: VecDeque<Queued>,
    precompute: VecDeque<Arc<PeerState>>,
}

pub(crate) struct JobQueue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
    depth: AtomicUsize,
    /// Nanoseconds since `epoch` until which we count as under load (the backlog's hold).
    load_until: AtomicU64,
    /// The measured time of one chip operation (nanoseconds, a moving average).
    chip_nanos: AtomicU64,
    /// The waste budget as a theoretical arrival time (GCRA, nanoseconds since `epoch`): each
    /// wasted chip operation pushes it WASTE_INTERVAL on from max(it, now); the budget is spent
    /// while it lies more than (WASTE_BURST - 1) intervals ahead of now.
    waste_tat: AtomicU64,
    epoch: Instant,
}

fn source(job: &Job) -> Option<SocketAddr> {
    match job {
        Job::Initiation { src, .. } | Job::Response { src, .. } => Some(*src),
        Job::Initiate(_) | Job::ReplaceKey { .. } => None,
    }
}

impl JobQueue {
    pub(crate) fn new() -> JobQueue {
        JobQueue {
            lanes: Mutex::new(Lanes::default()),
            ready: Condvar::new(),
            depth: AtomicUsize::new(0),
            load_until: AtomicU64::new(0),
            chip_nanos: AtomicU64::new(INITIAL_CHIP_TIME.as_nanos() as u64),
            waste_tat: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub(crate) fn push_own(&self, job: Job, now: Instant) {
        self.lanes.lock().own.push_back(Queued {
            job,
            arrived: now,
            proven: true,
        });
        self.ready.notify_one();
    }

    /// Queue the static-static DH of a newly added peer, behind everything else.
    pub(crate) fn push_precompute(&self, state: Arc<PeerState>) {
        self.lanes.lock().precompute.push_back(state);
        self.ready.notify_one();
    }

    /// Queue an incoming handshake message (without proof of its source) that arrived at `now`.
    #[cfg(test)]
    pub(crate) fn push_incoming(&self, job: Job, now: Instant) -> Pushed {
        self.push_incoming_from(job, now, false)
    }

    /// Queue an incoming handshake message that arrived at `now`, at the end of the lane;
    /// `proven`: it carried a valid mac2.
    pub(crate) fn push_incoming_from(&self, job: Job, now: Instant, proven: bool) -> Pushed {
        let mut lanes = self.lanes.lock();
        if let Job::Initiation { src, .. } = &job {
            let ip = src.ip();
            let same_address =
                |q: &Queued| matches!(q.job, Job::Initiation { src: s, .. } if s.ip() == ip);
            let from_address = lanes.incoming.iter().filter(|q| same_address(q)).count();
            if from_address >= MAX_PER_ADDRESS {
                // One address filling its places is load: from now on it needs cookies, and a
                // blind spoofer of it gets no further.
                self.load_until.store(
                    self.nanos(now) + UNDER_LOAD_HOLD.as_nanos() as u64,
                    Ordering::Relaxed,
                );
                let unproven = lanes
                    .incoming
                    .iter()
                    .position(|q| same_address(q) && !q.proven);
                return match unproven {
                    Some(i) if proven => {
                        lanes.incoming.remove(i);
                        lanes.incoming.push_back(Queued {
                            job,
                            arrived: now,
                            proven,
                        });
                        drop(lanes);
                        self.ready.notify_one();
                        Pushed::DisplacedUnproven
                    }
                    _ => Pushed::AddressFull,
                };
            }
        }
        if lanes.incoming.len() >= MAX_INCOMING {
            return Pushed::Full;
        }
        lanes.incoming.push_back(Queued {
            job,
            arrived: now,
            proven,
        });
        self.depth.store(lanes.incoming.len(), Ordering::Relaxed);
        drop(lanes);
        self.ready.notify_one();
        Pushed::Queued
    }

    fn nanos(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Incoming messages waiting.
    pub(crate) fn incoming_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// The measured time of one chip operation.
    pub(crate) fn chip_time(&self) -> Duration {
        Duration::from_nanos(self.chip_nanos.load(Ordering::Relaxed))
    }

    /// Handshake worker: one chip operation took `took` (a moving average of 1/4 weight, so one
    /// slow operation, a reconnect, moves it without deciding it).
    pub(crate) fn note_chip_time(&self, took: Duration) {
        let sample = took.as_nanos().min(u128::from(u64::MAX / 4)) as u64;
        let old = self.chip_nanos.load(Ordering::Relaxed);
        self.chip_nanos
            .store(old - old / 4 + sample / 4, Ordering::Relaxed);
    }

    /// Handshake worker: a chip operation was spent on a handshake message that did not
    /// authenticate (or was a replay, or came from an unknown key): it answered nothing.
    pub(crate) fn note_wasted(&self, now: Instant) {
        let t = self.nanos(now);
        let tat = self.waste_tat.load(Ordering::Relaxed).max(t);
        self.waste_tat
            .store(tat + WASTE_INTERVAL.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The expected chip time of what waits in the incoming lane.
    pub(crate) fn backlog(&self) -> Duration {
        self.chip_time() * self.incoming_depth().min(u32::MAX as usize) as u32
    }

    /// Whether initiations must carry a valid mac2 before they are queued.
    pub(crate) fn under_load(&self, now: Instant) -> bool {
        let t = self.nanos(now);
        if self.backlog() >= UNDER_LOAD_BACKLOG {
            self.load_until
                .store(t + UNDER_LOAD_HOLD.as_nanos() as u64, Ordering::Relaxed);
            return true;
        }
        let waste_ahead = self.waste_tat.load(Ordering::Relaxed).saturating_sub(t);
        waste_ahead > (WASTE_INTERVAL * (WASTE_BURST as u32 - 1)).as_nanos() as u64
            || t < self.load_until.load(Ordering::Relaxed)
    }

    /// Block until there is something to take (false: `stopping` said stop).
    pub(crate) fn wait(&self, stopping: impl Fn() -> bool) -> bool {
        let mut lanes = self.lanes.lock();
        loop {
            if stopping() {
                return false;
            }
            if !(lanes.own.is_empty() && lanes.incoming.is_empty() && lanes.precompute.is_empty()) {
                return true;
            }
            self.ready.wait(&mut lanes);
        }
    }

    /// Take the next job at `now`. `known` holds the configured peers' current endpoints.
    pub(crate) fn take(&self, now: Instant, known: &HashSet<SocketAddr>) -> Taken {
        let mut lanes = self.lanes.lock();
        if let Some(q) = lanes.own.pop_front() {
            return Taken {
                next: Next::Job(q),
                stale_dropped: 0,
            };
        }
        // Answered now, the response leaves one chip operation later: it must leave before the
        // initiator's retry (REKEY_TIMEOUT after it sent), or it answers nothing. A chip time
        // measured once as very long (a hung token) may not make every initiation stale: then
        // none would run, and the estimate would never come down again.
        let answer_by = STALE_AFTER.saturating_sub(self.chip_time().min(STALE_AFTER / 2));
        let before = lanes.incoming.len();
        lanes.incoming.retain(|q| {
            !(matches!(q.job, Job::Initiation { .. })
                && now.saturating_duration_since(q.arrived) > answer_by)
        });
        let stale_dropped = (before - lanes.incoming.len()) as u64;
        let preferred = lanes.incoming.iter().position(|q| {
            matches!(q.job, Job::Response { .. })
                || source(&q.job).is_some_and(|s| known.contains(&s))
        });
        let next = match preferred.or((!lanes.incoming.is_empty()).then_some(0)) {
            Some(i) => Next::Job(lanes.incoming.remove(i).expect("index in range")),
            None => match lanes.precompute.pop_front() {
                Some(state) => Next::Precompute(state),
                None => Next::Nothing,
            },
        };
        self.depth.store(lanes.incoming.len(), Ordering::Relaxed);
        Taken {
            next,
            stale_dropped,
        }
    }

    pub(crate) fn wake_all(&self) {
        let _guard = self.lanes.lock();
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests;
