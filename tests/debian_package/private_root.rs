//! A private root for tests that install packages: the host's `/` seen through an overlayfs whose
//! upper layer is a tmpfs, chrooted into, in new mount and PID namespaces. `dpkg -i` and
//! `dpkg --purge` there change only the tmpfs.
//!
//! The test runs itself again (`run_inside`) under `unshare --mount --pid --fork --kill-child`:
//! the copy is the new PID namespace's init, makes the private root (`enter`) and runs the part
//! of the test that installs. Nothing outlives it: `unshare` gets SIGKILL when the test's thread
//! ends (PR_SET_PDEATHSIG), then kills the copy (--kill-child), and the kernel kills every other
//! process of the PID namespace (a daemon, wireguard-go) with its init; the mount namespace, its
//! tmpfs and every network namespace bound in its /run go with the last of them. So a killed run
//! leaves nothing behind, and the host can be compared before and after by the outer test.
//!
//! Where overlayfs (or any other step) is missing, this panics: a test that needs isolation
//! fails, it never falls back to the host.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Set in the copy of the test that runs inside the namespaces.
const INSIDE_ENV: &str = "WG_PKCS11_TEST_PRIVATE_ROOT";

/// The file written into the private root's upper layer: found at `/` only inside one.
pub const MARKER: &str = "/.wg-pkcs11-private-root";

/// Whether this process is the copy of the test that runs inside the namespaces.
pub fn inside() -> bool {
    std::env::var_os(INSIDE_ENV).is_some()
}

/// Runs this test executable's test `test_name` again, alone, in new mount and PID namespaces,
/// with `env` added to its environment; returns its output once it and every process it
/// started have ended.
pub fn run_inside(test_name: &str, env: &[(&str, &Path)]) -> Output {
    assert!(
        !Path::new(MARKER).exists(),
        "{MARKER} exists on the host: it must appear only inside a private root"
    );
    let exe = std::env::current_exe().expect("cannot find this test executable");
    let mut command = Command::new("unshare");
    command
        .args([
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--kill-child",
        ])
        .args(["--mount-proc", "--"])
        .arg(exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(INSIDE_ENV, "1");
    for (name, value) in env {
        command.env(name, value);
    }
    // SAFETY: between fork and exec the closure makes one async-signal-safe call (prctl) and
    // allocates nothing. No race with the thread's end: output() returns only after the exec
    // and the child's end.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run unshare (util-linux): {e}"))
}

/// In the copy `run_inside` started: mounts the private root on `staging` (an existing host
/// directory, which the host sees stay empty) and chroots into it.
pub fn enter(staging: &Path) {
    // Fail closed: only the init of a new PID namespace, which unshare made with a new mount
    // namespace, may mount and install.
    assert!(
        std::process::id() == 1,
        "{INSIDE_ENV} is set, but this process is not the init of a new PID namespace: not \
         making a private root"
    );
    mount(&["--make-rprivate", "/"]);
    let staging_str = staging.to_str().expect("the staging path is not UTF-8");
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        "mode=0755",
        "private-root",
        staging_str,
    ]);
    let root = staging.join("root");
    for dir in ["root", "upper", "work"] {
        std::fs::create_dir(staging.join(dir)).unwrap();
    }
    overlay(
        Path::new("/"),
        &staging.join("upper"),
        &staging.join("work"),
        &root,
    );
    // Other file systems that hold what dpkg writes or what the test runs (an overlay does not
    // reach into the mounts below its lower directory): each gets its own overlay.
    let needed = ["/etc", "/usr", "/var", env!("CARGO_MANIFEST_DIR")];
    for (n, mount_point) in mount_points().iter().enumerate() {
        let covers_needed = needed.iter().any(|p| Path::new(p).starts_with(mount_point));
        if mount_point != Path::new("/") && covers_needed && !mount_point.starts_with(staging) {
            let upper = staging.join(format!("upper-{n}"));
            let work = staging.join(format!("work-{n}"));
            std::fs::create_dir(&upper).unwrap();
            std::fs::create_dir(&work).unwrap();
            let inside = root.join(mount_point.strip_prefix("/").unwrap());
            overlay(mount_point, &upper, &work, &inside);
        }
    }
    // /dev and /sys are the host's (the tunnel needs /dev/net/tun, `ip netns` needs /sys), /proc
    // is this PID namespace's; /run and /tmp are empty: no socket of a host daemon (systemd's,
    // for one) is reachable from the maintainer scripts, and no run-time file of the host is
    // touched.
    let at = |dir: &str| root.join(dir).to_str().unwrap().to_string();
    mount(&["--rbind", "/dev", &at("dev")]);
    mount(&["--rbind", "/sys", &at("sys")]);
    mount(&["-t", "proc", "proc", &at("proc")]);
    mount(&["-t", "tmpfs", "-o", "mode=0755", "run", &at("run")]);
    mount(&["-t", "tmpfs", "-o", "mode=1777", "tmp", &at("tmp")]);
    // A workspace under /tmp or /run (a CI's fresh clone in /tmp) is hidden by the empty tmpfs
    // just mounted there: it comes back through an overlay of its own, so that what the test
    // writes there stays in the private root too.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    if ["/tmp", "/run"]
        .iter()
        .any(|dir| workspace.starts_with(dir))
    {
        let inside = root.join(workspace.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        let upper = staging.join("upper-workspace");
        let work = staging.join("work-workspace");
        std::fs::create_dir(&upper).unwrap();
        std::fs::create_dir(&work).unwrap();
        overlay(workspace, &upper, &work, &inside);
    }
    let lock = root.join("run/lock");
    std::fs::create_dir(&lock).unwrap();
    std::fs::set_permissions(&lock, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    std::fs::write(root.join(&MARKER[1..]), "").unwrap();

    std::os::unix::fs::chroot(&root).unwrap_or_else(|e| panic!("chroot {}: {e}", root.display()));
    std::env::set_current_dir("/").unwrap();
    // Fail closed: the marker proves `/` is the overlay before anything is installed.
    assert!(
        Path::new(MARKER).exists(),
        "the private root is not in place"
    );
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("Cargo.toml")
            .is_file(),
        "the workspace is not visible in the private root"
    );
}

fn overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) {
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(target)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
    assert!(
        out.status.success(),
        "cannot mount an overlay of {} on {} (is overlayfs available? `modprobe overlay`): this \
         test installs the package only in a private root, never on the host: {}",
        lower.display(),
        target.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mount(args: &[&str]) {
    let out = Command::new("mount")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
    assert!(
        out.status.success(),
        "mount {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The mount points of this mount namespace (/proc/self/mountinfo's fifth field).
fn mount_points() -> Vec<PathBuf> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").expect("cannot read /proc/self/mountinfo");
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(field.replace("\\040", " ")))
        .collect()
}
