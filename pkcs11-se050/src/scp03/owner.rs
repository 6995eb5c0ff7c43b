//! Which process holds the chip's secure channel session.
//!
//! The SE050 has one PlatformSCP session at a time, and every process using the chip opens its
//! own: when process B opens one, A's is gone. So a process must know, each time it takes the
//! chip's inter-process lock, whether the session it holds is still the chip's. The one who
//! opens a session writes a random 16-byte token at the start of the lock file (shared by all
//! users of the chip); at the next exchange under the lock it reads it back: another token means
//! another process opened a session since, and the channel is opened again.
//!
//! A wrong answer here costs no safety: a session the chip no longer has answers 6982 (or a
//! MAC error), which makes the transport re-open the channel and send the command once more.

use std::fs::File;
use std::os::unix::fs::FileExt;

pub struct ChannelOwner {
    file: File,
    token: Option<[u8; 16]>,
}

impl ChannelOwner {
    /// `file`: the chip's lock file, opened read-write. Use only while holding the lock.
    pub fn new(file: File) -> ChannelOwner {
        ChannelOwner { file, token: None }
    }

    /// Marks the session just opened as ours.
    pub fn claim(&mut self) {
        use rand_core::{OsRng, RngCore};
        let mut token = [0u8; 16];
        OsRng.fill_bytes(&mut token);
        match self.file.write_all_at(&token, 0) {
            Ok(()) => self.token = Some(token),
            Err(e) => {
                log::warn!(
                    "SCP03 secure channel: cannot mark the session in the lock file ({e}): \
                     it will be opened again at every exchange"
                );
                self.token = None;
            }
        }
    }

    /// Whether no other process opened a session since our [`claim`](Self::claim).
    pub fn still_ours(&self) -> bool {
        let Some(token) = self.token else {
            return false;
        };
        let mut found = [0u8; 16];
        self.file.read_exact_at(&mut found, 0).is_ok() && found == token
    }

    /// Our session is gone.
    pub fn release(&mut self) {
        self.token = None;
    }
}
