//! The Linux kernel's WireGuard as a test peer: Debian 12's kernel (with wireguard.ko) booted in
//! qemu on a minimal initramfs, reached through a tap device in a namespace the test made.
//!
//! ```ignore
//! let vm = KernelVm::shared();                          // boots once per test binary
//! let host = vm.attach_host("kern");                    // a namespace on the guest's link
//! let wg = GuestWg::create(vm, "wg1", &private, 51901, &["10.20.1.2/24"]);
//! wg.set_peer(&PeerSpec::new(&public, &["10.20.1.1/32"]).endpoint("10.77.0.10:51820"));
//! vm.run_ok("ping -c 1 10.20.1.1");                     // any shell command in the guest
//! let dump = wg.dump();                                 // `wg show wg1 dump`, parsed
//! ```
//! A failure shows the guest's console (`KernelVm::fail`), where the kernel's WireGuard debug
//! messages are, so a refusal on the kernel's side can be read.

pub mod channel;
pub mod cpio;
pub mod guest_wg;
pub mod initramfs;
pub mod package;
pub mod qemu;
pub mod tunnel;
pub mod vm;

pub use channel::GuestOutput;
pub use guest_wg::{iperf3_with_guest, GuestWg};
pub use package::KernelPackage;
pub use tunnel::{HostKey, KernelTunnel, TunnelOptions};
pub use vm::{HostLink, KernelVm, GUEST_ADDRESS};
