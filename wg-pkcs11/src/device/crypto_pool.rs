//! The packet loops' threads, and the helpers they share the AEAD with.
//!
//! One thread per direction does all of that direction's ChaCha20-Poly1305, which the profile
//! (bench/README.md) puts at 45% of each end's time. With more than one core, the send path
//! splits a super-packet's segments and the receive path a recvmmsg batch's datagrams in two
//! halves: the loop thread seals or opens the first while a helper takes the second. Order is
//! kept as the kernel keeps it (wg_packet_encrypt_worker and the ordered tx / rx queues): the
//! send counters of the whole run are taken in order before either half starts, the packets go
//! out in one send after both halves are sealed, and on receive the replay check and delivery
//! run in arrival order on the loop thread after both halves are open.
//!
//! The fork-join is rayon-core's work-stealing `join`. The loop thread queues the second half
//! and starts on the first; an idle helper steals the second. If no helper took it by the time
//! the first is done (every core busy, or one core: `taskset -c 0`), the loop thread seals it
//! too. A loaded or single-core machine pays a deque push and pop, and never waits for a thread
//! that is not running. Stealing needs the loops to be workers of the pool themselves, so they
//! are spawned here rather than on threads of their own.

use std::io;
use std::sync::{Arc, Barrier};

use parking_lot::{Condvar, Mutex};

use super::{run_loop, LoopBody, Shared};

/// The loops that run on the pool: the TUN reader (send path) and the UDP reader (receive).
const LOOPS: usize = 2;
/// A two-way split keeps one helper per direction busy; more would only wait.
pub const MAX_HELPERS: usize = 2;
/// Below this many packets the fork costs more than half the work saves: at 1420 bytes an
/// open or seal takes about 1 µs, a steal a few µs.
pub(crate) const MIN_PACKETS_TO_SPLIT: usize = 8;

/// Helpers for a machine with `cores` usable cores (its affinity mask: `taskset` counts): the
/// cores beyond the two the loops take. Under load in both directions each loop keeps a core
/// busy, so on two cores a helper could only take turns with them, and rayon's idle workers
/// spin a little before they sleep: measured on a 2-core machine, a helper cost 30-35% of
/// single-stream TCP throughput and half as much CPU again per GB (bench/README.md).
pub(crate) fn helpers_for(cores: usize) -> usize {
    cores.saturating_sub(LOOPS).min(MAX_HELPERS)
}

/// The thread pool the TUN and UDP loops run on.
pub(crate) struct DataPool {
    pool: Option<rayon_core::ThreadPool>,
    /// How many loops still run, and the signal of each one's return.
    running: Arc<(Mutex<usize>, Condvar)>,
    helpers: usize,
}

impl DataPool {
    /// Start `loops` on a pool with `helpers` helpers (None: as many as the cores allow).
    pub(crate) fn start(
        shared: &Arc<Shared>,
        loops: [(&'static str, LoopBody); LOOPS],
        helpers: Option<usize>,
    ) -> io::Result<DataPool> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let helpers = helpers
            .unwrap_or_else(|| helpers_for(cores))
            .min(MAX_HELPERS);
        let pool = rayon_core::ThreadPoolBuilder::new()
            .num_threads(LOOPS + helpers)
            .thread_name(|i| format!("wg-crypto-{i}"))
            .build()
            .map_err(io::Error::other)?;
        let running = Arc::new((Mutex::new(LOOPS), Condvar::new()));
        // A loop waiting for its stolen half runs other queued work meanwhile. No loop may fork
        // before both loops sit on threads of their own, or a waiting loop could pick up the
        // other loop and never come back.
        let placed = Arc::new(Barrier::new(LOOPS));
        for (name, body) in loops {
            let (shared, running, placed) = (shared.clone(), running.clone(), placed.clone());
            pool.spawn(move || {
                name_thread(name);
                placed.wait();
                run_loop(name, shared, body);
                let (count, returned) = &*running;
                *count.lock() -= 1;
                returned.notify_all();
            });
        }
        Ok(DataPool {
            pool: Some(pool),
            running,
            helpers,
        })
    }

    /// The crypto helpers beside the loops (0 on one core).
    pub(crate) fn helpers(&self) -> usize {
        self.helpers
    }

    /// Wait for both loops to return (the caller set the stop flag and woke them), then let
    /// the pool's threads go.
    pub(crate) fn join(&mut self) {
        if self.pool.is_none() {
            return;
        }
        let (count, returned) = &*self.running;
        let mut count = count.lock();
        while *count > 0 {
            returned.wait(&mut count);
        }
        drop(count);
        self.pool.take();
    }
}

impl Drop for DataPool {
    fn drop(&mut self) {
        self.join();
    }
}

/// Give the pool thread the loop's name, as `ps`, `top` and `perf --per-thread` show it.
/// Through procfs, which needs no unsafe prctl; a failure only costs the name.
fn name_thread(name: &str) {
    let _ = std::fs::write("/proc/thread-self/comm", name);
}

/// Whether the calling thread is a loop of a pool that has a helper to fork with. Checked
/// before any rayon call, since rayon would start its global pool for a thread outside one.
fn can_fork() -> bool {
    rayon_core::current_thread_index().is_some() && rayon_core::current_num_threads() > LOOPS
}

/// Run `first` and `second`, the second on a helper if one is free; both have returned when
/// this does. Outside a pool with helpers, one after the other on the calling thread. The
/// third value says whether `second` ran on a helper.
pub(crate) fn fork<A, B, RA, RB>(first: A, second: B) -> (RA, RB, bool)
where
    A: FnOnce() -> RA + Send,
    B: FnOnce() -> RB + Send,
    RA: Send,
    RB: Send,
{
    if !can_fork() {
        return (first(), second(), false);
    }
    let caller = rayon_core::current_thread_index();
    let (a, (b, on_helper)) = rayon_core::join(first, || {
        (second(), rayon_core::current_thread_index() != caller)
    });
    (a, b, on_helper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn helpers_only_on_cores_beyond_the_loops_two_and_at_most_two() {
        assert_eq!(helpers_for(0), 0);
        assert_eq!(helpers_for(1), 0);
        assert_eq!(helpers_for(2), 0);
        assert_eq!(helpers_for(3), 1);
        assert_eq!(helpers_for(4), 2);
        assert_eq!(helpers_for(64), 2);
    }

    #[test]
    fn outside_a_pool_fork_runs_both_on_the_caller_and_starts_no_global_pool() {
        let caller = std::thread::current().id();
        let (a, b, on_helper) = fork(
            || std::thread::current().id(),
            || std::thread::current().id(),
        );
        assert_eq!((a, b, on_helper), (caller, caller, false));
        assert!(rayon_core::current_thread_index().is_none());
    }

    /// On a pool with a helper, a second half that blocks until the first half's thread has
    /// moved on proves the halves ran on two threads at once: run serially it would never
    /// finish (the test bounds the wait).
    #[test]
    fn on_a_pool_with_a_helper_the_halves_run_at_the_same_time() {
        let pool = rayon_core::ThreadPoolBuilder::new()
            .num_threads(LOOPS + 1)
            .build()
            .unwrap();
        let both_inside = Arc::new(Barrier::new(2));
        let finished = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let (b1, b2, f) = (both_inside.clone(), both_inside, finished.clone());
        pool.spawn(move || {
            let ((), (), on_helper) = fork(
                move || {
                    b1.wait();
                },
                move || {
                    b2.wait();
                },
            );
            assert!(on_helper);
            f.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .expect("the two halves never met: they did not run in parallel");
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }
}
