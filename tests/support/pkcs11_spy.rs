//! OpenSC's pkcs11-spy between a program and the module: it logs every PKCS#11 call, which gives
//! the tests an independent count of token operations (how many C_DeriveKey a daemon made).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::artifacts::module_path;

/// Debian 12's pkcs11-spy (package opensc-pkcs11, pulled in by opensc).
pub const SPY_MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so";

pub struct Pkcs11Spy {
    log_path: PathBuf,
}

impl Pkcs11Spy {
    /// A spy that will log to `dir/<name>.pkcs11-spy.log`.
    pub fn new(dir: &Path, name: &str) -> Pkcs11Spy {
        assert!(
            Path::new(SPY_MODULE).is_file(),
            "{SPY_MODULE} is missing: install opensc (scripts/install-deps)"
        );
        Pkcs11Spy {
            log_path: dir.join(format!("{name}.pkcs11-spy.log")),
        }
    }

    /// The module path to give the program instead of the real module.
    pub fn module(&self) -> &Path {
        Path::new(SPY_MODULE)
    }

    /// Tells the spy (loaded by `command`) which module to forward to and where to log.
    pub fn apply(&self, command: &mut Command) {
        command
            .env("PKCS11SPY", module_path())
            .env("PKCS11SPY_OUTPUT", &self.log_path);
    }

    /// How many times the program called `function` (e.g. "C_DeriveKey") so far.
    pub fn calls(&self, function: &str) -> usize {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        log.lines()
            .filter(|line| {
                line.split_once(": ")
                    .is_some_and(|(n, f)| f == function && n.chars().all(|c| c.is_ascii_digit()))
            })
            .count()
    }
}
