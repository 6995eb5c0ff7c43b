//! The reference WireGuard implementations (wireguard-go, boringtun-cli) and the `wg` tool.

use std::fmt::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::netns::{add_address, Netns};
use crate::process::Background;
use crate::wait::poll_until;

/// Where userspace WireGuard implementations put their UAPI sockets. It is a plain directory, not
/// per namespace, so interface names must be unique across every test running at once.
pub const UAPI_DIR: &str = "/var/run/wireguard";

/// How long a daemon may take to create its interface and UAPI socket.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

static IF_COUNTER: AtomicU32 = AtomicU32::new(0);

/// An interface name unique on this machine for this process: `<prefix><pid>n<k>`, at most 15
/// bytes (IFNAMSIZ - 1).
pub fn unique_interface_name(prefix: &str) -> String {
    let k = IF_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}n{k}", std::process::id());
    assert!(
        name.len() <= 15,
        "interface name {name} longer than 15 bytes: shorten the prefix"
    );
    name
}

pub fn uapi_socket(ifname: &str) -> PathBuf {
    Path::new(UAPI_DIR).join(format!("{ifname}.sock"))
}

/// Runs `wg` with `args`, feeding `stdin`; panics with its stderr unless it succeeds.
fn wg(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run wg (install wireguard-tools): {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .expect("cannot write to wg");
    }
    let output = child.wait_with_output().expect("wg did not finish");
    if !output.status.success() {
        panic!(
            "wg {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A software key pair from `wg genkey` / `wg pubkey`: (private, public), both base64.
pub fn wg_genkey() -> (String, String) {
    let private = wg(&["genkey"], None);
    let public = wg_pubkey(&private);
    (private, public)
}

pub fn wg_pubkey(private: &str) -> String {
    wg(&["pubkey"], Some(&format!("{private}\n")))
}

/// One `[Peer]` as both `wg set` and wg-quick files describe it.
#[derive(Clone, Debug, Default)]
pub struct PeerSpec {
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    pub persistent_keepalive: Option<u16>,
    /// A preshared key (base64). `wg set` takes it only from a file: `wg_set_args` refuses it,
    /// and the callers that support it (wg-quick files, `kernel_vm::GuestWg`) write it out.
    pub preshared_key: Option<String>,
}

impl PeerSpec {
    pub fn new(public_key: &str, allowed_ips: &[&str]) -> PeerSpec {
        PeerSpec {
            public_key: public_key.to_string(),
            allowed_ips: allowed_ips.iter().map(|s| s.to_string()).collect(),
            ..PeerSpec::default()
        }
    }

    pub fn endpoint(mut self, endpoint: &str) -> PeerSpec {
        self.endpoint = Some(endpoint.to_string());
        self
    }

    pub fn persistent_keepalive(mut self, seconds: u16) -> PeerSpec {
        self.persistent_keepalive = Some(seconds);
        self
    }

    pub fn preshared_key(mut self, key: &str) -> PeerSpec {
        self.preshared_key = Some(key.to_string());
        self
    }

    /// The `peer ...` words of a `wg set` command line.
    pub fn wg_set_args(&self) -> Vec<String> {
        assert!(
            self.preshared_key.is_none(),
            "wg set reads a preshared key from a file only: write it out and pass \
             `preshared-key FILE` (see kernel_vm::GuestWg::set_peer)"
        );
        let mut args = vec!["peer".to_string(), self.public_key.clone()];
        if !self.allowed_ips.is_empty() {
            args.push("allowed-ips".into());
            args.push(self.allowed_ips.join(","));
        }
        if let Some(endpoint) = &self.endpoint {
            args.push("endpoint".into());
            args.push(endpoint.clone());
        }
        if let Some(seconds) = self.persistent_keepalive {
            args.push("persistent-keepalive".into());
            args.push(seconds.to_string());
        }
        args
    }

    /// The `[Peer]` section of a wg-quick file.
    pub fn conf_section(&self) -> String {
        let mut s = format!("[Peer]\nPublicKey = {}\n", self.public_key);
        if !self.allowed_ips.is_empty() {
            let _ = writeln!(s, "AllowedIPs = {}", self.allowed_ips.join(", "));
        }
        if let Some(endpoint) = &self.endpoint {
            let _ = writeln!(s, "Endpoint = {endpoint}");
        }
        if let Some(seconds) = self.persistent_keepalive {
            let _ = writeln!(s, "PersistentKeepalive = {seconds}");
        }
        if let Some(key) = &self.preshared_key {
            let _ = writeln!(s, "PresharedKey = {key}");
        }
        s
    }
}

/// What `wg show IF dump` says about one peer.
#[derive(Clone, Debug)]
pub struct PeerStatus {
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    /// Seconds since the epoch; 0 when there was none.
    pub latest_handshake: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// The interface line and peer lines of `wg show IF dump`, run inside `ns`.
#[derive(Clone, Debug)]
pub struct WgDump {
    /// The interface's public key, `(none)` when the implementation cannot tell it.
    pub public_key: String,
    pub listen_port: u16,
    pub peers: Vec<PeerStatus>,
}

impl WgDump {
    pub fn peer(&self, public_key: &str) -> Option<&PeerStatus> {
        self.peers.iter().find(|p| p.public_key == public_key)
    }
}

/// Parses `wg show IF dump` from inside `ns`; panics if `wg` fails.
pub fn wg_show_dump(ns: &Netns, ifname: &str) -> WgDump {
    let text = ns.run(["wg", "show", ifname, "dump"]);
    parse_dump(&text).unwrap_or_else(|| panic!("cannot parse `wg show {ifname} dump`:\n{text}"))
}

/// Parses the text of `wg show IF dump` (one interface); None if it is not that.
pub fn parse_dump(text: &str) -> Option<WgDump> {
    let mut lines = text.lines();
    let interface: Vec<&str> = lines.next()?.split('\t').collect();
    let mut dump = WgDump {
        public_key: interface.get(1)?.to_string(),
        listen_port: interface.get(2)?.parse().ok()?,
        peers: Vec::new(),
    };
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 8 {
            return None;
        }
        dump.peers.push(PeerStatus {
            public_key: f[0].to_string(),
            endpoint: (f[2] != "(none)").then(|| f[2].to_string()),
            allowed_ips: if f[3] == "(none)" {
                Vec::new()
            } else {
                f[3].split(',').map(str::to_string).collect()
            },
            latest_handshake: f[4].parse().ok()?,
            rx_bytes: f[5].parse().ok()?,
            tx_bytes: f[6].parse().ok()?,
        });
    }
    Some(dump)
}

/// Runs `wg set IF ARGS...` inside `ns`.
pub fn wg_set(ns: &Netns, ifname: &str, args: &[String]) {
    let mut argv = vec!["wg".to_string(), "set".into(), ifname.to_string()];
    argv.extend(args.iter().cloned());
    ns.run(&argv);
}

/// The reference implementations the daemon is tested against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserspaceWireGuard {
    /// Debian 12's wireguard-go package.
    WireguardGo,
    /// boringtun-cli from crates.io.
    Boringtun,
}

impl UserspaceWireGuard {
    pub fn program(self) -> &'static str {
        match self {
            UserspaceWireGuard::WireguardGo => "wireguard-go",
            UserspaceWireGuard::Boringtun => "boringtun-cli",
        }
    }
}

/// A wireguard-go or boringtun-cli interface running in a namespace, configured with `wg`.
pub struct UserspacePeer {
    pub kind: UserspaceWireGuard,
    pub ns: Netns,
    pub ifname: String,
    key_dir: PathBuf,
    process: Background,
}

impl UserspacePeer {
    /// Starts the daemon in the foreground and waits for its interface and UAPI socket.
    pub fn start(kind: UserspaceWireGuard, ns: &Netns, ifname: &str, log_dir: &Path) -> Self {
        let mut command = ns.command(kind.program());
        match kind {
            UserspaceWireGuard::WireguardGo => {
                command.env("LOG_LEVEL", "verbose").args(["-f", ifname]);
            }
            UserspaceWireGuard::Boringtun => {
                command
                    .env("WG_LOG_LEVEL", "info")
                    .env(
                        "WG_LOG_FILE",
                        log_dir.join(format!("{ifname}.boringtun.log")),
                    )
                    .args(["-f", "--disable-drop-privileges", ifname]);
            }
        }
        let label = format!("{}-{ifname}", kind.program());
        let mut process = Background::spawn(&label, command, log_dir);
        let socket = uapi_socket(ifname);
        let ready = poll_until(STARTUP_TIMEOUT, || {
            process.assert_running();
            socket.exists() && ns.output(["wg", "show", ifname]).status.success()
        });
        if !ready {
            panic!(
                "{} did not create {ifname} and {} within {STARTUP_TIMEOUT:?}; its output:\n{}",
                kind.program(),
                socket.display(),
                process.log()
            );
        }
        UserspacePeer {
            kind,
            ns: ns.clone(),
            ifname: ifname.to_string(),
            key_dir: log_dir.to_path_buf(),
            process,
        }
    }

    /// Sets the private key (through a 0600 file, as `wg` wants), the listen port and the peers.
    pub fn configure(&self, private_key: &str, listen_port: u16, peers: &[PeerSpec]) {
        let key_file = self.key_dir.join(format!("{}.key", self.ifname));
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&key_file)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", key_file.display()));
            writeln!(f, "{private_key}").expect("cannot write the key file");
        }
        let mut args = vec![
            "private-key".to_string(),
            key_file.display().to_string(),
            "listen-port".into(),
            listen_port.to_string(),
        ];
        for peer in peers {
            args.extend(peer.wg_set_args());
        }
        self.set(&args);
    }

    /// Addresses (CIDR, IPv4 or IPv6), MTU 1420 and link up: what wg-quick would do.
    pub fn address_and_up(&self, addresses: &[&str]) {
        for cidr in addresses {
            add_address(&self.ns, &self.ifname, cidr);
        }
        self.ns
            .run(["ip", "link", "set", &self.ifname, "mtu", "1420", "up"]);
    }

    /// `wg set IF ARGS...`
    pub fn set(&self, args: &[String]) {
        wg_set(&self.ns, &self.ifname, args);
    }

    pub fn dump(&self) -> WgDump {
        wg_show_dump(&self.ns, &self.ifname)
    }

    pub fn assert_running(&mut self) {
        self.process.assert_running();
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

impl Drop for UserspacePeer {
    fn drop(&mut self) {
        self.process.stop();
        // A daemon killed rather than stopped leaves its socket behind.
        let _ = std::fs::remove_file(uapi_socket(&self.ifname));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_parses_a_wg_show_dump() {
        let text = "priv\tpubA\t51820\toff\n\
                    pubB\t(none)\t10.0.0.2:51820\t10.10.0.2/32,fd00:10::2/128\t1700000000\t1234\t5678\toff\n\
                    pubC\t(none)\t(none)\t(none)\t0\t0\t0\t25\n";
        let dump = parse_dump(text).unwrap();
        assert_eq!(dump.public_key, "pubA");
        assert_eq!(dump.listen_port, 51820);
        let b = dump.peer("pubB").unwrap();
        assert_eq!(b.endpoint.as_deref(), Some("10.0.0.2:51820"));
        assert_eq!(b.allowed_ips, ["10.10.0.2/32", "fd00:10::2/128"]);
        assert_eq!(
            (b.latest_handshake, b.rx_bytes, b.tx_bytes),
            (1700000000, 1234, 5678)
        );
        let c = dump.peer("pubC").unwrap();
        assert_eq!(c.endpoint, None);
        assert!(c.allowed_ips.is_empty());
        assert!(parse_dump("garbage").is_none());
    }
}
