//! Tests only: whether this process runs under user-mode emulation (qemu-user running a build
//! for another architecture), where some kernel behaviour is the emulator's, not the kernel's.
//!
//! qemu-user answers uname(2) with the emulated machine, but /proc/sys/kernel/arch is the real
//! kernel's. A 32-bit arm build on an arm64 kernel (Raspberry Pi OS armhf on a 64-bit kernel) is
//! native, not emulated.

/// The real kernel's architecture when it cannot run this build natively; None on a native run.
pub(crate) fn foreign_kernel() -> Option<String> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/arch").ok()?;
    let kernel = kernel.trim();
    let native = match std::env::consts::ARCH {
        "x86_64" => kernel == "x86_64",
        "x86" => kernel == "x86_64" || kernel.starts_with('i'),
        "aarch64" => kernel == "aarch64",
        "arm" => kernel == "aarch64" || kernel.starts_with("arm"),
        // Other targets: assume native (nothing here runs them emulated).
        _ => true,
    };
    (!native).then(|| kernel.to_string())
}

/// Panics, naming the reason, when the test needs the kernel itself and runs under emulation:
/// the test fails for that reason, not for a wrong value the emulator made up.
pub(crate) fn require_native_kernel(what: &str) {
    if let Some(kernel) = foreign_kernel() {
        panic!(
            "this test needs the {} kernel itself ({what}); it runs emulated on a {kernel} \
             kernel (qemu-user), which does not provide that: run it on the target \
             (scripts/test-platforms leaves it out under qemu-user)",
            std::env::consts::ARCH
        );
    }
}
