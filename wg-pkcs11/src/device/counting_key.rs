//! The static key as the protocol core sees it: every operation counted and timed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use zeroize::Zeroizing;

use super::counters::Counters;
use crate::key::{KeyError, StaticKey};

/// Counts and times every static-key operation: the wrapper the protocol core
/// sees, so the counters are exact whatever the core caches.
pub(super) struct CountingKey {
    pub(super) inner: Arc<dyn StaticKey>,
    pub(super) shared_counters: Arc<Counters>,
}

impl StaticKey for CountingKey {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }

    fn diffie_hellman(&self, peer_public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let t = Instant::now();
        let r = self.inner.diffie_hellman(peer_public);
        let c = &self.shared_counters;
        c.token_operations.fetch_add(1, Ordering::Relaxed);
        c.token_nanos
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if r.is_err() {
            c.token_failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn health(&self) -> Option<crate::key::health::KeyHealth> {
        self.inner.health()
    }

    fn in_hardware(&self) -> bool {
        self.inner.in_hardware()
    }

    fn unusable(&self) -> Option<String> {
        self.inner.unusable()
    }
}
