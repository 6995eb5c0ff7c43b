//! The token's connection to its chip, reopened in a forked child.
//!
//! A child of fork() inherits the parent's open device and, for the virtual chip, its in-memory
//! link state; both sides using them would interleave T=1 frames with stale sequence numbers.
//! So every use checks the process id and a child opens its own link first.

use super::chip::{Chip, ChipResult};
use crate::config::Config;

pub type Opener = Box<dyn Fn(&Config) -> ChipResult<Box<dyn Chip>> + Send + Sync>;

pub struct ChipLink {
    chip: Option<Box<dyn Chip>>,
    pid: u32,
    opener: Opener,
}

impl ChipLink {
    pub fn open(config: &Config, opener: Opener) -> ChipResult<ChipLink> {
        let chip = opener(config)?;
        Ok(ChipLink {
            chip: Some(chip),
            pid: std::process::id(),
            opener,
        })
    }

    /// The chip, reopened first if this is a forked child of the process that opened it.
    pub fn chip(&mut self, config: &Config) -> ChipResult<&mut dyn Chip> {
        let pid = std::process::id();
        if self.pid != pid || self.chip.is_none() {
            if self.pid != pid {
                log::info!(
                    "process {pid} is a fork of {}: opening its own link to the SE050",
                    self.pid
                );
                // The parent's link is the parent's: dropping our copy only closes our descriptors.
                self.chip = None;
            }
            self.chip = Some((self.opener)(config)?);
            self.pid = pid;
        }
        Ok(self.chip.as_deref_mut().expect("opened above"))
    }

    /// Whether this process's chip runs commands inside an authenticated session (false in a
    /// forked child, whose link is not the parent's).
    pub fn in_auth_session(&self) -> bool {
        self.pid == std::process::id() && self.chip.as_deref().is_some_and(|c| c.in_auth_session())
    }
}
