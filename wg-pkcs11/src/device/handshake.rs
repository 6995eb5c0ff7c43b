//! The handshake worker: the only thread that runs static-key operations
//! (a token takes tens of milliseconds each), fed by a queue the packet
//! threads push to and never wait on (`queue.rs`: lanes, arrival times,
//! stale and superseded initiations, known sources first).
//!
//! Before an incoming initiation costs a token operation, two checks that
//! cost nanoseconds: its ephemeral key is not a small-order point
//! (`noise::is_low_order`), and no authenticated initiation with it was
//! consumed before (`consumed.rs`). Neither logs per packet: they are counted.
//! A token operation that answered nothing (the message did not authenticate,
//! was a replay or came from an unknown key) is reported to the queue, whose
//! waste budget then demands cookies; every operation's time feeds the
//! queue's estimate of the backlog in chip time.

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
use crate::noise::HandshakeError;
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
                let chip_before = chip_spent(&shared);
                if !state.removed.load(Ordering::Acquire) {
                    if let Err(e) = state.peer.precompute_static_static(&shared.identity) {
                        log::warn!("static-static DH for a peer failed: {e} (retried at its first handshake)");
                    }
                }
                note_chip_time(&shared, chip_before);
            }
            Next::Job(Queued { job, arrived, .. }) => {
                let chip_before = chip_spent(&shared);
                let answered = match job {
                    Job::Initiate(state) => {
                        initiate(&shared, &state);
                        true
                    }
                    Job::Initiation { msg, src, local } => {
                        respond(&shared, &mut consumed, &msg, src, local, arrived)
                    }
                    Job::Response { msg, src, local } => complete(&shared, &msg, src, local),
                    Job::ReplaceKey { key, done } => {
                        super::key_switch::apply(&shared, key, done);
                        true
                    }
                };
                if note_chip_time(&shared, chip_before) && !answered {
                    shared.jobs.note_wasted(Instant::now());
                }
            }
        }
        // A handshake leaves its derived keys (moved, not wiped, out of the functions that
        // computed them) in frames below this one: overwrite them before waiting again.
        crate::secret_mem::scrub_stack();
    }
}

/// Chip operations spent so far, and their total time in nanoseconds.
fn chip_spent(shared: &Shared) -> (u64, u64) {
    (
        shared.counters.token_operations.load(Ordering::Relaxed),
        shared.counters.token_nanos.load(Ordering::Relaxed),
    )
}

/// Feed the time of the chip operations spent since `before` to the queue's estimate; true if
/// any was spent.
fn note_chip_time(shared: &Shared, before: (u64, u64)) -> bool {
    let (ops, nanos) = chip_spent(shared);
    if ops <= before.0 {
        return false;
    }
    let per_op = nanos.saturating_sub(before.1) / (ops - before.0);
    shared
        .jobs
        .note_chip_time(std::time::Duration::from_nanos(per_op));
    true
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
) -> bool {
    let now = Instant::now();
    let ephemeral = noise::initiation_ephemeral(msg);
    // Cheap checks first: a small-order key or a replay would only fail after the chip's ECDH.
    if noise::is_low_order(&ephemeral) {
        shared.counters.discard(DropReason::LowOrder);
        return false;
    }
    if consumed.contains(&ephemeral) {
        shared.counters.discard(DropReason::Replayed);
        return false;
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
            return false;
        }
    };
    // Not remembered yet: the static decrypted, but a copy of a genuine initiation's first
    // fields with garbage after them does too.
    let Some(state) = shared.peer_state(&received.initiator_public()) else {
        log::debug!("initiation from {src}: unknown peer");
        shared.counters.discard(DropReason::Handshake);
        return false;
    };
    let response =
        match state
            .peer
            .accept_initiation(&shared.identity, &shared.index, received, src, now)
        {
            Ok(response) => {
                consumed.remember(&ephemeral);
                response
            }
            Err(e) => {
                // Refused after its timestamp opened: it authenticated, so its ephemeral is
                // spent (a replay of it costs nothing from now on).
                if matches!(
                    e,
                    HandshakeError::ReplayedTimestamp | HandshakeError::RateLimited
                ) {
                    consumed.remember(&ephemeral);
                }
                log::debug!("initiation from {src} refused: {e}");
                shared.counters.discard(DropReason::Handshake);
                return false;
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
    true
}

/// Consume a response; false if it completed nothing.
fn complete(
    shared: &Shared,
    msg: &[u8; RESPONSE_LEN],
    src: SocketAddr,
    local: Option<LocalAddr>,
) -> bool {
    let now = Instant::now();
    let Some(peer) = noise::receiver_index(msg).and_then(|i| shared.index.get(i)) else {
        shared.counters.discard(DropReason::UnknownIndex);
        return false;
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
            true
        }
        Err(e) => {
            log::debug!("response from {src} refused: {e}");
            shared.counters.discard(DropReason::Handshake);
            false
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
