//! `wg-pkcs11 up` as a person runs it: the real binary in a network namespace, its key in a
//! virtual SE050 behind the real libpkcs11_se050.so, wireguard-go as the other side in a second
//! namespace; ping through the tunnel, `wg show`/`wg set` over UAPI, and everything taken down
//! again on SIGTERM or when the UAPI socket is removed. Needs root (fails loudly without).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wg-pkcs11");

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}{}",
        std::process::id() % 10000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn must(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `program args` run inside the network namespace `ns`.
fn run_in(ns: &str, command: &[&str]) -> Output {
    run("ip", &[&["netns", "exec", ns], command].concat())
}

fn must_in(ns: &str, command: &[&str]) -> String {
    must("ip", &[&["netns", "exec", ns], command].concat())
}

/// Send SIG`name` to a child daemon, as a user or systemd would.
fn signal(child: &Child, name: &str) {
    must("kill", &[&format!("-{name}"), &child.id().to_string()]);
}

/// Two namespaces joined by a veth pair: A = 192.168.77.1, B = 192.168.77.2.
struct Pair {
    a: String,
    b: String,
    dir: tempfile::TempDir,
    module: PathBuf,
}

impl Pair {
    fn new() -> Pair {
        assert_eq!(
            must("id", &["-u"]).trim(),
            "0",
            "these tests create network namespaces: run as root"
        );
        let (a, b) = (unique("wgea"), unique("wgeb"));
        must("ip", &["netns", "add", &a]);
        must("ip", &["netns", "add", &b]);
        let (va, vb) = (unique("va"), unique("vb"));
        must(
            "ip",
            &[
                "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vb, "netns", &b,
            ],
        );
        for (ns, dev, ip) in [(&a, &va, "192.168.77.1/24"), (&b, &vb, "192.168.77.2/24")] {
            must("ip", &["-n", ns, "addr", "add", ip, "dev", dev]);
            must("ip", &["-n", ns, "link", "set", dev, "up"]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("se050.toml"),
            format!(
                "transport = \"virtual\"\nvirtual_state = \"{}\"\n",
                dir.path().join("state").display()
            ),
        )
        .unwrap();
        let module = Path::new(BIN).parent().unwrap().join("libpkcs11_se050.so");
        assert!(
            module.is_file(),
            "{} missing: cargo build -p pkcs11-se050",
            module.display()
        );
        Pair { a, b, dir, module }
    }

    fn wg_pkcs11(&self, ns: Option<&str>, args: &[&str]) -> Command {
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => Command::new(BIN),
        };
        command
            .args(args)
            .env("PKCS11_SE050_CONF", self.dir.path().join("se050.toml"));
        command
    }

    fn uri(&self, label: &str) -> String {
        format!(
            "pkcs11:token=SE050;object={label}?module-path={}",
            self.module.display()
        )
    }

    fn genkey(&self, label: &str) -> String {
        let out = self
            .wg_pkcs11(None, &["genkey", &self.uri(label)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// wireguard-go in B on port 51820 with address 10.9.0.2/24; returns its public key.
    fn wireguard_go(&self, ifname: &str, peer_public: &str) -> String {
        must_in(&self.b, &["wireguard-go", ifname]);
        let private = must("wg", &["genkey"]);
        let key_file = self.dir.path().join("b.key");
        std::fs::write(&key_file, &private).unwrap();
        let public = {
            let mut child = Command::new("wg")
                .arg("pubkey")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(private.as_bytes())
                .unwrap();
            String::from_utf8(child.wait_with_output().unwrap().stdout)
                .unwrap()
                .trim()
                .to_string()
        };
        must_in(
            &self.b,
            &[
                "wg",
                "set",
                ifname,
                "private-key",
                key_file.to_str().unwrap(),
                "listen-port",
                "51820",
                "peer",
                peer_public,
                "allowed-ips",
                "10.9.0.1/32",
            ],
        );
        must(
            "ip",
            &["-n", &self.b, "addr", "add", "10.9.0.2/24", "dev", ifname],
        );
        must("ip", &["-n", &self.b, "link", "set", ifname, "up"]);
        public
    }

    fn write_conf(&self, ifname: &str, private_key: &str, server_public: &str) -> PathBuf {
        let hooks = self.dir.path().join("hooks.log");
        let hooks = hooks.display();
        let path = self.dir.path().join(format!("{ifname}.conf"));
        std::fs::write(
            &path,
            format!(
                "[Interface]\nPrivateKey = {private_key}\nListenPort = 51821\nAddress = 10.9.0.1/24, fd09::1/64\n\
                 PreUp = echo pre-up %i >> {hooks}\nPostUp = echo post-up %i >> {hooks}\n\
                 PreDown = echo pre-down %i >> {hooks}\nPostDown = echo post-down %i >> {hooks}\n\n\
                 [Peer]\nPublicKey = {server_public}\nEndpoint = 192.168.77.2:51820\n\
                 AllowedIPs = 10.9.0.2/32, 10.99.0.0/16\n"
            ),
        )
        .unwrap();
        path
    }

    fn hooks(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hooks.log")).unwrap_or_default()
    }

    /// `wg-pkcs11 up --foreground CONF` in A.
    fn up(&self, conf: &Path) -> Command {
        self.wg_pkcs11(
            Some(&self.a),
            &["up", "--foreground", conf.to_str().unwrap()],
        )
    }

    /// PostUp runs last: once it has, addresses and routes are in place.
    fn wait_for_post_up(&self) {
        wait_for("PostUp", Duration::from_secs(10), || {
            self.hooks().contains("post-up")
        });
    }

    /// A token key `label` in A, wireguard-go in B as its peer, and the configuration of an
    /// interface `<if_prefix>…` in A for that tunnel, not yet brought up.
    fn token_tunnel(&self, label: &str, if_prefix: &str) -> TokenTunnel {
        let public = self.genkey(label);
        let server_if = unique("wgs");
        let server_public = self.wireguard_go(&server_if, &public);
        let ifname = unique(if_prefix);
        let conf = self.write_conf(&ifname, &self.uri(label), &server_public);
        TokenTunnel {
            public,
            server_if,
            server_public,
            ifname,
            conf,
        }
    }
}

/// What [`Pair::token_tunnel`] set up.
struct TokenTunnel {
    /// A's public key, from the token.
    public: String,
    /// wireguard-go's interface in B.
    server_if: String,
    server_public: String,
    /// A's interface, named in `conf`.
    ifname: String,
    conf: PathBuf,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let pids = run("ip", &["netns", "pids", ns]);
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = run("kill", &[pid]);
            }
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < timeout, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn socket(ifname: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"))
}

#[test]
fn token_key_against_wireguard_go_then_sigterm_takes_everything_down() {
    let pair = Pair::new();
    let TokenTunnel {
        public,
        server_if,
        server_public,
        ifname,
        conf,
    } = pair.token_tunnel("wg-up", "wgc");
    let mut daemon = pair.up(&conf).stderr(Stdio::piped()).spawn().unwrap();
    pair.wait_for_post_up();

    let ping = run_in(&pair.a, &["ping", "-c", "2", "-W", "3", "10.9.0.2"]);
    assert!(
        ping.status.success(),
        "no ping through the tunnel: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );

    // The stock wg sees the handshake and the traffic; wg-pkcs11 show adds the public key.
    let dump = must_in(&pair.a, &["wg", "show", &ifname, "dump"]);
    let peer: Vec<&str> = dump.lines().nth(1).unwrap().split('\t').collect();
    assert_eq!(peer[0], server_public);
    assert!(
        peer[4].parse::<u64>().unwrap() > 0,
        "no handshake in {dump}"
    );
    assert!(
        peer[5].parse::<u64>().unwrap() > 0 && peer[6].parse::<u64>().unwrap() > 0,
        "{dump}"
    );
    let show = pair
        .wg_pkcs11(Some(&pair.a), &["show", &ifname])
        .output()
        .unwrap();
    let show = String::from_utf8(show.stdout).unwrap();
    assert!(show.contains(&format!("public key: {public}")), "{show}");
    // The virtual SE050 is a software token: `show` says the key is not in hardware.
    assert!(show.contains("private key: NOT IN HARDWARE"), "{show}");
    let server = must_in(&pair.b, &["wg", "show", &server_if, "latest-handshakes"]);
    assert!(
        !server.contains("\t0"),
        "wireguard-go saw no handshake: {server}"
    );

    // Addresses and routes as configured; wg set private-key refused.
    let addr = must("ip", &["-n", &pair.a, "addr", "show", "dev", &ifname]);
    assert!(
        addr.contains("10.9.0.1/24") && addr.contains("fd09::1/64"),
        "{addr}"
    );
    assert!(must("ip", &["-n", &pair.a, "route"]).contains(&format!("10.99.0.0/16 dev {ifname}")));
    let key_file = pair.dir.path().join("b.key");
    let refused = run_in(
        &pair.a,
        &[
            "wg",
            "set",
            &ifname,
            "private-key",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Operation not permitted"));

    // SIGTERM: exit 0, hooks in wg-quick's order, nothing left behind.
    signal(&daemon, "TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    // ... and so did its start, as a warning (shown at the default log level).
    let mut log = String::new();
    std::io::Read::read_to_string(daemon.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("is NOT in hardware"), "{log}");
    assert_eq!(
        pair.hooks(),
        format!("pre-up {ifname}\npost-up {ifname}\npre-down {ifname}\npost-down {ifname}\n")
    );
    assert!(!socket(&ifname).exists());
    assert!(
        !run("ip", &["-n", &pair.a, "link", "show", &ifname])
            .status
            .success(),
        "interface left behind"
    );
    assert!(!must("ip", &["-n", &pair.a, "route"]).contains("10.99.0.0"));
}

#[test]
fn software_key_and_removing_the_socket_stops_the_daemon() {
    let pair = Pair::new();
    let private = must("wg", &["genkey"]).trim().to_string();
    let ifname = unique("wgd");
    let some_peer = "hNwrkRsuKu+T7x7HxIxlGa9hsIKLgRJwKp5u8zYBGGY=";
    let conf = pair.write_conf(&ifname, &private, some_peer);
    let mut daemon = pair.up(&conf).spawn().unwrap();
    wait_for("the UAPI socket", Duration::from_secs(10), || {
        socket(&ifname).exists()
    });
    // wg set: add a peer with allowed IPs, then remove it.
    let other = "eORRaeHQ7+F8Q+VjKU/AGBXkVMMMHQIGD4+EQnRImX4=";
    must_in(
        &pair.a,
        &[
            "wg",
            "set",
            &ifname,
            "peer",
            other,
            "allowed-ips",
            "10.50.0.0/24",
            "persistent-keepalive",
            "7",
        ],
    );
    let dump = must_in(&pair.a, &["wg", "show", &ifname, "dump"]);
    assert!(
        dump.lines()
            .any(|l| l.starts_with(other) && l.contains("10.50.0.0/24") && l.ends_with("\t7")),
        "{dump}"
    );
    must_in(&pair.a, &["wg", "set", &ifname, "peer", other, "remove"]);
    assert!(!must_in(&pair.a, &["wg", "show", &ifname, "peers"]).contains(other));

    std::fs::remove_file(socket(&ifname)).unwrap();
    let status = wait_exit(&mut daemon, Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(
        !run("ip", &["-n", &pair.a, "link", "show", &ifname])
            .status
            .success(),
        "interface left behind"
    );
    assert!(
        pair.hooks().ends_with(&format!("post-down {ifname}\n")),
        "{}",
        pair.hooks()
    );
}

#[test]
fn failures_are_reported_and_leave_nothing() {
    let pair = Pair::new();
    let ifname = unique("wgf");
    let fail = |conf: &Path| {
        let out = pair.up(conf).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(!run("ip", &["-n", &pair.a, "link", "show", &ifname])
            .status
            .success());
        assert!(!socket(&ifname).exists());
        String::from_utf8(out.stderr).unwrap()
    };
    // A key that is not in the token: the message names it.
    let conf = pair.write_conf(
        &ifname,
        &pair.uri("wg-absent"),
        "hNwrkRsuKu+T7x7HxIxlGa9hsIKLgRJwKp5u8zYBGGY=",
    );
    let err = fail(&conf);
    assert!(err.contains("wg-absent"), "{err}");
    // A config mistake: file and line.
    std::fs::write(
        &conf,
        "[Interface]\nPrivateKey = pkcs11:object=x\nAddres = 10.0.0.1/24\n",
    )
    .unwrap();
    let err = fail(&conf);
    assert!(
        err.contains(&format!(
            "{ifname}.conf:3: unknown key `Addres` in [Interface]"
        )),
        "{err}"
    );
    // A failing PostUp hook: everything done so far is undone.
    let private = must("wg", &["genkey"]).trim().to_string();
    std::fs::write(
        &conf,
        format!("[Interface]\nPrivateKey = {private}\nAddress = 10.9.0.1/24\nPostUp = exit 4\n"),
    )
    .unwrap();
    let err = fail(&conf);
    assert!(err.contains("PostUp hook `exit 4` failed"), "{err}");
    // Usage errors.
    let out = Command::new(BIN).args(["up"]).output().unwrap();
    // wg-quick's exit status for a usage error.
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: wg-pkcs11"));
}

#[test]
fn genkey_and_pubkey_through_the_cli() {
    let pair = Pair::new();
    let public = pair.genkey("wg-cli");
    let out = pair
        .wg_pkcs11(None, &["pubkey", &pair.uri("wg-cli")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), public);
    // The same key through p11-kit: by module-name (a registered NAME.module), and with no
    // module at all (p11-kit-proxy.so, which offers every registered module).
    let name = unique("wgedge-test-");
    let registration = Path::new("/etc/pkcs11/modules").join(format!("{name}.module"));
    std::fs::create_dir_all("/etc/pkcs11/modules").unwrap();
    std::fs::write(
        &registration,
        format!("module: {}\n", pair.module.display()),
    )
    .unwrap();
    struct Unregister(PathBuf);
    impl Drop for Unregister {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _unregister = Unregister(registration);
    // The same module registered a second time from another file, as on a machine where the
    // package's copy is registered too: p11-kit-proxy then offers the same chip in two slots,
    // which is one token (same serial, same key), not an ambiguity.
    let copy = pair.dir.path().join("libpkcs11_se050-copy.so");
    std::fs::copy(&pair.module, &copy).unwrap();
    let second = Path::new("/etc/pkcs11/modules").join(format!("{name}-copy.module"));
    std::fs::write(&second, format!("module: {}\n", copy.display())).unwrap();
    let _unregister_copy = Unregister(second);
    for uri in [
        format!("pkcs11:token=SE050;object=wg-cli?module-name={name}"),
        "pkcs11:token=SE050;object=wg-cli".to_string(),
    ] {
        let out = pair.wg_pkcs11(None, &["pubkey", &uri]).output().unwrap();
        assert!(
            out.status.success(),
            "{uri}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap().trim(),
            public,
            "{uri}"
        );
    }
    let again = pair
        .wg_pkcs11(None, &["genkey", &pair.uri("wg-cli")])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has a private key"));
}

/// AllowedIPs = 0.0.0.0/0 as on a real client: the tunnel takes the default route through
/// fwmark policy routing, the daemon's own UDP packets (marked) still leave by the veth.
#[test]
fn default_route_through_the_tunnel() {
    let pair = Pair::new();
    let public = pair.genkey("wg-default");
    let server_if = unique("wgs");
    let server_public = pair.wireguard_go(&server_if, &public);
    must_in(
        &pair.b,
        &[
            "wg",
            "set",
            &server_if,
            "peer",
            &public,
            "allowed-ips",
            "0.0.0.0/0",
        ],
    );
    let ifname = unique("wgr");
    let conf = pair.dir.path().join(format!("{ifname}.conf"));
    let hooks = pair.dir.path().join("hooks.log");
    std::fs::write(
        &conf,
        format!(
            "[Interface]\nPrivateKey = {}\nAddress = 10.9.0.1/24\nPostUp = echo post-up >> {}\n\
             [Peer]\nPublicKey = {server_public}\nEndpoint = 192.168.77.2:51820\nAllowedIPs = 0.0.0.0/0\n",
            pair.uri("wg-default"),
            hooks.display()
        ),
    )
    .unwrap();
    let mut daemon = pair.up(&conf).spawn().unwrap();
    pair.wait_for_post_up();
    let rules = must("ip", &["-n", &pair.a, "rule"]);
    assert!(
        rules.contains("not from all fwmark 0xca6c lookup 51820"),
        "{rules}"
    );
    assert_eq!(
        must_in(&pair.a, &["wg", "show", &ifname, "fwmark"]).trim(),
        "0xca6c",
        "the device marks its packets"
    );
    // An address only the default route can reach: B's tunnel address in another subnet.
    must(
        "ip",
        &[
            "-n",
            &pair.b,
            "addr",
            "add",
            "172.31.9.9/32",
            "dev",
            &server_if,
        ],
    );
    let ping = run_in(&pair.a, &["ping", "-c", "2", "-W", "3", "172.31.9.9"]);
    assert!(
        ping.status.success(),
        "no ping over the default route: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    signal(&daemon, "INT");
    assert!(wait_exit(&mut daemon, Duration::from_secs(10)).success());
    let rules = must("ip", &["-n", &pair.a, "rule"]);
    assert!(
        !rules.contains("51820") && !rules.contains("suppress_prefixlength"),
        "{rules}"
    );
}

#[test]
fn a_non_utf8_argument_is_a_usage_error_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let out = Command::new(BIN)
        .args([
            std::ffi::OsStr::new("up"),
            std::ffi::OsStr::from_bytes(b"wg\xff.conf"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Whether one ping from A reaches B's tunnel address within a second.
fn ping_once(pair: &Pair) -> bool {
    run_in(&pair.a, &["ping", "-c", "1", "-W", "1", "10.9.0.2"])
        .status
        .success()
}

/// A ping that may need a retry while a peer learns a new endpoint.
fn ping_works(pair: &Pair) -> bool {
    (0..3).any(|_| ping_once(pair))
}

/// `wg show IF key` trimmed.
fn show(ns: &str, ifname: &str, key: &str) -> String {
    must_in(ns, &["wg", "show", ifname, key]).trim().to_string()
}

/// Whether a UDP socket in `ns` is bound to `port`.
fn udp_port_bound(ns: &str, port: u16) -> bool {
    must_in(ns, &["ss", "-Huan", &format!("sport = :{port}")])
        .lines()
        .any(|l| !l.trim().is_empty())
}

/// wg(8) habits on a running tunnel: `wg set IF fwmark` marks the outer packets from then on
/// (checked with a policy rule that black-holes B for unmarked packets), `wg set IF
/// listen-port` moves the socket without losing the session (a port in use is refused and the
/// old one keeps working; 0 picks a free port), and `wg show` reports each change.
#[test]
fn wg_set_listen_port_and_fwmark_on_a_running_tunnel() {
    let pair = Pair::new();
    let TokenTunnel {
        public,
        server_if,
        ifname,
        conf,
        ..
    } = pair.token_tunnel("wg-rebind", "wgp");
    let mut daemon = pair.up(&conf).spawn().unwrap();
    pair.wait_for_post_up();
    assert!(ping_works(&pair), "no tunnel to start with");
    assert_eq!(show(&pair.a, &ifname, "listen-port"), "51821");
    assert_eq!(show(&pair.a, &ifname, "fwmark"), "off");

    // Unmarked packets to B's underlay address go to a black hole; marked ones pass.
    must(
        "ip",
        &[
            "-n",
            &pair.a,
            "route",
            "add",
            "blackhole",
            "192.168.77.2/32",
            "table",
            "1234",
        ],
    );
    must(
        "ip",
        &[
            "-n", &pair.a, "rule", "add", "not", "fwmark", "0x1234", "table", "1234", "pref", "100",
        ],
    );
    assert!(!ping_once(&pair), "unmarked outer packets must not reach B");
    must_in(&pair.a, &["wg", "set", &ifname, "fwmark", "0x1234"]);
    assert_eq!(show(&pair.a, &ifname, "fwmark"), "0x1234");
    assert!(ping_works(&pair), "marked outer packets reach B");

    // A port another WireGuard interface holds: refused, the old port keeps working.
    let holder = unique("wgh");
    must_in(&pair.a, &["wireguard-go", &holder]);
    must_in(&pair.a, &["wg", "set", &holder, "listen-port", "51830"]);
    let refused = run_in(&pair.a, &["wg", "set", &ifname, "listen-port", "51830"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Address already in use"), "{stderr}");
    assert_eq!(show(&pair.a, &ifname, "listen-port"), "51821");
    assert!(ping_works(&pair), "the old port stopped working");

    // A free port: the session survives, B learns the new endpoint by roaming, the old port
    // is released, and the new socket carries the mark (the black hole is still there).
    must_in(&pair.a, &["wg", "set", &ifname, "listen-port", "51822"]);
    assert_eq!(show(&pair.a, &ifname, "listen-port"), "51822");
    assert!(udp_port_bound(&pair.a, 51822) && !udp_port_bound(&pair.a, 51821));
    let handshakes = show(&pair.a, &ifname, "latest-handshakes");
    assert!(ping_works(&pair), "no tunnel after moving to port 51822");
    assert_eq!(
        show(&pair.b, &server_if, "endpoints"),
        format!("{public}\t192.168.77.1:51822")
    );
    let from_b = run_in(&pair.b, &["ping", "-c", "1", "-W", "2", "10.9.0.1"]);
    assert!(from_b.status.success(), "B cannot reach A on its new port");
    assert_eq!(
        show(&pair.a, &ifname, "latest-handshakes"),
        handshakes,
        "the move cost a handshake: the session should have been kept"
    );

    // Port 0: a free port of the kernel's choice, reported by wg show.
    must_in(&pair.a, &["wg", "set", &ifname, "listen-port", "0"]);
    let random: u16 = show(&pair.a, &ifname, "listen-port").parse().unwrap();
    assert!(random != 0 && random != 51822, "port {random}");
    assert!(udp_port_bound(&pair.a, random) && !udp_port_bound(&pair.a, 51822));
    assert!(ping_works(&pair), "no tunnel after moving to port {random}");
    assert_eq!(
        show(&pair.b, &server_if, "endpoints"),
        format!("{public}\t192.168.77.1:{random}")
    );

    // fwmark 0 is off again: outer packets fall into the black hole.
    must_in(&pair.a, &["wg", "set", &ifname, "fwmark", "0"]);
    assert_eq!(show(&pair.a, &ifname, "fwmark"), "off");
    assert!(
        !ping_once(&pair),
        "outer packets still marked after fwmark 0"
    );

    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(10)).success());
}
