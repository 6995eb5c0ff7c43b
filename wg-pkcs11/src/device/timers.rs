//! The timer thread: every 100 ms, ticks each peer's timer state machine
//! (the core decides; this only carries out what it asks: initiations,
//! keepalives, giving up on a handshake).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counters::DropReason;
use super::route_watch::RouteWatch;
use super::{PeerState, Shared, TIMER_TICK};
use crate::noise::TRANSPORT_OVERHEAD;

/// The handshake path's summary is logged at most this often (and only when something
/// happened): a storm or a flood gives one line per interval, never one per packet.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

pub(crate) fn run(shared: Arc<Shared>) {
    let mut last_summary = (Instant::now(), shared.counters.snapshot());
    // Opened in this thread, which is in the device's network namespace.
    let mut routes = RouteWatch::open()
        .map_err(|e| {
            log::warn!(
                "{}: no route change notifications ({e}): sticky sources are kept across \
                 route changes",
                shared.tun.name()
            )
        })
        .ok();
    loop {
        std::thread::park_timeout(TIMER_TICK);
        if shared.stopping() {
            return;
        }
        if let Some(watch) = routes.as_mut() {
            if watch.changed() {
                recheck_sticky_sources(&shared, watch);
            }
        }
        if last_summary.0.elapsed() >= SUMMARY_INTERVAL {
            let now = shared.counters.snapshot();
            if let Some(line) = now.handshake_summary(&last_summary.1) {
                log::info!(
                    "{}: last {} s: {line}",
                    shared.tun.name(),
                    SUMMARY_INTERVAL.as_secs()
                );
            }
            last_summary = (Instant::now(), now);
        }
        if let Ok(mtu) = shared.tun.mtu() {
            shared.mtu.store(mtu as usize, Ordering::Relaxed);
        }
        let now = Instant::now();
        let states: Vec<Arc<PeerState>> = shared.peers.read().by_key.values().cloned().collect();
        for state in states {
            let actions = state.peer.tick(&shared.index, now);
            if actions.send_initiation {
                // (`tick` has forgotten the sticky source: perhaps it is the trouble.)
                if actions.initiation_is_retry {
                    state.initiation_is_retry.store(true, Ordering::Release);
                    shared.queue_initiation(&state);
                } else {
                    shared.request_initiation(&state);
                }
            }
            if actions.send_keepalive {
                // Without a session a keepalive means a handshake (as the kernel does).
                if state.peer.current_keypair(now).is_some() {
                    send_keepalive(&shared, &state, now);
                } else {
                    shared.request_initiation(&state);
                }
            }
            if actions.handshake_gave_up {
                let n = {
                    let mut staged = state.staged.lock();
                    let n = staged.len();
                    staged.clear();
                    n
                };
                shared
                    .counters
                    .discard_n(DropReason::HandshakeFailed, n as u64);
            }
        }
    }
}

/// The routes changed: a peer whose endpoint is now routed through another interface than the
/// one its sticky source was learned on (or not at all) forgets it, and the OS chooses the
/// source again, as the kernel's send4/send6 do when the route's device is not `src_if`.
fn recheck_sticky_sources(shared: &Shared, watch: &mut RouteWatch) {
    let states: Vec<Arc<PeerState>> = shared.peers.read().by_key.values().cloned().collect();
    let fwmark = shared.udp.fwmark();
    for state in states {
        let sticky = state.peer.sticky_source();
        let Some((remote, local)) = sticky.learned() else {
            continue;
        };
        if local.ifindex == 0 {
            continue;
        }
        match watch.route_interface(remote.ip(), fwmark) {
            Ok(Some(oif)) if oif == local.ifindex => {}
            Ok(_) => {
                log::debug!(
                    "the route to {remote} moved off interface {}: the OS chooses the source",
                    local.ifindex
                );
                sticky.forget(remote, local);
            }
            Err(e) => log::debug!("route to {remote}: {e}"),
        }
    }
}

/// An empty transport packet on the current session, if there is one.
pub(crate) fn send_keepalive(shared: &Shared, state: &Arc<PeerState>, now: Instant) {
    let (Some(keypair), Some(endpoint)) = (state.peer.current_keypair(now), state.peer.endpoint())
    else {
        return;
    };
    let mut buf = [0u8; TRANSPORT_OVERHEAD];
    match keypair.encrypt(&mut buf, 0, now) {
        Ok(n) => {
            if super::handshake::send_to_peer(shared, state, &buf[..n], endpoint).is_ok() {
                shared
                    .counters
                    .keepalives_sent
                    .fetch_add(1, Ordering::Relaxed);
                // A keepalive on an old initiator session starts the rekey, as data would.
                if state.peer.sent_transport(&keypair, n, true, now) {
                    shared.request_initiation(state);
                }
            } else {
                shared.counters.discard(DropReason::SendError);
            }
        }
        Err(e) => log::debug!("keepalive: {e}"),
    }
}
