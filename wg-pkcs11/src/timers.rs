//! WireGuard's timers (the kernel's timers.c), as a state machine driven by an explicit clock.
//!
//! The device reports events (`data_sent`, `handshake_initiated`, ...) with the time they
//! happened and calls `tick(now)` regularly (or at `next_deadline()`); `tick` returns what is due:
//! send an initiation, send a keepalive, zero the keys. Nothing here sleeps or sends.

use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

/// After this many messages a session is renewed.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// After this many messages a session is no longer used (the replay window's margin kept).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// The initiator renews a session this old when it sends.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// No session older than this is used.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Initiations are retried for this long, then given up.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// An unanswered initiation is retried after this (plus jitter); also the minimum interval
/// between initiations to one peer.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// A keepalive answers data received when nothing was sent back for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries before giving up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT.
pub const MAX_TIMER_HANDSHAKES: u32 =
    (REKEY_ATTEMPT_TIME.as_secs() / REKEY_TIMEOUT.as_secs()) as u32;
/// Upper bound of the random jitter added to handshake timers.
pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(333);

fn jitter() -> Duration {
    Duration::from_millis(u64::from(
        OsRng.next_u32() % REKEY_TIMEOUT_JITTER_MAX.as_millis() as u32,
    ))
}

/// What `tick` found due. The device acts on every flag that is set.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TimerActions {
    /// Send a handshake initiation (`Peer::create_initiation`).
    pub send_initiation: bool,
    /// That initiation is a retry of an unanswered one (the attempt counter keeps running).
    pub initiation_is_retry: bool,
    /// Send a keepalive (an empty transport message) if there is a session.
    pub send_keepalive: bool,
    /// Drop every session and pending handshake of the peer (`Peer::zero_keys`).
    pub zero_keys: bool,
    /// REKEY_ATTEMPT_TIME passed without an answer: drop the packets queued for the peer.
    pub handshake_gave_up: bool,
}

impl TimerActions {
    /// Whether nothing is due.
    pub fn is_empty(&self) -> bool {
        *self == TimerActions::default()
    }
}

/// The timers of one peer: each is a deadline, `None` when not armed.
#[derive(Debug, Clone)]
pub struct Timers {
    retransmit_handshake: Option<Instant>,
    send_keepalive: Option<Instant>,
    new_handshake: Option<Instant>,
    zero_key_material: Option<Instant>,
    persistent_keepalive: Option<Instant>,
    handshake_attempts: u32,
    need_another_keepalive: bool,
    persistent_keepalive_interval: u16,
}

impl Timers {
    /// Timers of a new peer; `persistent_keepalive_interval` in seconds, 0 = off.
    pub fn new(persistent_keepalive_interval: u16) -> Timers {
        Timers {
            retransmit_handshake: None,
            send_keepalive: None,
            new_handshake: None,
            zero_key_material: None,
            persistent_keepalive: None,
            handshake_attempts: 0,
            need_another_keepalive: false,
            persistent_keepalive_interval,
        }
    }

    /// Change the persistent keepalive interval (seconds, 0 = off); a new non-zero interval
    /// sends a keepalive at once, as `wg set ... persistent-keepalive` does.
    pub fn set_persistent_keepalive(&mut self, seconds: u16, now: Instant) {
        let was = self.persistent_keepalive_interval;
        self.persistent_keepalive_interval = seconds;
        self.persistent_keepalive = if seconds == 0 {
            None
        } else if was == 0 {
            Some(now)
        } else {
            Some(now + Duration::from_secs(seconds.into()))
        };
    }

    pub fn persistent_keepalive_interval(&self) -> u16 {
        self.persistent_keepalive_interval
    }

    /// A data message (not a keepalive) was sent: expect an answer within KEEPALIVE_TIMEOUT +
    /// REKEY_TIMEOUT, or start a new handshake.
    pub fn data_sent(&mut self, now: Instant) {
        if self.new_handshake.is_none() {
            self.new_handshake = Some(now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter());
        }
    }

    /// A data message (not a keepalive) was received: answer with a keepalive if we send nothing.
    pub fn data_received(&mut self, now: Instant) {
        if self.send_keepalive.is_none() {
            self.send_keepalive = Some(now + KEEPALIVE_TIMEOUT);
        } else {
            self.need_another_keepalive = true;
        }
    }

    /// Any authenticated message (transport, keepalive, handshake) was sent.
    pub fn any_authenticated_packet_sent(&mut self) {
        self.send_keepalive = None;
    }

    /// Any authenticated message was received: the peer is alive.
    pub fn any_authenticated_packet_received(&mut self) {
        self.new_handshake = None;
    }

    /// Any authenticated message went either way: push back the persistent keepalive.
    pub fn any_authenticated_packet_traversal(&mut self, now: Instant) {
        if self.persistent_keepalive_interval > 0 {
            self.persistent_keepalive =
                Some(now + Duration::from_secs(self.persistent_keepalive_interval.into()));
        }
    }

    /// A handshake was asked for by anything but the retransmit timer (a packet waiting for a
    /// session, a rekey, the new-handshake timer), whether or not an initiation can go out now:
    /// the attempts start over, as the kernel's wg_packet_send_queued_handshake_initiation does
    /// before its REKEY_TIMEOUT check. So a peer we keep sending to is retried for as long as we
    /// send, and its waiting packets are dropped only REKEY_ATTEMPT_TIME after the last one.
    pub fn handshake_wanted(&mut self) {
        self.handshake_attempts = 0;
    }

    /// An initiation was sent (`is_retry`: by the retransmit timer).
    pub fn handshake_initiated(&mut self, now: Instant, is_retry: bool) {
        if !is_retry {
            self.handshake_attempts = 0;
        }
        self.retransmit_handshake = Some(now + REKEY_TIMEOUT + jitter());
    }

    /// A handshake completed (response received, or the responder's first transport message).
    pub fn handshake_complete(&mut self) {
        self.retransmit_handshake = None;
        self.handshake_attempts = 0;
    }

    /// A session was derived: its keys are zeroed after 3 x REJECT_AFTER_TIME unless renewed.
    pub fn session_derived(&mut self, now: Instant) {
        self.zero_key_material = Some(now + REJECT_AFTER_TIME * 3);
    }

    /// Stop every timer (the peer is removed or its keys were zeroed by hand).
    pub fn stop(&mut self) {
        let interval = self.persistent_keepalive_interval;
        *self = Timers::new(interval);
    }

    /// Handshake retries made since the last new initiation.
    pub fn handshake_attempts(&self) -> u32 {
        self.handshake_attempts
    }

    /// The earliest armed deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.retransmit_handshake,
            self.send_keepalive,
            self.new_handshake,
            self.zero_key_material,
            self.persistent_keepalive,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fire every timer whose deadline is at or before `now`.
    pub fn tick(&mut self, now: Instant) -> TimerActions {
        let mut actions = TimerActions::default();
        let due = |deadline: &mut Option<Instant>| match *deadline {
            Some(t) if t <= now => {
                *deadline = None;
                true
            }
            _ => false,
        };

        if due(&mut self.retransmit_handshake) {
            // `>` as timers.c's wg_expired_retransmit_handshake: the first initiation plus
            // MAX_TIMER_HANDSHAKES + 1 retries, then give up.
            if self.handshake_attempts > MAX_TIMER_HANDSHAKES {
                // Tried for REKEY_ATTEMPT_TIME: give up, and clean up what is left later.
                self.send_keepalive = None;
                actions.handshake_gave_up = true;
                if self.zero_key_material.is_none() {
                    self.zero_key_material = Some(now + REJECT_AFTER_TIME * 3);
                }
            } else {
                self.handshake_attempts += 1;
                actions.send_initiation = true;
                actions.initiation_is_retry = true;
            }
        }
        if due(&mut self.send_keepalive) {
            actions.send_keepalive = true;
            if self.need_another_keepalive {
                self.need_another_keepalive = false;
                self.send_keepalive = Some(now + KEEPALIVE_TIMEOUT);
            }
        }
        if due(&mut self.new_handshake) {
            // We sent data and heard nothing back: the session may be dead on the other side.
            if !actions.send_initiation {
                actions.send_initiation = true;
                actions.initiation_is_retry = false;
            }
        }
        if due(&mut self.zero_key_material) {
            actions.zero_keys = true;
        }
        if due(&mut self.persistent_keepalive) && self.persistent_keepalive_interval > 0 {
            actions.send_keepalive = true;
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn keepalive_after_data_received_unless_something_was_sent() {
        let t0 = Instant::now();
        let mut t = Timers::new(0);
        t.data_received(t0);
        assert!(t.tick(t0 + secs(9)).is_empty());
        assert!(t.tick(t0 + secs(10)).send_keepalive);
        assert!(t.tick(t0 + secs(30)).is_empty(), "one keepalive only");

        t.data_received(t0 + secs(40));
        t.any_authenticated_packet_sent();
        assert!(
            t.tick(t0 + secs(60)).is_empty(),
            "a sent packet cancels the keepalive"
        );

        // More data while the keepalive is pending: a second keepalive follows the first.
        t.data_received(t0 + secs(100));
        t.data_received(t0 + secs(101));
        assert!(t.tick(t0 + secs(110)).send_keepalive);
        assert!(!t.tick(t0 + secs(119)).send_keepalive);
        assert!(t.tick(t0 + secs(120)).send_keepalive);
    }

    #[test]
    fn new_handshake_when_data_sent_and_nothing_received() {
        let t0 = Instant::now();
        let mut t = Timers::new(0);
        t.data_sent(t0);
        assert!(t.tick(t0 + secs(14)).is_empty());
        let a = t.tick(t0 + secs(15) + REKEY_TIMEOUT_JITTER_MAX);
        assert!(a.send_initiation && !a.initiation_is_retry);

        t.data_sent(t0 + secs(100));
        t.any_authenticated_packet_received();
        assert!(t.tick(t0 + secs(200)).is_empty(), "an answer cancels it");
    }

    #[test]
    fn retransmits_every_rekey_timeout_then_gives_up_after_rekey_attempt_time() {
        let t0 = Instant::now();
        let mut t = Timers::new(0);
        t.handshake_initiated(t0, false);
        let mut now = t0;
        let mut retries = 0;
        loop {
            let deadline = t.next_deadline().expect("retransmit armed");
            let waited = deadline - now;
            assert!(waited >= REKEY_TIMEOUT && waited < REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX);
            assert!(t.tick(deadline - Duration::from_millis(1)).is_empty());
            now = deadline;
            let a = t.tick(now);
            if a.handshake_gave_up {
                assert!(!a.send_initiation);
                break;
            }
            assert!(a.send_initiation && a.initiation_is_retry);
            retries += 1;
            // Bounded, so that a counter that never reaches the limit fails here, not hangs.
            assert!(retries <= MAX_TIMER_HANDSHAKES + 1, "never gave up");
            t.handshake_initiated(now, true);
        }
        // As the kernel's timers.c (`timer_handshake_attempts > MAX_TIMER_HANDSHAKES`): 19
        // retries after the first initiation, giving up at the 20th timeout (about 100 s).
        assert_eq!(retries, MAX_TIMER_HANDSHAKES + 1);
        let total = now - t0;
        let timeouts = MAX_TIMER_HANDSHAKES + 2;
        assert!(
            total >= REKEY_TIMEOUT * timeouts
                && total < (REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX) * timeouts,
            "{total:?}"
        );
        // What is left of the attempt is zeroed 3 x REJECT_AFTER_TIME later.
        assert!(t.tick(now + secs(539)).is_empty());
        assert!(t.tick(now + secs(540)).zero_keys);
    }

    #[test]
    fn handshake_complete_stops_retries() {
        let t0 = Instant::now();
        let mut t = Timers::new(0);
        t.handshake_initiated(t0, false);
        t.handshake_complete();
        assert!(t.tick(t0 + secs(60)).is_empty());
        assert_eq!(t.handshake_attempts(), 0);
    }

    #[test]
    fn stop_disarms_every_timer_but_keeps_the_keepalive_interval() {
        let t0 = Instant::now();
        let mut t = Timers::new(0);
        t.set_persistent_keepalive(25, t0);
        t.handshake_initiated(t0, false);
        t.data_received(t0);
        t.data_sent(t0);
        t.session_derived(t0);
        assert!(t.next_deadline().is_some());
        t.stop();
        assert_eq!(t.next_deadline(), None);
        assert!(
            t.tick(t0 + secs(10_000)).is_empty(),
            "nothing fires after stop"
        );
        assert_eq!(t.persistent_keepalive_interval(), 25);
    }

    #[test]
    fn keys_zeroed_three_reject_after_times_after_the_last_session() {
        let t0 = Instant::now();
        let mut t = Timers::new(0);
        t.session_derived(t0);
        t.session_derived(t0 + secs(100));
        assert!(t.tick(t0 + secs(639)).is_empty());
        assert!(t.tick(t0 + secs(640)).zero_keys);
    }

    #[test]
    fn actions_are_empty_only_when_no_flag_is_set() {
        assert!(TimerActions::default().is_empty());
        let each = [
            TimerActions {
                send_initiation: true,
                ..Default::default()
            },
            TimerActions {
                initiation_is_retry: true,
                ..Default::default()
            },
            TimerActions {
                send_keepalive: true,
                ..Default::default()
            },
            TimerActions {
                zero_keys: true,
                ..Default::default()
            },
            TimerActions {
                handshake_gave_up: true,
                ..Default::default()
            },
        ];
        for a in each {
            assert!(!a.is_empty(), "{a:?}");
        }
    }

    /// The WireGuard paper's table (section 6.1), computed here independently: the other tests
    /// count in these constants, so a changed one would go unnoticed there.
    #[test]
    fn the_constants_are_the_papers() {
        assert_eq!(u128::from(REKEY_AFTER_MESSAGES), 1u128 << 60);
        assert_eq!(
            u128::from(REJECT_AFTER_MESSAGES),
            (1u128 << 64) - (1u128 << 13) - 1
        );
        assert_eq!(REKEY_AFTER_TIME, secs(120));
        assert_eq!(REJECT_AFTER_TIME, secs(180));
        assert_eq!(REKEY_ATTEMPT_TIME, secs(90));
        assert_eq!(REKEY_TIMEOUT, secs(5));
        assert_eq!(KEEPALIVE_TIMEOUT, secs(10));
    }

    /// The kernel's value (timers.h: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT = 90 / 5): the retry
    /// test above counts in this constant, so it is pinned here on its own.
    #[test]
    fn max_timer_handshakes_is_the_kernels_18() {
        assert_eq!(MAX_TIMER_HANDSHAKES, 18);
    }

    #[test]
    fn the_attempt_counter_counts_retries_and_a_new_initiation_resets_it() {
        let t0 = Instant::now();
        let mut t = Timers::new(0);
        t.handshake_initiated(t0, false);
        let mut now = t0;
        for n in 1..=3 {
            now = t.next_deadline().unwrap();
            assert!(t.tick(now).initiation_is_retry);
            assert_eq!(t.handshake_attempts(), n);
            t.handshake_initiated(now, true);
            assert_eq!(t.handshake_attempts(), n, "a retry keeps the count");
        }
        t.handshake_initiated(now, false);
        assert_eq!(t.handshake_attempts(), 0, "a new initiation starts over");
    }

    /// Issue 20: steady traffic to an unreachable peer asks for a handshake with every packet;
    /// each request starts the attempts over (the kernel resets them when the initiation is
    /// queued, rate limit or not), so the retries never give up while the traffic goes on.
    /// Before, only a created initiation reset them, and the packet path's requests all fell
    /// within REKEY_TIMEOUT of a retry: the staged packets were purged every ~95 s.
    #[test]
    fn handshake_requests_from_traffic_keep_the_retries_going() {
        let t0 = Instant::now();
        let mut t = Timers::new(0);
        t.handshake_wanted();
        t.handshake_initiated(t0, false);
        let mut now = t0;
        while now < t0 + REKEY_ATTEMPT_TIME * 3 {
            now += Duration::from_millis(500);
            // A packet for the peer: staged, and a handshake asked for (rate-limited).
            t.handshake_wanted();
            let a = t.tick(now);
            assert!(!a.handshake_gave_up, "gave up after {:?}", now - t0);
            if a.send_initiation && a.initiation_is_retry {
                t.handshake_initiated(now, true);
            }
        }
        // Once the traffic stops, the retries run out.
        let quiet = now;
        let mut gave_up = false;
        while now < quiet + REKEY_ATTEMPT_TIME * 2 && !gave_up {
            now += Duration::from_millis(500);
            let a = t.tick(now);
            gave_up = a.handshake_gave_up;
            if a.send_initiation && a.initiation_is_retry {
                t.handshake_initiated(now, true);
            }
        }
        assert!(gave_up);
    }

    /// The jitter is random in [0, 333 ms): handshake timers of many peers do not fire in step.
    #[test]
    fn handshake_deadlines_carry_a_random_jitter() {
        let t0 = Instant::now();
        let mut retransmit = std::collections::HashSet::new();
        let mut new_handshake = std::collections::HashSet::new();
        for _ in 0..32 {
            let mut t = Timers::new(0);
            t.handshake_initiated(t0, false);
            let d = t.next_deadline().unwrap() - t0;
            assert!(d >= REKEY_TIMEOUT && d < REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX);
            retransmit.insert(d);
            let mut t = Timers::new(0);
            t.data_sent(t0);
            let d = t.next_deadline().unwrap() - t0;
            let base = KEEPALIVE_TIMEOUT + REKEY_TIMEOUT;
            assert!(d >= base && d < base + REKEY_TIMEOUT_JITTER_MAX, "{d:?}");
            new_handshake.insert(d);
        }
        // 32 draws from 333 values all equal: probability 333^-31.
        assert!(retransmit.len() > 1 && new_handshake.len() > 1);
    }

    #[test]
    fn changing_a_non_zero_keepalive_interval_rearms_it_from_now() {
        let t0 = Instant::now();
        let mut t = Timers::new(25);
        t.set_persistent_keepalive(10, t0);
        assert_eq!(t.next_deadline(), Some(t0 + secs(10)));
        assert!(t.tick(t0 + secs(9)).is_empty());
        assert!(t.tick(t0 + secs(10)).send_keepalive);
    }

    #[test]
    fn traffic_arms_no_persistent_keepalive_when_it_is_off() {
        let t0 = Instant::now();
        let mut t = Timers::new(0);
        t.any_authenticated_packet_traversal(t0);
        assert_eq!(
            t.next_deadline(),
            None,
            "no wake-up for a timer that is off"
        );
    }

    #[test]
    fn persistent_keepalive_follows_traffic() {
        let t0 = Instant::now();
        let mut t = Timers::new(25);
        t.any_authenticated_packet_traversal(t0);
        assert!(t.tick(t0 + secs(24)).is_empty());
        t.any_authenticated_packet_traversal(t0 + secs(24));
        assert!(t.tick(t0 + secs(48)).is_empty());
        assert!(t.tick(t0 + secs(49)).send_keepalive);
        t.set_persistent_keepalive(0, t0 + secs(50));
        t.any_authenticated_packet_traversal(t0 + secs(50));
        assert!(t.tick(t0 + secs(500)).is_empty());
        t.set_persistent_keepalive(10, t0 + secs(600));
        assert!(
            t.tick(t0 + secs(600)).send_keepalive,
            "enabling it sends one at once"
        );
    }
}
