//! The handshake worker's queue: three lanes, every job stamped with the time it arrived.
//!
//! Why it is shaped like this (issue 15): with a token taking 300 ms per ECDH and 40 peers on
//! distinct addresses all initiating at once, a plain FIFO answered initiations that their
//! senders had already replaced with a retry (every REKEY_TIMEOUT): 167 of 187 chip operations
//! were wasted and half the peers never got a session. So:
//!
//! - `own`: our own initiations (at most one per peer, cheap: no token operation once `ss` is
//!   cached) go first, so a flood of incoming messages cannot delay our rekeys.
//! - `incoming`: handshake messages from the network, bounded. A newer initiation from a source
//!   that already has one queued takes its place (and its turn): the initiator keeps only its
//!   latest handshake, so the older one could only waste a chip operation. An initiation that
//!   waited longer than REKEY_TIMEOUT is dropped unprocessed: its sender has retried by then.
//!   When several wait, messages from a configured peer's current endpoint (and responses, which
//!   answer our own initiations) are served before unknown sources.
//! - `precompute`: the per-peer static-static DH of newly added peers, only when nothing else
//!   waits (it is also computed lazily at the peer's first handshake), so a bulk `wg set` of
//!   N peers never queues N chip operations ahead of a rekey.
//!
//! "Under load", the signal the UDP thread uses to demand cookies, is the incoming lane's depth
//! (as in wireguard-go) or its rate: a token fast enough to keep the queue short must still not
//! be spent without bound, since every ECDH wears the SE050's NVM.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::PeerState;
use crate::noise::{INITIATION_LEN, RESPONSE_LEN};
use crate::sticky::LocalAddr;
use crate::timers::REKEY_TIMEOUT;

/// Incoming handshake messages the queue holds before dropping (wireguard-go: 1024). Long
/// enough for a storm of peers answering cookies at once; what waits too long is dropped
/// unprocessed when its turn comes, so a long queue never means answering stale messages.
const MAX_INCOMING: usize = 1024;
/// Initiations from one IP address (several peers behind one NAT, each its own port) queued at
/// once; a further one takes the place of that address's oldest. Under load a source needs a
/// cookie for its address and is rate-limited per address, but without this cap a flood from
/// many ports of one address would still fill the queue ahead of everyone else.
const MAX_PER_ADDRESS: usize = 4;
/// From this depth on the device is "under load": initiations need a valid mac2.
const UNDER_LOAD_DEPTH: usize = 2;
/// Once under load, stay so this long (wireguard-go keeps one second too).
const UNDER_LOAD_HOLD: Duration = Duration::from_secs(1);
/// Incoming handshake messages per second the worker takes before the device
/// counts as under load even with a short queue. Legitimate peers rekey every
/// two minutes (1,000 peers: about 8 a second); past this, initiations need a
/// cookie (mac2) and each source is rate-limited.
pub(crate) const INCOMING_PER_SECOND: u64 = 20;
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(1);
/// An initiation older than this is not answered: its initiator retried (REKEY_TIMEOUT plus
/// jitter after sending it) and discards a response to the old one.
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
    /// Key rotation: use this static key from now on (see key_switch.rs).
    ReplaceKey(super::key_switch::Replacement),
}

/// A job and the time it was queued (for an incoming initiation: when its latest version came).
pub(crate) struct Queued {
    pub(crate) job: Job,
    pub(crate) arrived: Instant,
}

/// What `push_incoming` did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// It replaced an older initiation from the same source (which is dropped).
    Replaced,
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
    /// Nanoseconds since `epoch` until which we count as under load.
    load_until: AtomicU64,
    /// Start (nanoseconds since `epoch`) of the current rate window, and the
    /// incoming messages queued in it.
    window_start: AtomicU64,
    window_count: AtomicU64,
    epoch: Instant,
}

fn source(job: &Job) -> Option<SocketAddr> {
    match job {
        Job::Initiation { src, .. } | Job::Response { src, .. } => Some(*src),
        Job::Initiate(_) | Job::ReplaceKey(_) => None,
    }
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

    pub(crate) fn push_own(&self, job: Job, now: Instant) {
        self.lanes
            .lock()
            .own
            .push_back(Queued { job, arrived: now });
        self.ready.notify_one();
    }

    /// Queue the static-static DH of a newly added peer, behind everything else.
    pub(crate) fn push_precompute(&self, state: Arc<PeerState>) {
        self.lanes.lock().precompute.push_back(state);
        self.ready.notify_one();
    }

    /// Queue an incoming handshake message that arrived at `now`.
    pub(crate) fn push_incoming(&self, job: Job, now: Instant) -> Pushed {
        let mut lanes = self.lanes.lock();
        if let Job::Initiation { src, .. } = &job {
            let src = *src;
            let same_source =
                |q: &Queued| matches!(q.job, Job::Initiation { src: s, .. } if s == src);
            let same_address =
                |q: &Queued| matches!(q.job, Job::Initiation { src: s, .. } if s.ip() == src.ip());
            // Only the newest initiation per source is worth a chip operation; and one address
            // gets at most MAX_PER_ADDRESS places.
            let slot = match lanes.incoming.iter().position(same_source) {
                Some(i) => Some(i),
                None if lanes.incoming.iter().filter(|q| same_address(q)).count()
                    >= MAX_PER_ADDRESS =>
                {
                    lanes.incoming.iter().position(same_address)
                }
                None => None,
            };
            if let Some(i) = slot {
                lanes.incoming[i] = Queued { job, arrived: now };
                self.count_incoming(now);
                return Pushed::Replaced;
            }
        }
        if lanes.incoming.len() >= MAX_INCOMING {
            return Pushed::Full;
        }
        self.count_incoming(now);
        lanes.incoming.push_back(Queued { job, arrived: now });
        self.depth.store(lanes.incoming.len(), Ordering::Relaxed);
        drop(lanes);
        self.ready.notify_one();
        Pushed::Queued
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

    /// Incoming messages waiting.
    pub(crate) fn incoming_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
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
        let before = lanes.incoming.len();
        lanes.incoming.retain(|q| {
            !(matches!(q.job, Job::Initiation { .. })
                && now.saturating_duration_since(q.arrived) > STALE_AFTER)
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
mod tests {
    use super::*;

    fn initiation_from(src: &str, tag: u8) -> Job {
        let mut msg = [0; INITIATION_LEN];
        msg[100] = tag;
        Job::Initiation {
            msg,
            src: src.parse().unwrap(),
            local: None,
        }
    }

    fn initiation() -> Job {
        initiation_from("127.0.0.1:1", 0)
    }

    fn none() -> HashSet<SocketAddr> {
        HashSet::new()
    }

    /// (source, tag) of the next incoming job, or None.
    fn next_incoming(
        q: &JobQueue,
        now: Instant,
        known: &HashSet<SocketAddr>,
    ) -> Option<(SocketAddr, u8)> {
        match q.take(now, known).next {
            Next::Job(Queued {
                job: Job::Initiation { msg, src, .. },
                ..
            }) => Some((src, msg[100])),
            Next::Job(Queued {
                job: Job::Response { msg, src, .. },
                ..
            }) => Some((src, msg[50])),
            _ => None,
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
            assert_eq!(queue.push_incoming(initiation(), now), Pushed::Queued);
            // The worker keeps up: the queue never grows past one.
            queue.take(now, &none());
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
            assert_eq!(queue.push_incoming(initiation(), now), Pushed::Queued);
            queue.take(now, &none());
        }
    }

    #[test]
    fn a_deep_queue_is_load() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        queue.push_incoming(initiation_from("10.0.0.1:1", 1), t0);
        assert!(!queue.under_load(t0));
        queue.push_incoming(initiation_from("10.0.0.2:1", 1), t0);
        assert!(queue.under_load(t0));
    }

    #[test]
    fn an_initiation_older_than_rekey_timeout_is_dropped_unprocessed() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        queue.push_incoming(initiation_from("10.0.0.1:1", 1), t0);
        queue.push_incoming(
            initiation_from("10.0.0.2:1", 2),
            t0 + Duration::from_secs(3),
        );
        let t = t0 + STALE_AFTER + Duration::from_millis(1);
        let taken = queue.take(t, &none());
        assert_eq!(taken.stale_dropped, 1);
        match taken.next {
            Next::Job(Queued {
                job: Job::Initiation { msg, .. },
                arrived,
            }) => {
                assert_eq!(msg[100], 2);
                assert_eq!(
                    arrived,
                    t0 + Duration::from_secs(3),
                    "the job carries its arrival"
                );
            }
            _ => panic!("the fresh initiation should be next"),
        }
        // Exactly at the limit it is still answered.
        queue.push_incoming(initiation_from("10.0.0.3:1", 3), t);
        assert_eq!(queue.take(t + STALE_AFTER, &none()).stale_dropped, 0);
    }

    #[test]
    fn a_newer_initiation_from_a_source_replaces_the_queued_one_in_its_place() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        assert_eq!(
            queue.push_incoming(initiation_from("10.0.0.1:1", 1), t0),
            Pushed::Queued
        );
        assert_eq!(
            queue.push_incoming(initiation_from("10.0.0.2:1", 2), t0),
            Pushed::Queued
        );
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(
            queue.push_incoming(initiation_from("10.0.0.1:1", 3), t1),
            Pushed::Replaced
        );
        // Another port on the same address is another source (another peer behind a NAT).
        assert_eq!(
            queue.push_incoming(initiation_from("10.0.0.1:2", 4), t1),
            Pushed::Queued
        );
        assert_eq!(queue.incoming_depth(), 3);
        let t2 = t0 + Duration::from_secs(6);
        // 10.0.0.1:1 kept its turn with its newest message; 10.0.0.2 went stale meanwhile.
        let first = queue.take(t2, &none());
        assert_eq!(first.stale_dropped, 1);
        assert_eq!(
            next_incoming(&queue, t2, &none()),
            Some(("10.0.0.1:2".parse().unwrap(), 4))
        );
        match first.next {
            Next::Job(Queued {
                job: Job::Initiation { msg, src, .. },
                ..
            }) => assert_eq!((src, msg[100]), ("10.0.0.1:1".parse().unwrap(), 3)),
            _ => panic!("expected the replaced initiation"),
        }
    }

    #[test]
    fn known_endpoints_and_responses_are_served_before_unknown_sources() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        for i in 1..=3u8 {
            queue.push_incoming(initiation_from(&format!("10.0.0.{i}:1"), i), t0);
        }
        let mut msg = [0; RESPONSE_LEN];
        msg[50] = 9;
        queue.push_incoming(
            Job::Response {
                msg,
                src: "10.0.0.8:1".parse().unwrap(),
                local: None,
            },
            t0,
        );
        let known: HashSet<SocketAddr> = ["10.0.0.3:1".parse().unwrap()].into();
        let order: Vec<u8> = (0..4)
            .map(|_| next_incoming(&queue, t0, &known).unwrap().1)
            .collect();
        assert_eq!(order, [3, 9, 1, 2]);
        assert!(next_incoming(&queue, t0, &known).is_none());
    }

    #[test]
    fn one_address_holds_at_most_a_few_places() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        for port in 1..=MAX_PER_ADDRESS as u16 {
            let src = format!("10.0.0.1:{port}");
            assert_eq!(
                queue.push_incoming(initiation_from(&src, port as u8), t0),
                Pushed::Queued
            );
        }
        assert_eq!(
            queue.push_incoming(initiation_from("10.0.0.2:1", 50), t0),
            Pushed::Queued
        );
        // A fifth port of the same address replaces that address's oldest entry.
        assert_eq!(
            queue.push_incoming(initiation_from("10.0.0.1:99", 99), t0),
            Pushed::Replaced
        );
        assert_eq!(queue.incoming_depth(), MAX_PER_ADDRESS + 1);
        let order: Vec<u8> = (0..=MAX_PER_ADDRESS)
            .map(|_| next_incoming(&queue, t0, &none()).unwrap().1)
            .collect();
        assert_eq!(order, [99, 2, 3, 4, 50]);
    }

    fn peer_state() -> Arc<PeerState> {
        use std::sync::atomic::AtomicBool;
        Arc::new(PeerState {
            peer: crate::peer::Peer::new([9; 32], None, None, 0, Instant::now()),
            staged: Mutex::new(VecDeque::new()),
            has_staged: AtomicBool::new(false),
            initiation_queued: AtomicBool::new(false),
            initiation_is_retry: AtomicBool::new(false),
            flush_pending: AtomicBool::new(false),
            removed: AtomicBool::new(false),
        })
    }

    /// A bulk `wg set` of new peers queues their static-static DHs behind every handshake
    /// message: they run only when nothing else waits.
    #[test]
    fn precomputation_waits_for_handshakes_and_our_initiations() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        for _ in 0..3 {
            queue.push_precompute(peer_state());
        }
        queue.push_incoming(initiation_from("10.0.0.1:1", 1), t0);
        queue.push_own(Job::Initiate(peer_state()), t0);
        assert!(matches!(
            queue.take(t0, &none()).next,
            Next::Job(Queued {
                job: Job::Initiate(_),
                ..
            })
        ));
        assert_eq!(
            next_incoming(&queue, t0, &none()),
            Some(("10.0.0.1:1".parse().unwrap(), 1))
        );
        for _ in 0..3 {
            assert!(matches!(queue.take(t0, &none()).next, Next::Precompute(_)));
        }
        assert!(matches!(queue.take(t0, &none()).next, Next::Nothing));
    }

    #[test]
    fn the_lane_is_bounded() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        for i in 0..MAX_INCOMING {
            let src = format!("10.0.{}.{}:1", i / 200, i % 200 + 1);
            assert_eq!(
                queue.push_incoming(initiation_from(&src, 0), t0),
                Pushed::Queued
            );
        }
        assert_eq!(
            queue.push_incoming(initiation_from("10.9.9.9:1", 0), t0),
            Pushed::Full
        );
        // A retry of a queued source still takes its place.
        assert_eq!(
            queue.push_incoming(initiation_from("10.0.0.1:1", 0), t0),
            Pushed::Replaced
        );
    }
}
