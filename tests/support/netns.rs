//! Network namespaces owned by a test.
//!
//! Each `Netns` is a fresh namespace named `e2e-<pid>-<n>-<tag>`, with only its loopback up.
//! When the last handle drops (also while a test panics) every process still inside is stopped
//! and the namespace is deleted. Namespaces left behind by a test process that was killed are
//! removed by the next test that creates one.

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use crate::process::{kill, terminate};
use crate::wait::poll_until;

const PREFIX: &str = "e2e-";

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

/// Panics unless running as root: namespaces, veth pairs and TUN devices need it, and a test that
/// needs them must fail, not skip.
pub fn require_root() {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        panic!(
            "this test needs root (it creates network namespaces, veth pairs and TUN devices); \
             run the test suite as root, e.g. `sudo scripts/test`"
        );
    }
}

/// A network namespace; clones share it, and the last one to drop removes it.
#[derive(Clone)]
pub struct Netns {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
}

impl Netns {
    /// Creates a namespace; `tag` (a few letters) makes its name readable in `ip netns list`.
    pub fn new(tag: &str) -> Netns {
        require_root();
        SWEEP.call_once(remove_orphaned_namespaces);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{tag}", std::process::id());
        run_checked(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns {
            inner: Arc::new(Inner { name }),
        };
        ns.run(["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A command that runs `program` inside the namespace (`ip netns exec NAME program`, which
    /// execs the program itself, so the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.name()]).arg(program);
        command
    }

    /// Runs `argv` inside the namespace and returns its output, whatever its exit status.
    pub fn output<I, S>(&self, argv: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut argv = argv.into_iter();
        let program = argv.next().expect("empty command line");
        let mut command = self.command(program);
        command.args(argv);
        command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
    }

    /// Runs `argv` inside the namespace; panics with its output unless it succeeds. Returns stdout.
    pub fn run<I, S>(&self, argv: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let argv: Vec<_> = argv.into_iter().map(|s| s.as_ref().to_owned()).collect();
        let output = self.output(&argv);
        if !output.status.success() {
            panic!(
                "in namespace {}: {:?} failed ({}):\nstdout: {}\nstderr: {}",
                self.name(),
                argv,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Pids of every process inside the namespace.
    pub fn pids(&self) -> Vec<u32> {
        namespace_pids(self.name())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        remove_namespace(&self.name);
    }
}

/// Joins two namespaces with a veth pair: `a_if` in `a` with `a_cidr`, `b_if` in `b` with
/// `b_cidr` (IPv4 or IPv6, prefix included), both up.
pub fn veth_pair(a: &Netns, a_if: &str, a_cidr: &str, b: &Netns, b_if: &str, b_cidr: &str) {
    run_checked(Command::new("ip").args([
        "-n",
        a.name(),
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]));
    for (ns, ifname, cidr) in [(a, a_if, a_cidr), (b, b_if, b_cidr)] {
        add_address(ns, ifname, cidr);
        ns.run(["ip", "link", "set", ifname, "up"]);
    }
}

/// Adds an address to an interface; IPv6 addresses skip duplicate address detection so they are
/// usable at once.
pub fn add_address(ns: &Netns, ifname: &str, cidr: &str) {
    if cidr.contains(':') {
        ns.run(["ip", "-6", "address", "add", cidr, "dev", ifname, "nodad"]);
    } else {
        ns.run(["ip", "address", "add", cidr, "dev", ifname]);
    }
}

fn run_checked(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn namespace_pids(name: &str) -> Vec<u32> {
    let output = Command::new("ip").args(["netns", "pids", name]).output();
    match output {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Stops everything inside (SIGTERM, then SIGKILL after a grace period) and deletes the namespace.
fn remove_namespace(name: &str) {
    let pids = namespace_pids(name);
    if !pids.is_empty() {
        pids.iter().copied().for_each(terminate);
        let gone = poll_until(Duration::from_secs(3), || namespace_pids(name).is_empty());
        if !gone {
            namespace_pids(name).into_iter().for_each(kill);
            poll_until(Duration::from_secs(2), || namespace_pids(name).is_empty());
        }
    }
    let _ = Command::new("ip").args(["netns", "delete", name]).output();
}

/// Deletes `e2e-<pid>-...` namespaces whose test process no longer exists.
fn remove_orphaned_namespaces() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            remove_namespace(name);
        }
    }
}
