//! Debian 12's own kernel (the `linux-image-amd64` metapackage's current dependency), fetched with
//! `apt-get download` and unpacked with `dpkg-deb -x`: never installed. What the VM needs from it
//! (the kernel image, the modules it loads and `modules.dep`, made by `depmod -b`) is kept in
//! a cache directory named after the package and its version, so only the first run downloads.
//!
//! ```text
//!   /var/cache/wg-pkcs11-tests/linux-image-6.1.0-57-amd64_6.1.192-3/
//!       vmlinuz              (the bzImage as shipped)
//!       vmlinux              (the same, uncompressed: what qemu boots)
//!       modules.dep          (depmod's, for the whole package)
//!       kernel/...           (the modules the VM loads and their dependencies)
//! ```
//! `WG_PKCS11_TEST_CACHE` names another cache directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The metapackage that names Debian's current amd64 kernel.
const METAPACKAGE: &str = "linux-image-amd64";

/// Where the unpacked kernels are kept between runs (outside the repository's target/, so that
/// `cargo clean` does not throw away a 70 MB download).
pub const DEFAULT_CACHE: &str = "/var/cache/wg-pkcs11-tests";

/// The modules the guest loads, by module name (dependencies are added from `modules.dep`).
pub const GUEST_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_rng",
    "virtio_console",
    "wireguard",
];

/// Modules kept in the cache entry besides `GUEST_MODULES`, loaded by tests that ask for them
/// (tests/support/i2c_guest: USB I2C adapters on an emulated USB bus, and i2c-dev).
pub const EXTRA_CACHED_MODULES: &[&str] = &[
    "dummy_hcd",
    "gadgetfs",
    "i2c_robotfuzz_osif",
    "i2c_tiny_usb",
    "i2c_dev",
];

fn cached_modules() -> Vec<&'static str> {
    GUEST_MODULES
        .iter()
        .chain(EXTRA_CACHED_MODULES)
        .copied()
        .collect()
}

/// An unpacked kernel: its image and modules.
pub struct KernelPackage {
    /// `linux-image-6.1.0-57-amd64`
    pub name: String,
    /// `6.1.192-3`
    pub version: String,
    pub dir: PathBuf,
}

impl KernelPackage {
    /// The kernel the VM boots: from the cache, or downloaded and unpacked into it first.
    pub fn get() -> KernelPackage {
        let cache = std::env::var_os("WG_PKCS11_TEST_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE));
        let (name, version) = resolve_kernel_package();
        let dir = cache.join(format!("{name}_{version}"));
        let package = KernelPackage { name, version, dir };
        if !package.is_complete() {
            package.fetch(&cache);
        }
        if !package.vmlinux().is_file() {
            package.extract_vmlinux();
        }
        package
    }

    /// The kernel as Debian ships it: a bzImage, xz-compressed.
    pub fn vmlinuz(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    /// The same kernel uncompressed, an ELF file with a PVH entry point (Debian's kernel has
    /// CONFIG_PVH=y), which qemu boots directly: under TCG that saves the 15-25 s the bzImage
    /// spends decompressing itself in emulation.
    pub fn vmlinux(&self) -> PathBuf {
        self.dir.join("vmlinux")
    }

    /// Finds the xz stream inside the bzImage and decompresses it with xz(1) (as the kernel's
    /// scripts/extract-vmlinux does), into the cache entry.
    fn extract_vmlinux(&self) {
        const XZ_MAGIC: &[u8] = b"\xfd7zXZ\x00";
        let image = std::fs::read(self.vmlinuz())
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.vmlinuz().display()));
        let start = image
            .windows(XZ_MAGIC.len())
            .position(|w| w == XZ_MAGIC)
            .unwrap_or_else(|| {
                panic!(
                    "{} holds no xz stream: this kernel is not compressed the way Debian 12's is",
                    self.vmlinuz().display()
                )
            });
        let partial = self.dir.join(".vmlinux.partial");
        let output = std::fs::File::create(&partial)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", partial.display()));
        let mut child = Command::new("xz")
            .args(["-dc", "--single-stream"])
            .stdin(std::process::Stdio::piped())
            .stdout(output)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run xz (package xz-utils): {e}"));
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin is piped");
            // xz stops reading at the end of the stream; what follows it in the image is not
            // xz's business, so a broken pipe here is expected.
            let _ = stdin.write_all(&image[start..]);
        }
        let out = child.wait_with_output().expect("xz did not finish");
        let elf = std::fs::read(&partial)
            .map(|d| d.starts_with(b"\x7fELF"))
            .unwrap_or(false);
        if !out.status.success() || !elf {
            panic!(
                "cannot extract the uncompressed kernel from {} ({}): {}",
                self.vmlinuz().display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::rename(&partial, self.vmlinux())
            .unwrap_or_else(|e| panic!("cannot move {} into place: {e}", partial.display()));
    }

    /// `modules.dep`: module path (relative to the modules directory) -> its dependencies.
    pub fn modules_dep(&self) -> BTreeMap<String, Vec<String>> {
        let path = self.dir.join("modules.dep");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        parse_modules_dep(&text)
    }

    /// Whether the cache entry has the image and every module the guest loads (an entry made
    /// when the guest loaded fewer modules lacks some).
    fn is_complete(&self) -> bool {
        self.vmlinuz().is_file()
            && self.dir.join("modules.dep").is_file()
            && load_order(&self.modules_dep(), &cached_modules())
                .iter()
                .all(|m| self.dir.join(m).is_file())
    }

    /// Downloads the package, unpacks it in a scratch directory inside the cache, runs depmod on
    /// it, copies what the VM needs, and renames the result into place (atomic: a run that is
    /// interrupted leaves no half-filled cache entry, and two runs at once both end well).
    fn fetch(&self, cache: &Path) {
        std::fs::create_dir_all(cache)
            .unwrap_or_else(|e| panic!("cannot create the cache {}: {e}", cache.display()));
        let scratch = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(cache)
            .unwrap_or_else(|e| panic!("cannot create a directory in {}: {e}", cache.display()));
        eprintln!(
            "kernel VM: downloading {} {} into {} (once; later runs use the cache)",
            self.name,
            self.version,
            cache.display()
        );
        run(Command::new("apt-get")
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .arg(format!("{}={}", self.name, self.version))
            .current_dir(scratch.path()));
        let deb = std::fs::read_dir(scratch.path())
            .expect("cannot list the download directory")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .unwrap_or_else(|| panic!("apt-get download {} left no .deb", self.name));
        let root = scratch.path().join("root");
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
        let release = self.name.trim_start_matches("linux-image-").to_string();
        // modules.dep is made at install time, not shipped: depmod on the unpacked tree.
        run(Command::new(depmod()).arg("-b").arg(&root).arg(&release));

        let modules = root.join("lib/modules").join(&release);
        let staged = scratch.path().join("staged");
        std::fs::create_dir_all(&staged).expect("cannot create the staging directory");
        copy(
            &root.join(format!("boot/vmlinuz-{release}")),
            &staged.join("vmlinuz"),
        );
        copy(&modules.join("modules.dep"), &staged.join("modules.dep"));
        let dep = parse_modules_dep(&std::fs::read_to_string(staged.join("modules.dep")).unwrap());
        for module in load_order(&dep, &cached_modules()) {
            copy(&modules.join(&module), &staged.join(&module));
        }
        if self.dir.exists() && !self.is_complete() {
            // An entry with fewer modules: moved aside into the scratch directory, which goes
            // when this function returns.
            let _ = std::fs::rename(&self.dir, scratch.path().join("old"));
        }
        match std::fs::rename(&staged, &self.dir) {
            Ok(()) => {}
            // Another test binary filled the same entry meanwhile: use theirs.
            Err(_) if self.is_complete() => {}
            Err(e) => panic!("cannot move the kernel into {}: {e}", self.dir.display()),
        }
    }
}

/// The package `linux-image-amd64` depends on, and its version, from apt's lists (no network);
/// runs `apt-get update` first when apt does not know the metapackage yet (a fresh machine).
fn resolve_kernel_package() -> (String, String) {
    if let Some(found) = query_apt() {
        return found;
    }
    eprintln!("kernel VM: apt does not know {METAPACKAGE}: running apt-get update");
    run(Command::new("apt-get").args(["update", "-q"]));
    query_apt().unwrap_or_else(|| {
        panic!(
            "apt knows no {METAPACKAGE} even after apt-get update: the kernel VM needs Debian 12's \
             main archive in the apt sources"
        )
    })
}

fn query_apt() -> Option<(String, String)> {
    let depends = output(Command::new("apt-cache").args(["depends", METAPACKAGE]))?;
    let name = depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .find(|d| d.starts_with("linux-image-") && d.ends_with("-amd64"))?
        .to_string();
    let policy = output(Command::new("apt-cache").args(["policy", &name]))?;
    let version = policy
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Candidate: "))
        .map(str::trim)
        .find(|v| *v != "(none)")?
        .to_string();
    Some((name, version))
}

/// kmod's depmod, which is in /usr/sbin: not on every user's PATH.
fn depmod() -> PathBuf {
    ["/usr/sbin/depmod", "/sbin/depmod"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("depmod"))
}

fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{command:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn copy(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).expect("cannot create a directory in the cache");
    }
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
}

/// `kernel/x/y.ko: kernel/a.ko kernel/b.ko` lines.
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            Some((
                module.trim().to_string(),
                deps.split_whitespace().map(str::to_string).collect(),
            ))
        })
        .collect()
}

/// Module name as modprobe sees it: file stem with `-` as `_` (`virtio-rng.ko` is `virtio_rng`).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.trim_end_matches(".ko").replace('-', "_")
}

/// The module files to load, dependencies before the modules that need them, for `wanted`
/// (module names). Panics naming a module the kernel does not have.
pub fn load_order(dep: &BTreeMap<String, Vec<String>>, wanted: &[&str]) -> Vec<String> {
    fn visit(
        module: &str,
        dep: &BTreeMap<String, Vec<String>>,
        order: &mut Vec<String>,
        visiting: &mut Vec<String>,
    ) {
        if order.iter().any(|m| m == module) {
            return;
        }
        assert!(
            !visiting.iter().any(|m| m == module),
            "modules.dep has a dependency cycle through {module}"
        );
        visiting.push(module.to_string());
        for d in dep.get(module).into_iter().flatten() {
            visit(d, dep, order, visiting);
        }
        visiting.pop();
        order.push(module.to_string());
    }
    let mut order = Vec::new();
    for name in wanted {
        let path = dep
            .keys()
            .find(|p| module_name(p) == *name)
            .unwrap_or_else(|| panic!("the kernel package has no module {name}"));
        visit(path, dep, &mut order, &mut Vec::new());
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_dependencies_load_first() {
        let dep = parse_modules_dep(
            "kernel/drivers/net/wireguard/wireguard.ko: kernel/lib/crypto/libchacha20poly1305.ko kernel/net/ipv4/udp_tunnel.ko\n\
             kernel/lib/crypto/libchacha20poly1305.ko: kernel/lib/crypto/libchacha.ko\n\
             kernel/lib/crypto/libchacha.ko:\n\
             kernel/net/ipv4/udp_tunnel.ko:\n\
             kernel/drivers/char/hw_random/virtio-rng.ko:\n",
        );
        let order = load_order(&dep, &["wireguard", "virtio_rng"]);
        assert_eq!(
            order,
            [
                "kernel/lib/crypto/libchacha.ko",
                "kernel/lib/crypto/libchacha20poly1305.ko",
                "kernel/net/ipv4/udp_tunnel.ko",
                "kernel/drivers/net/wireguard/wireguard.ko",
                "kernel/drivers/char/hw_random/virtio-rng.ko",
            ]
        );
    }

    #[test]
    #[should_panic(expected = "no module nosuch")]
    fn harness_a_missing_module_is_named() {
        load_order(&parse_modules_dep("kernel/a.ko:\n"), &["nosuch"]);
    }
}
