//! The device's static key seen from outside: its health (for `show`), and replacing it while
//! the interface runs (key rotation without downtime).
//!
//! The replacement runs on the handshake worker, the one thread that uses the static key, so no
//! handshake step ever mixes the old key with the new one, and nothing derived from the old key
//! can be cached after it was dropped. In order:
//! 1. the identity (key, public key, the responder's initial hash) becomes the new key's;
//! 2. the mac1 and cookie keys (derived from our public key) follow: from here on only
//!    handshake messages made for the new key pass mac1;
//! 3. every peer forgets its static-static DH and its pending initiation (made with the old key);
//! 4. an initiation goes to every peer at once (the static-static DH is computed for it).
//!
//! The sessions stay: traffic keeps flowing on them until each peer's new handshake completes
//! and replaces them, so the switch itself costs no packet. (The kernel and wireguard-go expire
//! the current sessions on a key change instead: with a 300 ms chip and three peers that cost
//! about a second of pings per rotation in `tests/rotation.rs`, against a few without.)
//!
//! So a session made with the old key may still be current after the switch, even one confirmed
//! after it (an initiation answered just before the switch). Every session therefore carries the
//! public key of the static key that made it (`Keypair::static_public`), `get` reports it per
//! peer, and `rotate` takes only sessions of the new key as proof that a peer accepted it
//! (issue 20, finding 5).

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::queue::Job;
use super::{CountingKey, Device, PeerState, Shared};
use crate::key::health::KeyHealth;
use crate::key::StaticKey;

/// How long `replace_static_key` waits for the worker (busy with at most a few token
/// operations, each bounded by the module's own timeouts).
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

impl Device {
    /// The static key's health, if it is a key that reports one (a token key).
    pub fn key_health(&self) -> Option<KeyHealth> {
        self.shared.identity.key().health()
    }

    /// Why the static key can no longer be used (its PIN was refused when logging in again),
    /// once that is final: the daemon then stops.
    pub fn key_unusable(&self) -> Option<String> {
        self.shared.identity.key().unusable()
    }

    /// Switch the running interface to `key` and start a handshake with every peer. Refused
    /// (nothing changes) if the new key is the current one or a peer's.
    pub fn replace_static_key(&self, key: Arc<dyn StaticKey>) -> Result<(), String> {
        let public = key.public_key();
        if public == self.public_key() {
            return Err("the new key is the key already in use".into());
        }
        if self.shared.peers.read().by_key.contains_key(&public) {
            return Err("the new key's public key is one of the interface's peers".into());
        }
        let counted: Arc<dyn StaticKey> = Arc::new(CountingKey {
            inner: key,
            shared_counters: self.shared.counters.clone(),
        });
        let (done, applied) = mpsc::channel();
        self.shared.jobs.push_own(
            Job::ReplaceKey { key: counted, done },
            std::time::Instant::now(),
        );
        applied.recv_timeout(APPLY_TIMEOUT).map_err(|_| {
            "the handshake worker did not take the new key in time (it may still do so)".to_string()
        })
    }
}

/// On the handshake worker: steps 1-4 of the module comment; then `done` hears that the new
/// key is in use.
pub(crate) fn apply(shared: &Shared, key: Arc<dyn StaticKey>, done: mpsc::Sender<()>) {
    let public = key.public_key();
    shared.identity.replace(key);
    shared.cookies.set_public_key(&public);
    let states: Vec<Arc<PeerState>> = shared.peers.read().by_key.values().cloned().collect();
    for state in &states {
        state.peer.static_key_replaced(&shared.index);
    }
    log::info!(
        "{}: static key replaced; handshaking with {} peer(s)",
        shared.tun.name(),
        states.len()
    );
    for state in &states {
        if !state.removed.load(Ordering::Acquire) {
            shared.request_initiation(state);
        }
    }
    let _ = done.send(());
}
