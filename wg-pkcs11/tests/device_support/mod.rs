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

/// A name unique to this process and call, short enough for an interface: the prefix, the
/// whole pid in base 36 (at most 5 characters for any pid Linux hands out), a `-` that no digit
/// can be, and the call's number. (Digits run together, pid 1234 call 56 and pid 12345 call 6
/// were one name, so two test processes could pick the same namespace.)
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    unique_for(
        prefix,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
    )
}

pub fn unique_for(prefix: &str, pid: u32, call: u32) -> String {
    format!("{prefix}{}-{call}", base36(pid))
}

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).expect("a base-36 digit"));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
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

/// A static key that takes as long as a secure element (and counts its calls: `started` when
/// one begins, `calls` when it has finished).
pub struct SlowKey {
    pub inner: wg_pkcs11::key::soft::SoftKey,
    pub delay: std::time::Duration,
    pub started: std::sync::atomic::AtomicU64,
    pub calls: std::sync::atomic::AtomicU64,
}

impl SlowKey {
    pub fn new(delay: std::time::Duration) -> SlowKey {
        SlowKey {
            inner: wg_pkcs11::key::soft::SoftKey::generate(),
            delay,
            started: Default::default(),
            calls: Default::default(),
        }
    }

    /// No operation in progress.
    pub fn idle(&self) -> bool {
        self.started.load(Ordering::SeqCst) == self.calls.load(Ordering::SeqCst)
    }
}

/// Wait (at most `secs`) until `devices` and `keys` are quiet: no key operation in progress and
/// nothing counted, on the devices or the keys, for a whole poll interval (a key operation
/// takes the key's delay, so a job still queued shows as one in progress; the interval is
/// longer than every key's delay). Returns the quiet counts; panics if they never settle.
pub fn settled(
    secs: u64,
    devices: &[&wg_pkcs11::device::Device],
    keys: &[&SlowKey],
) -> (Vec<wg_pkcs11::device::CounterSnapshot>, Vec<u64>) {
    let interval = keys
        .iter()
        .map(|k| k.delay)
        .max()
        .unwrap_or_default()
        .max(std::time::Duration::from_millis(50))
        * 2;
    let look = || {
        let ops: Vec<u64> = keys
            .iter()
            .map(|k| k.calls.load(Ordering::SeqCst))
            .collect();
        let counts: Vec<_> = devices.iter().map(|d| d.counters()).collect();
        let idle = keys.iter().all(|k| k.idle());
        (counts, ops, idle)
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut before = look();
    loop {
        std::thread::sleep(interval);
        let now = look();
        if now.2 && before.2 && now.0 == before.0 && now.1 == before.1 {
            return (now.0, now.1);
        }
        assert!(
            std::time::Instant::now() < end,
            "the devices never settled: {:?}",
            now.0
        );
        before = now;
    }
}

impl wg_pkcs11::key::StaticKey for SlowKey {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }

    fn diffie_hellman(
        &self,
        peer_public: &[u8; 32],
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, wg_pkcs11::key::KeyError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        self.calls.fetch_add(1, Ordering::SeqCst);
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

    /// The tab-separated fields of the first peer's line of `dump` (public key, preshared key,
    /// endpoint, allowed ips, latest handshake, rx, tx, keepalive), with the whole dump for
    /// messages.
    pub fn first_peer(&self) -> (Vec<String>, String) {
        let dump = self.dump();
        let fields = dump
            .lines()
            .nth(1)
            .unwrap_or_else(|| panic!("no peer in wireguard-go's dump: {dump}"))
            .split('\t')
            .map(String::from)
            .collect();
        (fields, dump)
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

/// What one iperf3 TCP stream through a tunnel carried (the client's report).
#[derive(Debug)]
pub struct TcpStream {
    /// Bytes the client wrote in each one-second interval, in order.
    pub per_interval: Vec<u64>,
}

/// Run one iperf3 TCP stream from `client` to `server_addr` in `server` for `secs` seconds.
/// Waits for the server's port instead of a fixed time, and bounds the whole run (a wait, not
/// a speed: the tests assert that data moved, never how fast).
pub fn iperf3_stream(server: &Netns, client: &Netns, server_addr: &str, secs: u32) -> TcpStream {
    let port = (5201 + std::process::id() % 1000).to_string();
    let mut srv = server
        .command("timeout")
        .args(["150", "iperf3", "-s", "-1", "-p", &port])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 is installed");
    let listening = wait_for(10, || {
        let out = server.exec("ss", &["-Htln", "sport", "=", &format!(":{port}")]);
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    assert!(listening, "the iperf3 server never listened on {port}");
    let t = secs.to_string();
    let out = client.exec(
        "timeout",
        &[
            "120",
            "iperf3",
            "-c",
            server_addr,
            "-p",
            &port,
            "-J",
            "-i",
            "1",
            "-t",
            &t,
        ],
    );
    let _ = srv.kill();
    let _ = srv.wait();
    assert!(out.status.success(), "iperf3 failed: {}", output_text(&out));
    let json = String::from_utf8_lossy(&out.stdout);
    // Each interval's "sum" (the one stream's total for that second): before the end section.
    let end = json.find("\"sum_sent\"").expect("iperf3 JSON has sum_sent");
    let per_interval = json[..end]
        .match_indices("\"sum\"")
        .map(|(i, _)| json_number_after(&json[i..], "\"bytes\"") as u64)
        .collect();
    TcpStream { per_interval }
}

/// The first number after `key` in `json`.
fn json_number_after(json: &str, key: &str) -> f64 {
    let at = json
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {json}"));
    let v: String = json[at + key.len()..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+')
        .collect();
    v.parse().unwrap()
}

/// Byte `i` of the stream `tcp_transfer` sends: not periodic within a segment or a batch, so
/// a reordered, repeated or lost piece shows at its offset.
fn pattern_byte(i: u64) -> u8 {
    (i ^ (i >> 8) ^ (i >> 16).wrapping_mul(31)) as u8
}

/// Send `bytes` over TCP from `client` to `server_addr` in `server`, and require that exactly
/// those bytes arrive, in order, before the sender's close. Each side gives up after a minute
/// without progress (a bound on the wait, not a speed: how fast is bench/run's business).
pub fn tcp_transfer(server: &Netns, client: &Netns, server_addr: &str, bytes: u64) {
    use std::io::{Read, Write};
    const STALL: std::time::Duration = std::time::Duration::from_secs(60);
    let ip: std::net::IpAddr = server_addr.parse().expect("an address");
    let listener = server.enter(move || std::net::TcpListener::bind((ip, 0)).expect("bind"));
    let to = listener.local_addr().unwrap();
    let sender = client.enter(move || std::net::TcpStream::connect_timeout(&to, STALL));
    let mut sender = sender.unwrap_or_else(|e| panic!("connect to {to} through the tunnel: {e}"));
    let (mut receiver, _) = listener.accept().unwrap();
    sender.set_write_timeout(Some(STALL)).unwrap();
    receiver.set_read_timeout(Some(STALL)).unwrap();
    std::thread::scope(|scope| {
        let sending = scope.spawn(move || -> std::io::Result<()> {
            let mut buf = vec![0u8; 1 << 16];
            let mut at = 0u64;
            while at < bytes {
                let n = (bytes - at).min(buf.len() as u64) as usize;
                for (k, b) in buf[..n].iter_mut().enumerate() {
                    *b = pattern_byte(at + k as u64);
                }
                sender.write_all(&buf[..n])?;
                at += n as u64;
            }
            sender.shutdown(std::net::Shutdown::Write)
        });
        let received = (|| -> Result<u64, String> {
            let mut buf = vec![0u8; 1 << 16];
            let mut at = 0u64;
            loop {
                let n = receiver
                    .read(&mut buf)
                    .map_err(|e| format!("after {at} of {bytes} bytes to {to}: {e}"))?;
                if n == 0 {
                    return Ok(at);
                }
                for (k, b) in buf[..n].iter().enumerate() {
                    let i = at + k as u64;
                    if *b != pattern_byte(i) {
                        return Err(format!("byte {i} of the stream to {to} is wrong"));
                    }
                }
                at += n as u64;
            }
        })();
        // Closed before the sender is awaited, so a failed receive ends the send at once.
        drop(receiver);
        let sent = sending.join().unwrap();
        let received = received.unwrap_or_else(|e| panic!("{e}"));
        sent.unwrap_or_else(|e| panic!("sending to {to} through the tunnel: {e}"));
        assert_eq!(
            received, bytes,
            "bytes that arrived at {to} before the close"
        );
    });
}

/// `tcp_transfer` of `bytes` from A to B, then from B to A.
pub fn tcp_both_ways(a: &Netns, a_addr: &str, b: &Netns, b_addr: &str, bytes: u64) {
    tcp_transfer(b, a, b_addr, bytes);
    tcp_transfer(a, b, a_addr, bytes);
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
