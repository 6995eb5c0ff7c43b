//! A private root for tests that install packages: the host's `/` seen through an overlayfs whose
//! upper layer is a tmpfs, in a mount namespace of one thread, chrooted into. `dpkg -i` and
//! `dpkg --purge` there change only the tmpfs; when the thread and the processes it started end,
//! the namespace and everything written in it are gone, on success, on a panic, or when the test
//! process is killed (processes such a run left behind are stopped by the next run).
//!
//! The namespace belongs to one thread, not the process: unshare(CLONE_NEWNS) gives the calling
//! thread its own mount namespace and file-system context (root, working directory), which the
//! threads and child processes it starts inherit, while the test harness's other threads stay on
//! the host. That is what lets the test compare the host before and after from its own thread.
//!
//! Where overlayfs (or any other step) is missing, this panics: a test that needs isolation
//! fails, it never falls back to the host.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The file written into the private root's upper layer; its content is the test process's pid.
/// Found at `/` only inside a private root, and the sign by which a later run finds processes a
/// killed run left in one.
pub const MARKER: &str = "/.wg-pkcs11-private-root";

/// Runs `body` in a new thread inside a fresh private root and returns its result; a panic in
/// `body` is re-raised here. `staging` is an existing host directory the private namespace mounts
/// its tmpfs on (the host sees it stay empty).
pub fn run_in_private_root<T: Send + 'static>(
    staging: &Path,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    stop_processes_left_by_killed_runs();
    assert!(
        !Path::new(MARKER).exists(),
        "{MARKER} exists on the host: it must appear only inside a private root"
    );
    std::fs::create_dir_all(staging)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", staging.display()));
    let staging = staging.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("private-root".into())
        .spawn(move || {
            enter(&staging);
            body()
        })
        .expect("cannot start the private root's thread");
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Makes this thread's private namespace and root; returns inside it, with `/` the overlay.
fn enter(staging: &Path) {
    // SAFETY: unshare(2) with CLONE_NEWNS takes no pointers; it gives only the calling thread a
    // copy of the mount namespace and of its file-system context (CLONE_FS is implied).
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        panic!(
            "unshare(CLONE_NEWNS) failed: {} (this test needs root and mount namespaces)",
            std::io::Error::last_os_error()
        );
    }
    // From here on every mount is this namespace's: none propagates back to the host.
    mount(&["--make-rprivate", "/"]);
    let staging_str = staging.to_str().expect("the staging path is not UTF-8");
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        "mode=0755",
        "wg-pkcs11-private-root",
        staging_str,
    ]);
    let root = staging.join("root");
    for dir in ["root", "upper", "work"] {
        std::fs::create_dir(staging.join(dir)).unwrap();
    }
    overlay("/", &staging.join("upper"), &staging.join("work"), &root);
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
            overlay(mount_point.to_str().unwrap(), &upper, &work, &inside);
        }
    }
    // The kernel's file systems are the host's (the tunnel needs /dev/net/tun, `ip netns` needs
    // /proc and /sys); /run and /tmp are empty: no socket of a host daemon (systemd's, for one)
    // is reachable from the maintainer scripts, and no run-time file of the host is touched.
    for dir in ["dev", "proc", "sys"] {
        mount(&[
            "--rbind",
            &format!("/{dir}"),
            root.join(dir).to_str().unwrap(),
        ]);
    }
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        "mode=0755",
        "run",
        root.join("run").to_str().unwrap(),
    ]);
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        "mode=1777",
        "tmp",
        root.join("tmp").to_str().unwrap(),
    ]);
    let lock = root.join("run/lock");
    std::fs::create_dir(&lock).unwrap();
    std::fs::set_permissions(&lock, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    std::fs::write(root.join(&MARKER[1..]), std::process::id().to_string()).unwrap();

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

fn overlay(lower: &str, upper: &Path, work: &Path, target: &Path) {
    let options = format!(
        "lowerdir={lower},upperdir={},workdir={}",
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
        "cannot mount an overlay of {lower} on {} (is overlayfs available? `modprobe overlay`): \
         this test installs the package only in a private root, never on the host: {}",
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

/// The mount points of this thread's mount namespace.
fn mount_points() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo")
        .expect("cannot read /proc/thread-self/mountinfo");
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(field.replace("\\040", " ")))
        .collect()
}

/// Processes still running inside a private root whose test process is gone (a killed run):
/// they hold its namespace, and its network namespaces, alive. Stopped here, as the network
/// namespace helpers stop what a killed test left in theirs.
fn stop_processes_left_by_killed_runs() {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let marker = format!("/proc/{pid}/root{MARKER}");
        let Ok(owner) = std::fs::read_to_string(&marker) else {
            continue;
        };
        let owner_alive = owner
            .trim()
            .parse::<u32>()
            .is_ok_and(|owner| Path::new(&format!("/proc/{owner}")).exists());
        if !owner_alive {
            // SAFETY: kill(2) takes no pointers; pid is a process found in /proc just now.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
