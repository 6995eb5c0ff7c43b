//! Debian file trees made with mmdebstrap from Debian 12's archive and kept in the test cache
//! (the kernel VM's, `WG_PKCS11_TEST_CACHE` or /var/cache/wg-pkcs11-tests), so only the first
//! run downloads. Foreign architectures (arm64) are unpacked with `--variant=extract`: nothing
//! of theirs runs on the host and the host's dpkg/apt configuration is not touched (mmdebstrap
//! keeps its own apt state inside the tree it makes).
//!
//! ```text
//!   /var/cache/wg-pkcs11-tests/debian-arm64-extract-<hash>/      busybox, wg, ip (+ libraries)
//!   /var/cache/wg-pkcs11-tests/debian-arm64-extract-<hash>/      linux-image-arm64's kernel
//!   /var/cache/wg-pkcs11-tests/debian-amd64-minbase-<hash>.ext4  the systemd guest's root (the
//!                                                          tree it was made from is removed)
//! ```
//! A cache entry is named after what it was made from (architecture, variant, package list):
//! a changed list makes a new entry. Entries are moved into place whole (a run that is
//! interrupted leaves no half-made entry).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kernel_vm::package::DEFAULT_CACHE;

/// Debian 12's archive (what mmdebstrap downloads from).
pub const MIRROR: &str = "http://deb.debian.org/debian";
pub const SUITE: &str = "bookworm";

/// The test cache directory (shared with the kernel VM's kernel package).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("WG_PKCS11_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE))
}

/// A cache entry's name: `debian-<arch>-<variant>-<16 hex digits of FNV-1a over the rest>`.
pub fn entry_name(arch: &str, variant: &str, packages: &[&str], extra: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in packages.join(",").bytes().chain(extra.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("debian-{arch}-{variant}-{hash:016x}")
}

/// A tree made by `mmdebstrap --variant=<variant> --arch=<arch> --include=<packages>`, from the
/// cache or made into it first. `finish` runs on the fresh tree before it is moved into place
/// (depmod, configuration); its name is part of `extra`, which is part of the cache key.
pub fn tree(
    arch: &str,
    variant: &str,
    packages: &[&str],
    extra: &str,
    finish: impl FnOnce(&Path),
) -> PathBuf {
    let cache = cache_dir();
    let dir = cache.join(entry_name(arch, variant, packages, extra));
    if dir.join(".complete").is_file() {
        return dir;
    }
    std::fs::create_dir_all(&cache)
        .unwrap_or_else(|e| panic!("cannot create the cache {}: {e}", cache.display()));
    let scratch = tempfile::Builder::new()
        .prefix(".mmdebstrap-")
        .tempdir_in(&cache)
        .unwrap_or_else(|e| panic!("cannot create a directory in {}: {e}", cache.display()));
    let root = scratch.path().join("root");
    eprintln!(
        "guests: mmdebstrap {SUITE} {arch} ({variant}: {}) into {} (once; later runs use the \
         cache)",
        packages.join(" "),
        dir.display()
    );
    let started = std::time::Instant::now();
    run(Command::new("mmdebstrap")
        .arg(format!("--variant={variant}"))
        .arg(format!("--arch={arch}"))
        .arg(format!("--include={}", packages.join(",")))
        .args(["--quiet", SUITE])
        .arg(&root)
        .arg(MIRROR));
    finish(&root);
    std::fs::write(
        root.join(".complete"),
        "made by tests/support/guests/debian.rs\n",
    )
    .expect("cannot mark the tree complete");
    match std::fs::rename(&root, &dir) {
        Ok(()) => {}
        // Another test binary made the same entry meanwhile: use theirs.
        Err(_) if dir.join(".complete").is_file() => {}
        Err(e) => panic!("cannot move the tree into {}: {e}", dir.display()),
    }
    eprintln!(
        "guests: {} made in {:.0} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    dir
}

/// Debian's kernel for `arch` (`linux-image-<arch>`'s current dependency), unpacked, with
/// `modules.dep` made by depmod.
pub struct Kernel {
    pub release: String,
    /// The unpacked package tree (boot/, lib/modules/<release>/).
    pub root: PathBuf,
}

impl Kernel {
    /// The kernel, with only `modules` (module names) and what they depend on kept: the package
    /// unpacks to 400 MB, of which a guest loads a few MB.
    pub fn get(arch: &str, modules: &[&str]) -> Kernel {
        let metapackage = format!("linux-image-{arch}");
        let extra = format!("depmod, kept: {}", modules.join(","));
        let root = tree(arch, "extract", &[&metapackage], &extra, |root| {
            let release = release_of(root);
            run(Command::new(crate::guests::depmod())
                .arg("-b")
                .arg(root)
                .arg(&release));
            prune(root, &release, modules);
        });
        Kernel {
            release: release_of(&root),
            root,
        }
    }

    /// The image as Debian ships it (/boot/vmlinuz-<release>).
    pub fn image(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

/// Removes from the unpacked kernel package all but the image, `modules.dep` and the modules
/// `wanted` needs.
fn prune(root: &Path, release: &str, wanted: &[&str]) {
    use crate::kernel_vm::package::{load_order, parse_modules_dep};
    let modules = root.join("lib/modules").join(release);
    let dep = parse_modules_dep(
        &std::fs::read_to_string(modules.join("modules.dep"))
            .unwrap_or_else(|e| panic!("depmod made no modules.dep: {e}")),
    );
    let keep = load_order(&dep, wanted);
    let staged = root.join(".kept");
    for m in &keep {
        let to = staged.join(m);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(modules.join(m), &to)
            .unwrap_or_else(|e| panic!("cannot keep the module {m}: {e}"));
    }
    std::fs::remove_dir_all(modules.join("kernel")).expect("cannot prune the modules");
    std::fs::rename(staged.join("kernel"), modules.join("kernel"))
        .expect("cannot restore kept modules");
    std::fs::remove_dir_all(&staged).ok();
    // The packages it depends on (kmod, initramfs-tools, libraries...) were unpacked too.
    for (dir, keep) in [
        (root.to_path_buf(), ["boot", "lib"]),
        (root.join("lib"), ["modules", ""]),
    ] {
        for entry in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
            if !keep.contains(&entry.file_name().to_string_lossy().as_ref()) {
                let path = entry.path();
                if path.is_dir() && !path.is_symlink() {
                    std::fs::remove_dir_all(&path).ok();
                } else {
                    std::fs::remove_file(&path).ok();
                }
            }
        }
    }
}

/// The one kernel release under `root`/lib/modules.
fn release_of(root: &Path) -> String {
    let modules = root.join("lib/modules");
    let mut releases: Vec<String> = std::fs::read_dir(&modules)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", modules.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        releases.len() == 1,
        "expected one kernel in {}, found {releases:?}",
        modules.display()
    );
    releases.pop().unwrap()
}

pub fn run(command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| {
        panic!("cannot run {command:?}: {e} (scripts/install-deps installs it)")
    });
    if !out.status.success() {
        panic!(
            "{command:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
