//! The device's peers: each one as configured (`PeerConfig`), what the device keeps beside its
//! protocol state (`PeerState`: packets staged until a session, flags for the threads), the
//! table by public key and by allowed IP (`Peers`), and adding, updating and removing them.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::Device;
use crate::allowedips::AllowedIps;
use crate::peer::Peer;

/// One peer as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub public_key: [u8; 32],
    pub preshared_key: Option<[u8; 32]>,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<(IpAddr, u8)>,
    /// Seconds; 0 is off.
    pub persistent_keepalive: u16,
}

/// What the device keeps for each peer beside the protocol state.
pub(crate) struct PeerState {
    pub(crate) peer: Arc<Peer>,
    /// Packets read from the TUN (vnet header included) while there was no session.
    pub(crate) staged: Mutex<VecDeque<Vec<u8>>>,
    /// `staged` may be non-empty (read without its lock on the receive path).
    pub(crate) has_staged: AtomicBool,
    /// An initiation for this peer is already in the handshake queue.
    pub(crate) initiation_queued: AtomicBool,
    /// The queued initiation retries an unanswered one (the timers said so).
    pub(crate) initiation_is_retry: AtomicBool,
    /// A session just came up: the TUN thread should send the staged packets (or a keepalive).
    pub(crate) flush_pending: AtomicBool,
    /// Removed from the device: threads holding an Arc must not use it further.
    pub(crate) removed: AtomicBool,
}

/// The peer table: by public key, and the routing table over allowed IPs.
#[derive(Default)]
pub(crate) struct Peers {
    pub(crate) by_key: HashMap<[u8; 32], Arc<PeerState>>,
    pub(crate) routes: AllowedIps<Arc<PeerState>>,
}

impl Device {
    /// Add a peer, or update an existing one (preshared key, endpoint,
    /// keepalive; allowed IPs are added to its existing ones).
    pub fn set_peer(&self, config: &PeerConfig) {
        if config.public_key == self.public_key() {
            // As the kernel does: a peer with our own public key could only ever handshake
            // with ourselves (and would cost a token operation per message to find out).
            log::warn!(
                "{}: ignoring a peer configured with the interface's own public key",
                self.shared.tun.name()
            );
            return;
        }
        if crate::noise::is_low_order(&config.public_key) {
            // A small-order public key makes every static-static DH all zeros: no handshake can
            // ever succeed, and each attempt would cost a token operation to find out.
            log::warn!(
                "{}: ignoring a peer whose public key is a small-order point (no handshake \
                 with it can succeed)",
                self.shared.tun.name()
            );
            return;
        }
        let now = Instant::now();
        let mut peers = self.shared.peers.write();
        let state = match peers.by_key.get(&config.public_key) {
            Some(s) => {
                s.peer.set_preshared_key(config.preshared_key);
                if let Some(e) = config.endpoint {
                    s.peer.set_endpoint(Some(e));
                    // An endpoint set by hand: the OS chooses the source until a datagram
                    // from it tells us where it reaches us (the kernel clears src too).
                    s.peer.sticky_source().clear();
                }
                s.peer
                    .set_persistent_keepalive(config.persistent_keepalive, now);
                s.clone()
            }
            None => {
                let peer = Peer::new(
                    config.public_key,
                    config.preshared_key,
                    config.endpoint,
                    config.persistent_keepalive,
                    now,
                );
                let s = Arc::new(PeerState {
                    peer,
                    staged: Mutex::new(VecDeque::new()),
                    has_staged: AtomicBool::new(false),
                    initiation_queued: AtomicBool::new(false),
                    initiation_is_retry: AtomicBool::new(false),
                    flush_pending: AtomicBool::new(false),
                    removed: AtomicBool::new(false),
                });
                peers.by_key.insert(config.public_key, s.clone());
                // The one static-key operation per peer (ss): ahead of the first handshake when
                // the worker is idle, never ahead of a handshake (it is also computed lazily).
                self.shared.jobs.push_precompute(s.clone());
                s
            }
        };
        // A prefix already routed to another peer moves to this one, as in wg(8).
        for &(ip, cidr) in &config.allowed_ips {
            peers.routes.insert(ip, cidr, state.clone());
        }
    }

    /// Replace a peer's allowed IPs.
    pub fn replace_allowed_ips(&self, public_key: &[u8; 32], allowed_ips: &[(IpAddr, u8)]) -> bool {
        let mut peers = self.shared.peers.write();
        let Some(state) = peers.by_key.get(public_key).cloned() else {
            return false;
        };
        peers.routes.remove_where(|s| Arc::ptr_eq(s, &state));
        for &(ip, cidr) in allowed_ips {
            peers.routes.insert(ip, cidr, state.clone());
        }
        true
    }

    /// Remove a peer: its routes, its sessions and indices; false if unknown.
    ///
    /// The peer table is write-locked only to take the peer out: its keys are wiped after the
    /// lock is released, so both packet threads never wait for the handshake worker (which may
    /// be in a token operation for this peer). A session the worker derives meanwhile is
    /// refused by the peer (`Peer::clear` closes it first).
    pub fn remove_peer(&self, public_key: &[u8; 32]) -> bool {
        let state = {
            let mut peers = self.shared.peers.write();
            let Some(state) = peers.by_key.remove(public_key) else {
                return false;
            };
            peers.routes.remove_where(|s| Arc::ptr_eq(s, &state));
            state
        };
        state.removed.store(true, Ordering::Release);
        state.staged.lock().clear();
        state.peer.clear(&self.shared.index);
        true
    }

    /// Remove every peer.
    pub fn clear_peers(&self) {
        let keys: Vec<[u8; 32]> = self.shared.peers.read().by_key.keys().copied().collect();
        for k in keys {
            self.remove_peer(&k);
        }
    }

    /// Start a handshake with a peer now, as a rekey would (the core still
    /// keeps REKEY_TIMEOUT between two initiations); for tests and benchmarks.
    pub fn force_handshake(&self, public_key: &[u8; 32]) -> bool {
        match self.shared.peer_state(public_key) {
            Some(state) => {
                self.shared.request_initiation(&state);
                true
            }
            None => false,
        }
    }

    /// Public keys of the configured peers.
    pub fn peer_keys(&self) -> Vec<[u8; 32]> {
        self.shared.peers.read().by_key.keys().copied().collect()
    }

    /// A peer's current state for `wg show`.
    pub fn peer_info(&self, public_key: &[u8; 32]) -> Option<PeerInfo> {
        let (state, allowed_ips) = {
            let peers = self.shared.peers.read();
            let state = peers.by_key.get(public_key)?.clone();
            let ips = peers.routes.entries_where(|s| Arc::ptr_eq(s, &state));
            (state, ips)
        };
        let p = &state.peer;
        Some(PeerInfo {
            public_key: *public_key,
            preshared_key: p.preshared_key(),
            endpoint: p.endpoint(),
            allowed_ips,
            persistent_keepalive: p.persistent_keepalive(),
            last_handshake: p.last_handshake(),
            session_static_key: p.current_session_static_key(),
            rx_bytes: p.rx_bytes(),
            tx_bytes: p.tx_bytes(),
        })
    }
}

/// A peer as `wg show` reports it.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub public_key: [u8; 32],
    pub preshared_key: Option<[u8; 32]>,
    pub endpoint: Option<SocketAddr>,
    pub allowed_ips: Vec<(IpAddr, u8)>,
    pub persistent_keepalive: u16,
    pub last_handshake: Option<std::time::SystemTime>,
    /// Our static public key in the handshake that made the current session.
    pub session_static_key: Option<[u8; 32]>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}
