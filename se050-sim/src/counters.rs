//! Operation counters of a virtual chip, cumulative across every process sharing it.
//!
//! Each real X25519 ECDH wears the SE050's NVM, so tests count them. The counters live in a
//! sidecar file `<state>.counters` (never in the state file: an ECDH must not rewrite the state):
//! 8 bytes of magic `VSE050CT`, then one u64 LE per counter in the order of [`Counter`].
//! Updating one is a `pread` and a `pwrite` of 64 bytes under the chip's inter-process lock
//! (held by the host around each APDU exchange): a couple of microseconds, no fsync. Counters
//! are test instrumentation: a crash may lose the last increments, never the chip's state.

use crate::store::counters_path;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const MAGIC: &[u8; 8] = b"VSE050CT";
const COUNTER_COUNT: usize = 9;
const FILE_LEN: usize = 8 + 8 * COUNTER_COUNT;
/// The sidecar of a build that kept 7 counters (before signatures and attested reads): read
/// with the new counters at zero.
const OLD_FILE_LEN: usize = 8 + 8 * 7;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Every command APDU processed, answered with whatever status.
    Apdus = 0,
    /// X25519 shared secrets computed.
    Ecdh = 1,
    /// Key pairs generated.
    Keygen = 2,
    /// Objects deleted.
    Deletes = 3,
    /// ReadObject commands answered with data.
    Reads = 4,
    /// GetRandom commands answered.
    Random = 5,
    /// Objects or file contents written (other than key generation).
    Writes = 6,
    /// Signatures made with a user's key (ECDSASign, EdDSASign).
    Signatures = 7,
    /// ReadObject with attestation answered (each one a signature with the attestation key).
    AttestedReads = 8,
}

/// A snapshot of all counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub apdus: u64,
    pub ecdh: u64,
    pub keygen: u64,
    pub deletes: u64,
    pub reads: u64,
    pub random: u64,
    pub writes: u64,
    pub signatures: u64,
    pub attested_reads: u64,
}

impl Counters {
    fn from_values(v: [u64; COUNTER_COUNT]) -> Self {
        Counters {
            apdus: v[0],
            ecdh: v[1],
            keygen: v[2],
            deletes: v[3],
            reads: v[4],
            random: v[5],
            writes: v[6],
            signatures: v[7],
            attested_reads: v[8],
        }
    }

    fn values(&self) -> [u64; COUNTER_COUNT] {
        [
            self.apdus,
            self.ecdh,
            self.keygen,
            self.deletes,
            self.reads,
            self.random,
            self.writes,
            self.signatures,
            self.attested_reads,
        ]
    }

    fn bump(&mut self, counter: Counter) {
        let mut values = self.values();
        // The values come from a file another process (or a damaged disk) wrote: a counter at
        // its maximum stays there rather than overflowing.
        values[counter as usize] = values[counter as usize].saturating_add(1);
        *self = Counters::from_values(values);
    }
}

/// The counters of a state file, as other processes left them; zero when there are none yet.
pub fn read_counters(state: &Path) -> Counters {
    File::open(counters_path(state))
        .ok()
        .and_then(|file| read_block(&file).ok())
        .unwrap_or_default()
}

fn read_block(file: &File) -> io::Result<Counters> {
    let mut block = [0u8; FILE_LEN];
    let n = read_up_to(file, &mut block)?;
    if n < OLD_FILE_LEN || &block[..8] != MAGIC {
        // Missing or half-written (a crash while creating): start from zero.
        return Ok(Counters::default());
    }
    let mut values = [0u64; COUNTER_COUNT];
    let present = if n >= FILE_LEN { COUNTER_COUNT } else { 7 };
    for (i, value) in values.iter_mut().enumerate().take(present) {
        let at = 8 + 8 * i;
        *value = u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"));
    }
    Ok(Counters::from_values(values))
}

fn read_up_to(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            read => n += read,
        }
    }
    Ok(n)
}

/// Counters kept in memory (an in-memory chip) or in the sidecar file.
pub struct CounterStore {
    file: Option<File>,
    memory: Counters,
}

impl CounterStore {
    pub fn in_memory() -> Self {
        CounterStore {
            file: None,
            memory: Counters::default(),
        }
    }

    /// Opens (creating if needed) the sidecar of `state`.
    pub fn open(state: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(counters_path(state))?;
        Ok(CounterStore {
            file: Some(file),
            memory: Counters::default(),
        })
    }

    /// Adds one to `counter` and to the APDU count in one read-modify-write.
    /// Failure to update is logged, not fatal: counters are instrumentation.
    pub fn count_apdu(&mut self, counter: Option<Counter>) {
        let Some(file) = &self.file else {
            self.memory.bump(Counter::Apdus);
            if let Some(counter) = counter {
                self.memory.bump(counter);
            }
            return;
        };
        let result = read_block(file).and_then(|mut counters| {
            counters.bump(Counter::Apdus);
            if let Some(counter) = counter {
                counters.bump(counter);
            }
            let mut block = [0u8; FILE_LEN];
            block[..8].copy_from_slice(MAGIC);
            for (i, value) in counters.values().iter().enumerate() {
                block[8 + 8 * i..16 + 8 * i].copy_from_slice(&value.to_le_bytes());
            }
            file.write_all_at(&block, 0)
        });
        if let Err(e) = result {
            log::warn!("virtual SE050: cannot update the operation counters: {e}");
        }
    }

    /// The current values (from the file when there is one).
    pub fn snapshot(&self) -> Counters {
        match &self.file {
            Some(file) => read_block(file).unwrap_or_default(),
            None => self.memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_in_memory() {
        let mut store = CounterStore::in_memory();
        store.count_apdu(Some(Counter::Ecdh));
        store.count_apdu(None);
        let c = store.snapshot();
        assert_eq!((c.apdus, c.ecdh, c.keygen), (2, 1, 0));
    }

    #[test]
    fn a_counter_at_its_maximum_stays_there() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("chip.state");
        let mut store = CounterStore::open(&state).unwrap();
        let mut block = MAGIC.to_vec();
        block.extend(std::iter::repeat_n(0xFF, FILE_LEN - MAGIC.len()));
        std::fs::write(counters_path(&state), &block).unwrap();
        store.count_apdu(Some(Counter::Ecdh));
        let c = store.snapshot();
        assert_eq!((c.apdus, c.ecdh), (u64::MAX, u64::MAX));
    }

    #[test]
    fn a_sidecar_of_seven_counters_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("chip.state");
        let mut block = MAGIC.to_vec();
        for value in 1..=7u64 {
            block.extend_from_slice(&value.to_le_bytes());
        }
        std::fs::write(counters_path(&state), &block).unwrap();
        let mut store = CounterStore::open(&state).unwrap();
        store.count_apdu(Some(Counter::Signatures));
        let c = store.snapshot();
        assert_eq!(
            (c.apdus, c.writes, c.signatures, c.attested_reads),
            (2, 7, 1, 0)
        );
    }

    #[test]
    fn counts_accumulate_across_handles_of_one_state() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("chip.state");
        assert_eq!(read_counters(&state), Counters::default());
        let mut a = CounterStore::open(&state).unwrap();
        let mut b = CounterStore::open(&state).unwrap();
        a.count_apdu(Some(Counter::Keygen));
        b.count_apdu(Some(Counter::Ecdh));
        b.count_apdu(Some(Counter::Ecdh));
        a.count_apdu(Some(Counter::Deletes));
        let c = read_counters(&state);
        assert_eq!(
            c,
            Counters {
                apdus: 4,
                ecdh: 2,
                keygen: 1,
                deletes: 1,
                reads: 0,
                random: 0,
                writes: 0,
                signatures: 0,
                attested_reads: 0,
            }
        );
        assert_eq!(a.snapshot(), c);
    }
}
