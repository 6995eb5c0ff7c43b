//! Network namespaces for the device tests: created with unique names,
//! removed by a Drop guard even when a test fails.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Fail loudly (not skip) when the tests cannot do their job.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "the device tests create network namespaces and TUN devices: run them as root"
    );
}

/// A name unique to this process and call, short enough for an interface.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}{}",
        std::process::id() % 100000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    out
}

/// Run and require success.
pub fn must(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stdout then stderr of a finished command, for error messages and searches.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A network namespace, deleted on drop (which also removes its interfaces).
pub struct Netns {
    pub name: String,
    /// What the processes still in the namespace are sent on drop.
    exit_signal: libc::c_int,
}

impl Netns {
    /// A namespace whose processes are killed (SIGKILL) on drop.
    pub fn new(prefix: &str) -> Netns {
        Netns::with_exit_signal(prefix, libc::SIGKILL)
    }

    /// A namespace whose processes get `exit_signal` on drop: SIGTERM lets a daemon or
    /// wireguard-go remove its UAPI socket on the way out.
    pub fn with_exit_signal(prefix: &str, exit_signal: libc::c_int) -> Netns {
        require_root();
        let name = unique(prefix);
        must("ip", &["netns", "add", &name]);
        let ns = Netns { name, exit_signal };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS ...`, required to succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        must("ip", &a)
    }

    /// A command inside the namespace.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        let mut a = vec!["netns", "exec", self.name.as_str(), cmd];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// Whether the namespace has an interface `name`.
    pub fn has_link(&self, name: &str) -> bool {
        run("ip", &["-n", &self.name, "link", "show", name])
            .status
            .success()
    }

    /// A command inside the namespace, required to succeed: its stdout.
    pub fn must(&self, cmd: &str, args: &[&str]) -> String {
        let mut a = vec!["netns", "exec", self.name.as_str(), cmd];
        a.extend_from_slice(args);
        must("ip", &a)
    }

    pub fn command(&self, cmd: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.name.as_str(), cmd]);
        c
    }

    /// Run `f` on a thread that has entered this namespace: sockets and TUN
    /// devices it creates belong to the namespace for their whole life.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on this thread only, with a namespace descriptor we hold open.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in namespace panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        run("ip", &["netns", "pids", &self.name])
            .stdout
            .split(|b| *b == b'\n')
            .for_each(|pid| {
                if let Ok(pid) = std::str::from_utf8(pid).unwrap_or("").trim().parse::<i32>() {
                    if pid != std::process::id() as i32 {
                        // SAFETY: kill(2) on a process that lives in our test namespace.
                        unsafe { libc::kill(pid, self.exit_signal) };
                    }
                }
            });
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Two namespaces joined by a veth pair: `a` has 192.168.X.1/24 (and
/// fd00:X::1/64), `b` the .2 / ::2 addresses.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
    pub a_addr: String,
    pub b_addr: String,
    pub a_addr6: String,
    pub b_addr6: String,
}

impl Pair {
    pub fn new() -> Pair {
        Pair::with(("wgda", "wgdb"), libc::SIGKILL)
    }

    /// A pair whose namespaces are named after `prefixes` and whose processes get
    /// `exit_signal` on drop (see [`Netns::with_exit_signal`]).
    pub fn with(prefixes: (&str, &str), exit_signal: libc::c_int) -> Pair {
        let a = Netns::with_exit_signal(prefixes.0, exit_signal);
        let b = Netns::with_exit_signal(prefixes.1, exit_signal);
        let subnet = (std::process::id() % 200) as u8 + 20;
        let va = unique("va");
        let vb = unique("vb");
        must(
            "ip",
            &[
                "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns",
                &b.name,
            ],
        );
        let a_addr = format!("192.168.{subnet}.1");
        let b_addr = format!("192.168.{subnet}.2");
        let a_addr6 = format!("fd00:{subnet}::1");
        let b_addr6 = format!("fd00:{subnet}::2");
        a.ip(&["addr", "add", &format!("{a_addr}/24"), "dev", &va]);
        b.ip(&["addr", "add", &format!("{b_addr}/24"), "dev", &vb]);
        a.ip(&["addr", "add", &format!("{a_addr6}/64"), "dev", &va, "nodad"]);
        b.ip(&["addr", "add", &format!("{b_addr6}/64"), "dev", &vb, "nodad"]);
        a.ip(&["link", "set", &va, "up"]);
        b.ip(&["link", "set", &vb, "up"]);
        Pair {
            a,
            b,
            a_addr,
            b_addr,
            a_addr6,
            b_addr6,
        }
    }
}

/// Ping `dst` from `ns` `count` times; true if all replies came.
pub fn ping(ns: &Netns, dst: &str, count: u32) -> bool {
    let c = count.to_string();
    let out = ns.exec("ping", &["-c", &c, "-i", "0.2", "-W", "2", "-q", dst]);
    out.status.success()
}

/// Retry a ping until it answers or `secs` pass (the first handshake takes time).
pub fn ping_until(ns: &Netns, dst: &str, secs: u64) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        let out = ns.exec("ping", &["-c", "1", "-W", "1", "-q", dst]);
        if out.status.success() {
            return true;
        }
    }
    false
}

/// Start a Device inside `ns` (its TUN and socket live there), then give
/// the TUN its addresses, MTU 1420 and bring it up.
pub fn start_device(
    ns: &Netns,
    config: wg_pkcs11::device::DeviceConfig,
    addr4: &str,
    addr6: &str,
) -> wg_pkcs11::device::Device {
    let dev = ns.enter(move || wg_pkcs11::device::Device::start(config).expect("Device::start"));
    let name = dev.name().to_string();
    ns.ip(&["link", "set", &name, "mtu", "1420"]);
    ns.ip(&["addr", "add", addr4, "dev", &name]);
    ns.ip(&["addr", "add", addr6, "dev", &name, "nodad"]);
    ns.ip(&["link", "set", &name, "up"]);
    dev
}

/// A static key that takes as long as a secure element (and counts its calls).
pub struct SlowKey {
    pub inner: wg_pkcs11::key::soft::SoftKey,
    pub delay: std::time::Duration,
    pub calls: std::sync::atomic::AtomicU64,
}

impl wg_pkcs11::key::StaticKey for SlowKey {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }

    fn diffie_hellman(
        &self,
        peer_public: &[u8; 32],
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, wg_pkcs11::key::KeyError> {
        std::thread::sleep(self.delay);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.diffie_hellman(peer_public)
    }
}

pub fn b64(key: &[u8; 32]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Wait until `f` holds or `secs` pass.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    f()
}

/// wireguard-go (`wireguard-go -f IF`) in a namespace, configured with `wg set`.
pub struct WireguardGo {
    child: std::process::Child,
    pub ifname: String,
    ns: String,
}

impl WireguardGo {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        ns: &Netns,
        private_key: &[u8; 32],
        port: u16,
        peer_public: &[u8; 32],
        peer_endpoint: Option<SocketAddrLike>,
        allowed_ips: &str,
        addr4: &str,
        addr6: &str,
    ) -> WireguardGo {
        let ifname = unique("wgo");
        let child = ns
            .command("wireguard-go")
            .args(["-f", &ifname])
            .env("WG_PROCESS_FOREGROUND", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("wireguard-go is installed");
        let wg = WireguardGo {
            child,
            ifname: ifname.clone(),
            ns: ns.name.clone(),
        };
        assert!(
            wait_for(5, || std::path::Path::new(&format!(
                "/var/run/wireguard/{ifname}.sock"
            ))
            .exists()),
            "wireguard-go did not create its UAPI socket"
        );
        let keyfile = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(keyfile.path(), b64(private_key)).unwrap();
        let port_s = port.to_string();
        let peer = b64(peer_public);
        let mut args = vec![
            "set",
            ifname.as_str(),
            "private-key",
            keyfile.path().to_str().unwrap(),
            "listen-port",
            &port_s,
            "peer",
            &peer,
            "allowed-ips",
            allowed_ips,
        ];
        let ep;
        if let Some(e) = peer_endpoint {
            ep = e.0;
            args.extend(["endpoint", ep.as_str()]);
        }
        let out = ns.exec("wg", &args);
        assert!(
            out.status.success(),
            "wg set: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ns.ip(&["link", "set", &ifname, "mtu", "1420"]);
        ns.ip(&["addr", "add", addr4, "dev", &ifname]);
        ns.ip(&["addr", "add", addr6, "dev", &ifname, "nodad"]);
        ns.ip(&["link", "set", &ifname, "up"]);
        wg
    }

    /// `wg show IF dump` lines.
    pub fn dump(&self) -> String {
        must(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns,
                "wg",
                "show",
                &self.ifname,
                "dump",
            ],
        )
    }
}

/// An endpoint as `wg` takes it ("1.2.3.4:5" or "[::1]:5").
pub struct SocketAddrLike(pub String);

impl Drop for WireguardGo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(format!("/var/run/wireguard/{}.sock", self.ifname));
    }
}

/// iperf3 single-stream TCP from `client` to `server_addr` (a server runs in
/// `server` for the duration); Mbit/s received.
pub fn iperf3_tcp(server: &Netns, client: &Netns, server_addr: &str, secs: u32) -> f64 {
    let port = (5201 + std::process::id() % 1000).to_string();
    let mut srv = server
        .command("iperf3")
        .args(["-s", "-1", "-p", &port])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 is installed");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let t = secs.to_string();
    let out = client.exec("iperf3", &["-c", server_addr, "-p", &port, "-t", &t, "-J"]);
    let _ = srv.kill();
    let _ = srv.wait();
    let json = String::from_utf8_lossy(&out.stdout);
    // "sum_received": { ... "bits_per_second": N ... }
    let at = json
        .find("\"sum_received\"")
        .expect("iperf3 JSON has sum_received");
    let rest = &json[at..];
    let b = rest.find("\"bits_per_second\"").unwrap();
    let v: String = rest[b + 18..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+')
        .collect();
    v.parse::<f64>().unwrap() / 1e6
}

/// Tests that load the CPU (bulk transfers) and tests that measure latency
/// take this lock, so they do not run at the same time in one test binary.
pub fn heavy_lock() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A peer with no preshared key and no keepalive, allowed `allowed` (address, prefix length).
pub fn peer(
    key: [u8; 32],
    endpoint: Option<std::net::SocketAddr>,
    allowed: &[(&str, u8)],
) -> wg_pkcs11::device::PeerConfig {
    wg_pkcs11::device::PeerConfig {
        public_key: key,
        preshared_key: None,
        endpoint,
        allowed_ips: allowed
            .iter()
            .map(|(ip, c)| (ip.parse::<std::net::IpAddr>().unwrap(), *c))
            .collect(),
        persistent_keepalive: 0,
    }
}
