//! A virtual SE050 behind the PKCS#11 module, private to one test.
//!
//! The module reads its configuration from the file named by `PKCS11_SE050_CONF`; every process
//! given the same file (the daemon, `wg-pkcs11 genkey`, pkcs11-tool) sees the same chip, because
//! the chip's state lives in one file shared under the module's inter-process lock.

use std::path::{Path, PathBuf};
use std::process::Command;

use pkcs11_se050::virtual_se050::counters::{read_counters, Counters};
use tempfile::TempDir;

use crate::artifacts::module_path;

/// The environment variable the module reads its configuration file name from.
pub const CONF_ENV: &str = "PKCS11_SE050_CONF";

/// The token label the module reports by default.
pub const TOKEN_LABEL: &str = "SE050";

pub struct VirtualToken {
    dir: TempDir,
    conf_path: PathBuf,
    state_path: PathBuf,
}

impl VirtualToken {
    /// A fresh chip (no keys) whose every operation takes `latency_ms`.
    pub fn new(latency_ms: u32) -> VirtualToken {
        let dir = tempfile::Builder::new()
            .prefix("e2e-se050-")
            .tempdir()
            .expect("cannot create a temporary directory for the virtual SE050");
        let conf_path = dir.path().join("pkcs11-se050.toml");
        let state_path = dir.path().join("se050.state");
        let conf = format!(
            "# written by the end-to-end tests\n\
             transport = \"virtual\"\n\
             virtual_state = \"{}\"\n\
             virtual_latency_ms = {latency_ms}\n",
            state_path.display()
        );
        std::fs::write(&conf_path, conf)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", conf_path.display()));
        VirtualToken {
            dir,
            conf_path,
            state_path,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }

    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// The chip's operation counters (ECDHs, key generations, ...), cumulative over every
    /// process that used it: each X25519 ECDH is one the real chip would spend NVM on.
    pub fn counters(&self) -> Counters {
        read_counters(&self.state_path)
    }

    /// Points `command` (and every PKCS#11 module it loads) at this chip.
    pub fn apply(&self, command: &mut Command) {
        command.env(CONF_ENV, &self.conf_path);
    }

    /// The RFC 7512 URI of the key pair labelled `label`, naming the module by path.
    pub fn key_uri(&self, label: &str) -> String {
        self.key_uri_via(label, &module_path())
    }

    /// The same URI naming another module, e.g. pkcs11-spy in front of ours.
    pub fn key_uri_via(&self, label: &str, module: &Path) -> String {
        format!(
            "pkcs11:token={TOKEN_LABEL};object={label}?module-path={}",
            module.display()
        )
    }
}
