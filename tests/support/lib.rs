//! Shared helpers of the end-to-end tests.
//!
//! Everything here drives real programs: the built `libpkcs11_se050.so` and `wg-pkcs11`, the
//! Debian packages `wireguard-go`, `wg`, `iperf3`, `ping`, `ip`, and `boringtun-cli` from
//! crates.io, all inside network namespaces that each test creates and removes. Nothing here
//! sends a packet outside those namespaces.
//!
//! Typical use:
//! ```ignore
//! let pair = NamespacePair::new("wggo");            // two namespaces joined by a veth pair
//! let token = VirtualToken::new(10);                 // a virtual SE050 with 10 ms per operation
//! let public = wg_pkcs11_genkey(&token, "wg0");      // key pair generated inside the chip
//! ```

pub mod artifacts;
pub mod doc_blocks;
pub mod doc_flags;
pub mod doc_sandbox;
pub mod exit_cleanup;
pub mod guests;
pub mod i2c_guest;
pub mod interop;
pub mod kernel_vm;
pub mod netns;
pub mod process;
pub mod topology;
pub mod traffic;
pub mod virtual_token;
pub mod wait;
pub mod wg_pkcs11;
pub mod wireguard;

pub use artifacts::{module_path, target_profile_dir, wg_pkcs11_binary};
pub use netns::{require_root, Netns};
pub use process::Background;
pub use topology::NamespacePair;
pub use traffic::{iperf3, ping, ping_until_reply, IperfResult};
pub use virtual_token::VirtualToken;
pub use wait::{poll_until, wait_until};
pub use wg_pkcs11::{wg_pkcs11_genkey, wg_pkcs11_pubkey, WgPkcs11, WgPkcs11Conf};
pub use wireguard::{
    unique_interface_name, wg_genkey, wg_pubkey, wg_show_dump, PeerSpec, PeerStatus, UserspacePeer,
    UserspaceWireGuard,
};
