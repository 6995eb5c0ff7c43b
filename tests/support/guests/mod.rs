//! Guests for issue 23's platform tests, beside the kernel VM (whose command channel they use):
//!
//! - `arm64`: Debian 12's arm64 kernel in qemu-system-aarch64 (`-M virt`, TCG) running the
//!   project's arm64 build (tests/platform_arm64.rs);
//! - `systemd_vm`: Debian 12 booted with systemd as PID 1 from a root file system made with
//!   mmdebstrap, where the project's .deb is installed (tests/platform_systemd.rs).
//!
//! Kernels and root file systems come from Debian's archive through mmdebstrap and are cached
//! (debian.rs); a guest answers shell commands over a virtio-serial port (agent.rs, machine.rs).

pub mod agent;
pub mod arm64;
pub mod debian;
pub mod machine;
pub mod systemd_vm;

pub use machine::Machine;

/// kmod's depmod, which is in /usr/sbin: not on every user's PATH.
pub fn depmod() -> std::path::PathBuf {
    ["/usr/sbin/depmod", "/sbin/depmod"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| std::path::PathBuf::from("depmod"))
}

/// The virtual SE050's operation counters as a guest's module left them: the files of its state
/// directory copied out of the guest and read by the code the other tests use. `state` is the
/// guest's `virtual_state` path.
pub fn chip_counters(vm: &Machine, state: &str) -> pkcs11_se050::virtual_se050::counters::Counters {
    let (dir, file) = state.rsplit_once('/').expect("an absolute state path");
    let host = tempfile::tempdir().expect("cannot create a temporary directory");
    let listing = vm.run_ok(&format!(
        "cd '{dir}' && for f in *; do [ -f \"$f\" ] && echo \"$f\"; done; true"
    ));
    for name in listing.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let bytes = vm.read_bytes(&format!("{dir}/{name}"));
        std::fs::write(host.path().join(name), bytes).expect("cannot write a copy");
    }
    pkcs11_se050::virtual_se050::counters::read_counters(&host.path().join(file))
}
