//! The handshake worker: the only thread that runs static-key operations
//! (a token takes tens of milliseconds each), fed by a queue the packet
//! threads push to and never wait on (`queue.rs`: lanes, arrival times,
//! stale and superseded initiations, known sources first).
//!
//! Before an incoming initiation costs a token operation, two checks that
//! cost nanoseconds: its ephemeral key is not a small-order point
//! (`noise::is_low_order`), and it was not consumed before
//! (`consumed.rs`). Neither logs per packet: they are counted.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::consumed::ConsumedInitiations;
use super::counters::DropReason;
use super::pktinfo;
pub(crate) use super::queue::{Job, JobQueue};
use super::queue::{Next, Queued};
use super::{PeerState, Shared};
use crate::noise::{self, INITIATION_LEN, RESPONSE_LEN};
use crate::sticky::LocalAddr;

/// The configured peers' current endpoints: their initiations are served first under load.
fn known_endpoints(shared: &Shared) -> HashSet<SocketAddr> {
    shared
        .peers
        .read()
        .by_key
        .values()
        .filter_map(|s| s.peer.endpoint())
        .collect()
}

pub(crate) fn run(shared: Arc<Shared>) {
    let mut consumed = ConsumedInitiations::new();
    while shared.jobs.wait(|| shared.stopping()) {
        // Built before the queue's lock is taken (the peer table is locked before the queue
        // elsewhere), and only when there is a choice to make.
        let known = if shared.jobs.incoming_depth() > 1 {
            known_endpoints(&shared)
        } else {
            HashSet::new()
        };
        let taken = shared.jobs.take(Instant::now(), &known);
        if taken.stale_dropped > 0 {
            shared
                .counters
                .discard_n(DropReason::Stale, taken.stale_dropped);
        }
        match taken.next {
            Next::Nothing => {}
            Next::Precompute(state) => {
                if !state.removed.load(Ordering::Acquire) {
                    if let Err(e) = state.peer.precompute_static_static(&shared.identity) {
                        log::warn!("static-static DH for a peer failed: {e} (retried at its first handshake)");
                    }
                }
            }
            Next::Job(Queued { job, arrived }) => match job {
                Job::Initiate(state) => initiate(&shared, &state),
                Job::Initiation { msg, src, local } => {
                    respond(&shared, &mut consumed, &msg, src, local, arrived)
                }
                Job::Response { msg, src, local } => complete(&shared, &msg, src, local),
                Job::ReplaceKey(replacement) => super::key_switch::apply(&shared, replacement),
            },
        }
        // A handshake leaves its derived keys (moved, not wiped, out of the functions that
        // computed them) in frames below this one: overwrite them before waiting again.
        crate::secret_mem::scrub_stack();
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
        Ok(msg) => match send_to_peer(shared, state, &msg, endpoint) {
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

fn respond(
    shared: &Shared,
    consumed: &mut ConsumedInitiations,
    msg: &[u8; INITIATION_LEN],
    src: SocketAddr,
    local: Option<LocalAddr>,
    arrived: Instant,
) {
    let now = Instant::now();
    let ephemeral = noise::initiation_ephemeral(msg);
    // Cheap checks first: a small-order key or a replay would only fail after the chip's ECDH.
    if noise::is_low_order(&ephemeral) {
        shared.counters.discard(DropReason::LowOrder);
        return;
    }
    if !consumed.first_time(&ephemeral) {
        shared.counters.discard(DropReason::Replayed);
        return;
    }
    log::trace!(
        "initiation from {src}, queued {} ms ago",
        now.saturating_duration_since(arrived).as_millis()
    );
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
    let response =
        match state
            .peer
            .accept_initiation(&shared.identity, &shared.index, received, src, now)
        {
            Ok(response) => response,
            Err(e) => {
                log::debug!("initiation from {src} refused: {e}");
                shared.counters.discard(DropReason::Handshake);
                return;
            }
        };
    // The endpoint is `src` now: from here on we send from where it reached us.
    state.peer.sticky_source().learn(src, local);
    match send_to_peer(shared, &state, &response, src) {
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
    }
}

fn complete(shared: &Shared, msg: &[u8; RESPONSE_LEN], src: SocketAddr, local: Option<LocalAddr>) {
    let now = Instant::now();
    let Some(peer) = noise::receiver_index(msg).and_then(|i| shared.index.get(i)) else {
        shared.counters.discard(DropReason::UnknownIndex);
        return;
    };
    // The initiator's one static-key operation (se).
    match peer.consume_response(&shared.identity, &shared.index, msg, src, now) {
        Ok(()) => {
            peer.sticky_source().learn(src, local);
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

/// Send one datagram to `state`'s peer at `endpoint`, from its sticky source when it has one.
pub(crate) fn send_to_peer(
    shared: &Shared,
    state: &PeerState,
    buf: &[u8],
    endpoint: SocketAddr,
) -> std::io::Result<()> {
    let socket = shared.udp.load();
    pktinfo::send_with_sticky_source(state.peer.sticky_source(), endpoint, |from| {
        socket.send_to_from(buf, endpoint, from)
    })
}
