//! Unit tests of `queue.rs`: the lanes' order, staleness, the per-address cap, load in chip time.

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
