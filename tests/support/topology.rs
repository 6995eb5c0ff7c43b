//! The standard test network: two namespaces joined by a veth pair.
//!
//! ```text
//!   namespace a                                   namespace b
//!   veth-a 10.0.0.1/24, fd00::1/64  <-- veth -->  veth-b 10.0.0.2/24, fd00::2/64
//!   tunnel 10.10.0.1/24, fd00:10::1/64            tunnel 10.10.0.2/24, fd00:10::2/64
//! ```
//! The addresses exist only inside these namespaces, so tests can run side by side.

use std::path::Path;

use tempfile::TempDir;

use crate::netns::{veth_pair, Netns};

pub const A_UNDERLAY: &str = "10.0.0.1";
pub const B_UNDERLAY: &str = "10.0.0.2";
pub const A_UNDERLAY6: &str = "fd00::1";
pub const B_UNDERLAY6: &str = "fd00::2";
pub const A_TUNNEL: &str = "10.10.0.1";
pub const B_TUNNEL: &str = "10.10.0.2";
pub const A_TUNNEL6: &str = "fd00:10::1";
pub const B_TUNNEL6: &str = "fd00:10::2";
pub const LISTEN_PORT_A: u16 = 51820;
pub const LISTEN_PORT_B: u16 = 51821;

/// Two namespaces, the veth between them, and a directory for logs, keys and configs. Set
/// `E2E_KEEP=1` to keep that directory after the test (its path is printed).
pub struct NamespacePair {
    pub a: Netns,
    pub b: Netns,
    dir: TempDir,
}

impl NamespacePair {
    pub fn new(tag: &str) -> NamespacePair {
        let a = Netns::new(&format!("{tag}-a"));
        let b = Netns::new(&format!("{tag}-b"));
        veth_pair(&a, "veth-a", "10.0.0.1/24", &b, "veth-b", "10.0.0.2/24");
        crate::netns::add_address(&a, "veth-a", "fd00::1/64");
        crate::netns::add_address(&b, "veth-b", "fd00::2/64");
        let dir = tempfile::Builder::new()
            .prefix(&format!("e2e-{tag}-"))
            .tempdir()
            .expect("cannot create a temporary directory");
        NamespacePair { a, b, dir }
    }

    /// Where this test's logs, keys and configuration files go.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Endpoint (`addr:port`) of namespace a's WireGuard interface as seen from b.
    pub fn a_endpoint(&self) -> String {
        format!("{A_UNDERLAY}:{LISTEN_PORT_A}")
    }

    /// Endpoint of namespace b's WireGuard interface as seen from a.
    pub fn b_endpoint(&self) -> String {
        format!("{B_UNDERLAY}:{LISTEN_PORT_B}")
    }

    /// The same endpoints over the IPv6 underlay, as `wg` writes them.
    pub fn a_endpoint6(&self) -> String {
        format!("[{A_UNDERLAY6}]:{LISTEN_PORT_A}")
    }

    pub fn b_endpoint6(&self) -> String {
        format!("[{B_UNDERLAY6}]:{LISTEN_PORT_B}")
    }
}

impl Drop for NamespacePair {
    fn drop(&mut self) {
        if std::env::var_os("E2E_KEEP").is_some() {
            let kept = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("cannot create a temporary directory"),
            );
            eprintln!("E2E_KEEP: logs kept in {}", kept.keep().display());
        }
    }
}
