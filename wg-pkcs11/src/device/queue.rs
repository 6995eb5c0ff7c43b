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

    /// One very slow chip operation (a token that hung until its lock timeout) must not make
    /// every later initiation stale before it is taken: the estimate only comes down again
    /// through operations.
    #[test]
    fn a_very_slow_operation_does_not_make_every_initiation_stale() {
        let queue = JobQueue::new();
        queue.note_chip_time(Duration::from_secs(60));
        assert!(queue.chip_time() > STALE_AFTER);
        let t0 = Instant::now();
        queue.push_incoming(initiation_from("10.0.0.1:1", 1), t0);
        let taken = queue.take(t0 + Duration::from_millis(500), &none());
        assert_eq!(taken.stale_dropped, 0);
        assert!(matches!(taken.next, Next::Job(_)));
    }

    /// The queue's depth counts in chip time: four waiting messages are a second of a 300 ms
    /// chip's work, but 33 of a 30 ms chip's.
    #[test]
    fn the_backlog_in_chip_time_is_load() {
        for (chip_ms, not_yet) in [(300u64, 3usize), (30, 33)] {
            let queue = JobQueue::new();
            for _ in 0..32 {
                queue.note_chip_time(Duration::from_millis(chip_ms));
            }
            let t0 = Instant::now();
            for i in 0..not_yet {
                queue.push_incoming(
                    initiation_from(&format!("10.0.{}.{}:1", i / 200, i % 200), 1),
                    t0,
                );
            }
            assert!(!queue.under_load(t0), "{chip_ms} ms: {not_yet} waiting");
            queue.push_incoming(initiation_from("10.9.0.1:1", 1), t0);
            assert!(queue.under_load(t0), "{chip_ms} ms: one more");
            // Held for a second after the backlog was last seen, then lifted.
            while !matches!(queue.take(t0, &none()).next, Next::Nothing) {}
            assert!(queue.under_load(t0 + Duration::from_millis(900)));
            assert!(!queue.under_load(t0 + UNDER_LOAD_HOLD));
        }
    }

    /// A blind spoofer's initiations never authenticate: after a few, it gets cookies (which
    /// it never sees), and its chip operations are bounded by the waste budget, however fast
    /// the chip keeps the queue short.
    #[test]
    fn chip_operations_wasted_on_unauthenticated_messages_bring_load() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        for i in 0..WASTE_BURST {
            assert!(!queue.under_load(t0), "after {i} wasted");
            queue.note_wasted(t0);
        }
        assert!(queue.under_load(t0));
        assert!(queue.under_load(t0 + WASTE_INTERVAL - Duration::from_millis(1)));
        // One more comes free every interval; spending it brings the load back.
        let t1 = t0 + WASTE_INTERVAL;
        assert!(!queue.under_load(t1));
        queue.note_wasted(t1);
        assert!(queue.under_load(t1));
        // A spoofer that sends whenever it is let in gets one operation per interval.
        let mut wasted = 0;
        let mut now = t1;
        while now < t1 + Duration::from_secs(60) {
            if !queue.under_load(now) {
                queue.note_wasted(now);
                wasted += 1;
            }
            now += Duration::from_millis(67);
        }
        let per_minute = 60 / WASTE_INTERVAL.as_secs();
        assert!((per_minute - 1..=per_minute).contains(&wasted), "{wasted}");
        // Without waste, the budget refills completely.
        let later = now + WASTE_INTERVAL * WASTE_BURST as u32;
        for _ in 0..WASTE_BURST - 1 {
            queue.note_wasted(later);
        }
        assert!(!queue.under_load(later));
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
        // The answer takes one chip operation (100 ms until one was measured): it must leave
        // within REKEY_TIMEOUT of the initiation.
        let answer_by = STALE_AFTER - INITIAL_CHIP_TIME;
        let t = t0 + answer_by + Duration::from_millis(1);
        let taken = queue.take(t, &none());
        assert_eq!(taken.stale_dropped, 1);
        match taken.next {
            Next::Job(Queued {
                job: Job::Initiation { msg, .. },
                arrived,
                ..
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
        assert_eq!(queue.take(t + answer_by, &none()).stale_dropped, 0);
    }

    /// Issue 20: anyone can make a valid mac1 and spoof a peer's address. A newer initiation
    /// from the same source waits behind the queued one, it never takes its place: the queued
    /// one may be the peer's real initiation and the newer one garbage.
    #[test]
    fn a_newer_initiation_from_the_same_source_never_displaces_the_queued_one() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        let peer = "10.0.0.1:1";
        assert_eq!(
            queue.push_incoming(initiation_from(peer, 1), t0),
            Pushed::Queued
        );
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(
            queue.push_incoming(initiation_from(peer, 2), t1),
            Pushed::Queued
        );
        assert_eq!(queue.incoming_depth(), 2);
        let order: Vec<u8> = (0..2)
            .map(|_| next_incoming(&queue, t1, &none()).unwrap().1)
            .collect();
        assert_eq!(order, [1, 2], "first in, first out");
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
        // A fifth port of the same address is refused; what waits stays.
        assert_eq!(
            queue.push_incoming(initiation_from("10.0.0.1:99", 99), t0),
            Pushed::AddressFull
        );
        assert_eq!(queue.incoming_depth(), MAX_PER_ADDRESS + 1);
        let order: Vec<u8> = (0..=MAX_PER_ADDRESS)
            .map(|_| next_incoming(&queue, t0, &none()).unwrap().1)
            .collect();
        assert_eq!(order, [1, 2, 3, 4, 50]);
    }

    /// The places of a spoofed address filled with garbage before load set in do not lock its
    /// real owner out: its retry carries the cookie's mac2 and takes an unproven one's place.
    #[test]
    fn a_proven_initiation_takes_an_unproven_ones_place_in_a_full_address() {
        let queue = JobQueue::new();
        let t0 = Instant::now();
        for port in 1..=MAX_PER_ADDRESS as u8 {
            queue.push_incoming(initiation_from("10.0.0.1:1", port), t0);
        }
        assert!(!queue.under_load(t0));
        assert_eq!(
            queue.push_incoming(initiation_from("10.0.0.1:1", 50), t0),
            Pushed::AddressFull
        );
        assert!(queue.under_load(t0), "a full address is load");
        assert_eq!(
            queue.push_incoming_from(initiation_from("10.0.0.1:1", 99), t0, true),
            Pushed::DisplacedUnproven
        );
        assert_eq!(queue.incoming_depth(), MAX_PER_ADDRESS);
        let order: Vec<u8> = (0..MAX_PER_ADDRESS)
            .map(|_| next_incoming(&queue, t0, &none()).unwrap().1)
            .collect();
        assert_eq!(order, [2, 3, 4, 99]);
        // Proven ones are never displaced.
        for tag in 1..=MAX_PER_ADDRESS as u8 {
            queue.push_incoming_from(initiation_from("10.0.0.1:1", tag), t0, true);
        }
        assert_eq!(
            queue.push_incoming_from(initiation_from("10.0.0.1:1", 9), t0, true),
            Pushed::AddressFull
        );
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
        // A retry of a queued source takes no one's place either.
        assert_eq!(
            queue.push_incoming(initiation_from("10.0.0.1:1", 0), t0),
            Pushed::Full
        );
    }
}
