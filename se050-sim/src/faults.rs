//! Fault injection for tests: what a noisy bus, a brown-out or a busy chip does
//! to the link, scripted at run time through a cloneable handle.

use std::sync::Arc;

use parking_lot::Mutex;

/// Which way a frame travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    HostToSe,
    SeToHost,
}

#[derive(Debug, Default)]
struct Plan {
    corrupt_to_se: u32,
    corrupt_to_host: u32,
    /// Frames to let through untouched before the corruptions start.
    skip_to_se: u32,
    skip_to_host: u32,
    /// Frames to let through before the drops start.
    drop_skip_to_se: u32,
    drop_skip_to_host: u32,
    drop_to_se: u32,
    drop_to_host: u32,
    nack_polls: u32,
    reset_mid_apdu: bool,
    rng: u64,
    injected: u32,
}

/// Shared handle on the virtual chip's fault plan; clone it before handing the
/// chip to the link, then script faults while the link runs.
#[derive(Debug, Clone, Default)]
pub struct FaultHandle(Arc<Mutex<Plan>>);

impl FaultHandle {
    /// A plan with no faults; `seed` picks which byte a corruption hits.
    pub fn new(seed: u64) -> Self {
        FaultHandle(Arc::new(Mutex::new(Plan {
            rng: seed | 1,
            ..Plan::default()
        })))
    }

    /// Flip one byte (chosen pseudo-randomly) in each of the next `n` frames.
    pub fn corrupt_next_frames(&self, direction: Direction, n: u32) {
        let mut plan = self.0.lock();
        match direction {
            Direction::HostToSe => plan.corrupt_to_se += n,
            Direction::SeToHost => plan.corrupt_to_host += n,
        }
    }

    /// Let `skip` frames pass, then flip one byte in each of the `n` following
    /// frames (replaces the pending corruptions of that direction).
    pub fn corrupt_frames_after(&self, direction: Direction, skip: u32, n: u32) {
        let mut plan = self.0.lock();
        match direction {
            Direction::HostToSe => (plan.skip_to_se, plan.corrupt_to_se) = (skip, n),
            Direction::SeToHost => (plan.skip_to_host, plan.corrupt_to_host) = (skip, n),
        }
    }

    /// Lose the next `n` frames: the chip ignores what it receives, or never makes
    /// what it sends readable.
    pub fn drop_next_frames(&self, direction: Direction, n: u32) {
        let mut plan = self.0.lock();
        match direction {
            Direction::HostToSe => plan.drop_to_se += n,
            Direction::SeToHost => plan.drop_to_host += n,
        }
    }

    /// Let `skip` frames pass, then lose the `n` following ones.
    pub fn drop_frames_after(&self, direction: Direction, skip: u32, n: u32) {
        let mut plan = self.0.lock();
        match direction {
            Direction::HostToSe => (plan.drop_skip_to_se, plan.drop_to_se) = (skip, n),
            Direction::SeToHost => (plan.drop_skip_to_host, plan.drop_to_host) = (skip, n),
        }
    }

    /// NACK the address on the next `n` transfers, read or write, whatever the state.
    pub fn nack_next_polls(&self, n: u32) {
        self.0.lock().nack_polls += n;
    }

    /// Reset the chip the next time it is in the middle of an APDU (receiving a
    /// chain, working on a command, or sending a chained response).
    pub fn reset_mid_apdu(&self) {
        self.0.lock().reset_mid_apdu = true;
    }

    /// Remove every pending fault.
    pub fn clear(&self) {
        let mut plan = self.0.lock();
        let rng = plan.rng;
        let injected = plan.injected;
        *plan = Plan {
            rng,
            injected,
            ..Plan::default()
        };
    }

    /// Whether any fault is still waiting to happen.
    pub fn pending(&self) -> bool {
        let plan = self.0.lock();
        plan.corrupt_to_se
            + plan.corrupt_to_host
            + plan.drop_to_se
            + plan.drop_to_host
            + plan.nack_polls
            > 0
            || plan.reset_mid_apdu
    }

    /// How many faults have been injected so far.
    pub fn injected(&self) -> u32 {
        self.0.lock().injected
    }

    pub(crate) fn take_nack(&self) -> bool {
        let mut plan = self.0.lock();
        let plan = &mut *plan;
        take(&mut plan.nack_polls, &mut plan.injected)
    }

    pub(crate) fn take_drop(&self, direction: Direction) -> bool {
        let mut plan = self.0.lock();
        let plan = &mut *plan;
        let (skip, count) = match direction {
            Direction::HostToSe => (&mut plan.drop_skip_to_se, &mut plan.drop_to_se),
            Direction::SeToHost => (&mut plan.drop_skip_to_host, &mut plan.drop_to_host),
        };
        if *count > 0 && *skip > 0 {
            *skip -= 1;
            return false;
        }
        take(count, &mut plan.injected)
    }

    /// Corrupt one byte of `bytes` if a corruption is due; returns whether it did.
    pub(crate) fn maybe_corrupt(&self, direction: Direction, bytes: &mut [u8]) -> bool {
        let mut plan = self.0.lock();
        let plan = &mut *plan;
        let (skip, count) = match direction {
            Direction::HostToSe => (&mut plan.skip_to_se, &mut plan.corrupt_to_se),
            Direction::SeToHost => (&mut plan.skip_to_host, &mut plan.corrupt_to_host),
        };
        if *count > 0 && *skip > 0 {
            *skip -= 1;
            return false;
        }
        let due = take(count, &mut plan.injected);
        if !due || bytes.is_empty() {
            return false;
        }
        let r = next_random(&mut plan.rng);
        let at = (r % bytes.len() as u64) as usize;
        let flip = ((r >> 32) as u8).max(1);
        bytes[at] ^= flip;
        true
    }

    pub(crate) fn take_reset(&self) -> bool {
        let mut plan = self.0.lock();
        if plan.reset_mid_apdu {
            plan.reset_mid_apdu = false;
            plan.injected += 1;
            true
        } else {
            false
        }
    }
}

fn take(counter: &mut u32, injected: &mut u32) -> bool {
    if *counter > 0 {
        *counter -= 1;
        *injected += 1;
        true
    } else {
        false
    }
}

/// xorshift64*: enough to spread corruptions over the frame, reproducible per seed.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruption_changes_exactly_one_byte_once() {
        let faults = FaultHandle::new(7);
        faults.corrupt_next_frames(Direction::SeToHost, 1);
        let original = [1u8, 2, 3, 4, 5];
        let mut bytes = original;
        assert!(!faults.maybe_corrupt(Direction::HostToSe, &mut bytes));
        assert!(faults.maybe_corrupt(Direction::SeToHost, &mut bytes));
        let changed = original.iter().zip(&bytes).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 1);
        assert!(!faults.maybe_corrupt(Direction::SeToHost, &mut bytes));
        assert!(!faults.pending());
        assert_eq!(faults.injected(), 1);
    }

    #[test]
    fn counters_run_down_and_clear() {
        let faults = FaultHandle::new(1);
        faults.nack_next_polls(2);
        faults.drop_next_frames(Direction::HostToSe, 5);
        faults.reset_mid_apdu();
        assert!(faults.take_nack());
        assert!(faults.take_nack());
        assert!(!faults.take_nack());
        assert!(faults.take_drop(Direction::HostToSe));
        assert!(!faults.take_drop(Direction::SeToHost));
        faults.clear();
        assert!(!faults.pending());
        assert!(!faults.take_reset());
    }
}
