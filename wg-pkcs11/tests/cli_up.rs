//! `wg-pkcs11 up` as a person runs it: the real binary in a network namespace, its key in a
//! virtual SE050 behind the real libpkcs11_se050.so, wireguard-go as the other side in a second
//! namespace; ping through the tunnel, `wg show`/`wg set` over UAPI, and everything taken down
//! again on SIGTERM or when the UAPI socket is removed. Needs root (fails loudly without).

mod daemon_support;
mod device_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use daemon_support::{socket, wait_exit, Testbed, BIN};
use device_support::{must, unique, wait_for, Netns};

/// Send SIG`name` to a child daemon, as a user or systemd would.
fn signal(child: &Child, name: &str) {
    must("kill", &[&format!("-{name}"), &child.id().to_string()]);
}

/// Namespaces A and B joined by a veth pair, and a virtual chip with no PIN.
fn testbed() -> Testbed {
    Testbed::new(("wgea", "wgeb"), "")
}

/// What the tests below add to the [`Testbed`]: keys with no PIN, and wg-quick's hooks logged
/// to `hooks.log`.
impl Testbed {
    /// A key pair made in the chip as `label` (no PIN); its public key.
    fn genkey(&self, label: &str) -> String {
        let out = self
            .wg_pkcs11(None, &["genkey", &self.uri(label, "")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn write_conf(&self, ifname: &str, private_key: &str, server_public: &str) -> PathBuf {
        let hooks = self.dir.path().join("hooks.log");
        let hooks = hooks.display();
        let path = self.dir.path().join(format!("{ifname}.conf"));
        let server = &self.net.b_addr;
        std::fs::write(
            &path,
            format!(
                "[Interface]\nPrivateKey = {private_key}\nListenPort = 51821\nAddress = 10.9.0.1/24, fd09::1/64\n\
                 PreUp = echo pre-up %i >> {hooks}\nPostUp = echo post-up %i >> {hooks}\n\
                 PreDown = echo pre-down %i >> {hooks}\nPostDown = echo post-down %i >> {hooks}\n\n\
                 [Peer]\nPublicKey = {server_public}\nEndpoint = {server}:51820\n\
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
            Some(&self.net.a),
            &["up", "--foreground", conf.to_str().unwrap()],
        )
    }

    /// PostUp runs last: once it has, addresses and routes are in place.
    fn wait_for_post_up(&self) {
        assert!(
            wait_for(10, || self.hooks().contains("post-up")),
            "timed out waiting for PostUp"
        );
    }

    /// A token key `label` in A, wireguard-go in B as its peer, and the configuration of an
    /// interface `<if_prefix>…` in A for that tunnel, not yet brought up.
    fn token_tunnel(&self, label: &str, if_prefix: &str) -> TokenTunnel {
        let public = self.genkey(label);
        let server_if = unique("wgs");
        let server_public = self.wireguard_go(&server_if, &public);
        let ifname = unique(if_prefix);
        let conf = self.write_conf(&ifname, &self.uri(label, ""), &server_public);
        TokenTunnel {
            public,
            server_if,
            server_public,
            ifname,
            conf,
        }
    }
}

/// What [`Testbed::token_tunnel`] set up.
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

#[test]
fn token_key_against_wireguard_go_then_sigterm_takes_everything_down() {
    let pair = testbed();
    let TokenTunnel {
        public,
        server_if,
        server_public,
        ifname,
        conf,
    } = pair.token_tunnel("wg-up", "wgc");
    let mut daemon = pair.up(&conf).stderr(Stdio::piped()).spawn().unwrap();
    pair.wait_for_post_up();
    // The check for an interface left behind below sees this one while it is up.
    assert!(pair.net.a.has_link(&ifname));

    let ping = pair.net.a.exec("ping", &["-c", "2", "-W", "3", "10.9.0.2"]);
    assert!(
        ping.status.success(),
        "no ping through the tunnel: {}{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr)
    );

    // The stock wg sees the handshake and the traffic; wg-pkcs11 show adds the public key.
    let dump = pair.net.a.must("wg", &["show", &ifname, "dump"]);
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
        .wg_pkcs11(Some(&pair.net.a), &["show", &ifname])
        .output()
        .unwrap();
    let show = String::from_utf8(show.stdout).unwrap();
    assert!(show.contains(&format!("public key: {public}")), "{show}");
    // The virtual SE050 is a software token: `show` says the key is not in hardware.
    assert!(show.contains("private key: NOT IN HARDWARE"), "{show}");
    let server = pair
        .net
        .b
        .must("wg", &["show", &server_if, "latest-handshakes"]);
    assert!(
        !server.contains("\t0"),
        "wireguard-go saw no handshake: {server}"
    );

    // Addresses and routes as configured; wg set private-key refused.
    let addr = pair.net.a.ip(&["addr", "show", "dev", &ifname]);
    assert!(
        addr.contains("10.9.0.1/24") && addr.contains("fd09::1/64"),
        "{addr}"
    );
    assert!(pair
        .net
        .a
        .ip(&["route"])
        .contains(&format!("10.99.0.0/16 dev {ifname}")));
    let key_file = pair.dir.path().join("b.key");
    let refused = pair.net.a.exec(
        "wg",
        &["set", &ifname, "private-key", key_file.to_str().unwrap()],
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
    assert!(!pair.net.a.has_link(&ifname), "interface left behind");
    assert!(!pair.net.a.ip(&["route"]).contains("10.99.0.0"));
}

#[test]
fn software_key_and_removing_the_socket_stops_the_daemon() {
    let pair = testbed();
    let private = must("wg", &["genkey"]).trim().to_string();
    let ifname = unique("wgd");
    let some_peer = "hNwrkRsuKu+T7x7HxIxlGa9hsIKLgRJwKp5u8zYBGGY=";
    let conf = pair.write_conf(&ifname, &private, some_peer);
    let mut daemon = pair.up(&conf).spawn().unwrap();
    assert!(
        wait_for(10, || socket(&ifname).exists()),
        "timed out waiting for the UAPI socket"
    );
    // wg set: add a peer with allowed IPs, then remove it.
    let other = "eORRaeHQ7+F8Q+VjKU/AGBXkVMMMHQIGD4+EQnRImX4=";
    pair.net.a.must(
        "wg",
        &[
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
    let dump = pair.net.a.must("wg", &["show", &ifname, "dump"]);
    assert!(
        dump.lines()
            .any(|l| l.starts_with(other) && l.contains("10.50.0.0/24") && l.ends_with("\t7")),
        "{dump}"
    );
    pair.net
        .a
        .must("wg", &["set", &ifname, "peer", other, "remove"]);
    assert!(!pair
        .net
        .a
        .must("wg", &["show", &ifname, "peers"])
        .contains(other));

    std::fs::remove_file(socket(&ifname)).unwrap();
    let status = wait_exit(&mut daemon, Duration::from_secs(10));
    assert!(status.success(), "exit status {status}");
    assert!(!pair.net.a.has_link(&ifname), "interface left behind");
    assert!(
        pair.hooks().ends_with(&format!("post-down {ifname}\n")),
        "{}",
        pair.hooks()
    );
}

#[test]
fn failures_are_reported_and_leave_nothing() {
    let pair = testbed();
    let ifname = unique("wgf");
    let fail = |conf: &Path| {
        let out = pair.up(conf).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(!pair.net.a.has_link(&ifname));
        assert!(!socket(&ifname).exists());
        String::from_utf8(out.stderr).unwrap()
    };
    // A key that is not in the token: the message names it.
    let conf = pair.write_conf(
        &ifname,
        &pair.uri("wg-absent", ""),
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
    let pair = testbed();
    let public = pair.genkey("wg-cli");
    let out = pair
        .wg_pkcs11(None, &["pubkey", &pair.uri("wg-cli", "")])
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
        .wg_pkcs11(None, &["genkey", &pair.uri("wg-cli", "")])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has a private key"));
}

/// AllowedIPs = 0.0.0.0/0 as on a real client: the tunnel takes the default route through
/// fwmark policy routing, the daemon's own UDP packets (marked) still leave by the veth.
#[test]
fn default_route_through_the_tunnel() {
    let pair = testbed();
    let public = pair.genkey("wg-default");
    let server_if = unique("wgs");
    let server_public = pair.wireguard_go(&server_if, &public);
    pair.net.b.must(
        "wg",
        &[
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
             [Peer]\nPublicKey = {server_public}\nEndpoint = {}:51820\nAllowedIPs = 0.0.0.0/0\n",
            pair.uri("wg-default", ""),
            hooks.display(),
            pair.net.b_addr
        ),
    )
    .unwrap();
    let mut daemon = pair.up(&conf).spawn().unwrap();
    pair.wait_for_post_up();
    let rules = pair.net.a.ip(&["rule"]);
    assert!(
        rules.contains("not from all fwmark 0xca6c lookup 51820"),
        "{rules}"
    );
    assert_eq!(
        pair.net.a.must("wg", &["show", &ifname, "fwmark"]).trim(),
        "0xca6c",
        "the device marks its packets"
    );
    // An address only the default route can reach: B's tunnel address in another subnet.
    pair.net
        .b
        .ip(&["addr", "add", "172.31.9.9/32", "dev", &server_if]);
    let ping = pair
        .net
        .a
        .exec("ping", &["-c", "2", "-W", "3", "172.31.9.9"]);
    assert!(
        ping.status.success(),
        "no ping over the default route: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    signal(&daemon, "INT");
    assert!(wait_exit(&mut daemon, Duration::from_secs(10)).success());
    let rules = pair.net.a.ip(&["rule"]);
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
fn ping_once(pair: &Testbed) -> bool {
    pair.net
        .a
        .exec("ping", &["-c", "1", "-W", "1", "10.9.0.2"])
        .status
        .success()
}

/// A ping that may need a retry while a peer learns a new endpoint.
fn ping_works(pair: &Testbed) -> bool {
    (0..3).any(|_| ping_once(pair))
}

/// `wg show IF key` trimmed.
fn show(ns: &Netns, ifname: &str, key: &str) -> String {
    ns.must("wg", &["show", ifname, key]).trim().to_string()
}

/// Whether a UDP socket in `ns` is bound to `port`.
fn udp_port_bound(ns: &Netns, port: u16) -> bool {
    ns.must("ss", &["-Huan", &format!("sport = :{port}")])
        .lines()
        .any(|l| !l.trim().is_empty())
}

/// wg(8) habits on a running tunnel: `wg set IF fwmark` marks the outer packets from then on
/// (checked with a policy rule that black-holes B for unmarked packets), `wg set IF
/// listen-port` moves the socket without losing the session (a port in use is refused and the
/// old one keeps working; 0 picks a free port), and `wg show` reports each change.
#[test]
fn wg_set_listen_port_and_fwmark_on_a_running_tunnel() {
    let pair = testbed();
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
    assert_eq!(show(&pair.net.a, &ifname, "listen-port"), "51821");
    assert_eq!(show(&pair.net.a, &ifname, "fwmark"), "off");

    // Unmarked packets to B's underlay address go to a black hole; marked ones pass.
    let underlay_b = format!("{}/32", pair.net.b_addr);
    pair.net
        .a
        .ip(&["route", "add", "blackhole", &underlay_b, "table", "1234"]);
    pair.net.a.ip(&[
        "rule", "add", "not", "fwmark", "0x1234", "table", "1234", "pref", "100",
    ]);
    assert!(!ping_once(&pair), "unmarked outer packets must not reach B");
    pair.net.a.must("wg", &["set", &ifname, "fwmark", "0x1234"]);
    assert_eq!(show(&pair.net.a, &ifname, "fwmark"), "0x1234");
    assert!(ping_works(&pair), "marked outer packets reach B");

    // A port another WireGuard interface holds: refused, the old port keeps working.
    let holder = unique("wgh");
    pair.net.a.must("wireguard-go", &[&holder]);
    pair.net
        .a
        .must("wg", &["set", &holder, "listen-port", "51830"]);
    let refused = pair
        .net
        .a
        .exec("wg", &["set", &ifname, "listen-port", "51830"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("Address already in use"), "{stderr}");
    assert_eq!(show(&pair.net.a, &ifname, "listen-port"), "51821");
    assert!(ping_works(&pair), "the old port stopped working");

    // A free port: the session survives, B learns the new endpoint by roaming, the old port
    // is released, and the new socket carries the mark (the black hole is still there).
    pair.net
        .a
        .must("wg", &["set", &ifname, "listen-port", "51822"]);
    assert_eq!(show(&pair.net.a, &ifname, "listen-port"), "51822");
    assert!(udp_port_bound(&pair.net.a, 51822) && !udp_port_bound(&pair.net.a, 51821));
    let handshakes = show(&pair.net.a, &ifname, "latest-handshakes");
    assert!(ping_works(&pair), "no tunnel after moving to port 51822");
    assert_eq!(
        show(&pair.net.b, &server_if, "endpoints"),
        format!("{public}\t{}:51822", pair.net.a_addr)
    );
    let from_b = pair.net.b.exec("ping", &["-c", "1", "-W", "2", "10.9.0.1"]);
    assert!(from_b.status.success(), "B cannot reach A on its new port");
    assert_eq!(
        show(&pair.net.a, &ifname, "latest-handshakes"),
        handshakes,
        "the move cost a handshake: the session should have been kept"
    );

    // Port 0: a free port of the kernel's choice, reported by wg show.
    pair.net.a.must("wg", &["set", &ifname, "listen-port", "0"]);
    let random: u16 = show(&pair.net.a, &ifname, "listen-port").parse().unwrap();
    assert!(random != 0 && random != 51822, "port {random}");
    assert!(udp_port_bound(&pair.net.a, random) && !udp_port_bound(&pair.net.a, 51822));
    assert!(ping_works(&pair), "no tunnel after moving to port {random}");
    assert_eq!(
        show(&pair.net.b, &server_if, "endpoints"),
        format!("{public}\t{}:{random}", pair.net.a_addr)
    );

    // fwmark 0 is off again: outer packets fall into the black hole.
    pair.net.a.must("wg", &["set", &ifname, "fwmark", "0"]);
    assert_eq!(show(&pair.net.a, &ifname, "fwmark"), "off");
    assert!(
        !ping_once(&pair),
        "outer packets still marked after fwmark 0"
    );

    signal(&daemon, "TERM");
    assert!(wait_exit(&mut daemon, Duration::from_secs(10)).success());
}
