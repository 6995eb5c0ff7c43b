//! wg-pkcs11 used the way WireGuard admins use WireGuard: stock `wg-quick` with
//! `WG_QUICK_USERSPACE_IMPLEMENTATION=wg-pkcs11` (up, strip + `wg syncconf`, save, down, up again
//! from the saved file), `wg-pkcs11 up NAME` / `down NAME`, the daemon's end when its TUN is
//! deleted, SIGHUP reloads that keep sessions, and sd_notify readiness. Real tools in network
//! namespaces: wg-quick, wg, wireguard-go as the peer, the virtual SE050 behind the real module.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e_tests::topology::{A_TUNNEL, B_TUNNEL, LISTEN_PORT_A, LISTEN_PORT_B};
use e2e_tests::wireguard::{uapi_socket, wg_show_dump};
use e2e_tests::{
    ping, poll_until, unique_interface_name, wait_until, wg_genkey, wg_pkcs11_binary,
    wg_pkcs11_genkey, NamespacePair, Netns, PeerSpec, UserspacePeer, UserspaceWireGuard,
    VirtualToken,
};

/// The protocol deadline for a daemon whose TUN was deleted (the "within a second").
const EXIT_AFTER_TUN_DELETED: Duration = Duration::from_secs(1);

/// A token key in namespace a, wireguard-go in b as its peer, and a wg-quick config for a in
/// its own config directory (`WG_PKCS11_CONFIG_DIR`), not yet brought up.
struct Setup {
    pair: NamespacePair,
    token: VirtualToken,
    /// Our public key (from the token).
    public: String,
    /// wireguard-go's public key.
    peer_public: String,
    peer: UserspacePeer,
    ifname: String,
    config_dir: PathBuf,
    conf: PathBuf,
}

impl Setup {
    fn new(tag: &str, key_in_side_file: bool) -> Setup {
        let pair = NamespacePair::new(tag);
        let token = VirtualToken::new(30);
        let label = format!("{tag}-key");
        let public = wg_pkcs11_genkey(&token, &label);
        let peer_if = unique_interface_name("wqb");
        let peer = UserspacePeer::start(
            UserspaceWireGuard::WireguardGo,
            &pair.b,
            &peer_if,
            pair.dir(),
        );
        let (peer_private, peer_public) = wg_genkey();
        peer.configure(
            &peer_private,
            LISTEN_PORT_B,
            &[PeerSpec::new(&public, &[&format!("{A_TUNNEL}/32")])],
        );
        peer.address_and_up(&[&format!("{B_TUNNEL}/24")]);
        let ifname = unique_interface_name("wqa");
        let config_dir = pair.dir().join("wireguard");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::set_permissions(&config_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let conf = config_dir.join(format!("{ifname}.conf"));
        let uri = token.key_uri(&label);
        let key_line = if key_in_side_file {
            let key_file = config_dir.join(format!("{ifname}.pkcs11"));
            std::fs::write(&key_file, format!("{uri}\n")).unwrap();
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
            String::new()
        } else {
            format!("PrivateKey = {uri}\n")
        };
        write_private(
            &conf,
            &format!(
                "[Interface]\n{key_line}Address = {A_TUNNEL}/24\nListenPort = {LISTEN_PORT_A}\n\n\
                 [Peer]\nPublicKey = {peer_public}\nEndpoint = {}\nAllowedIPs = {B_TUNNEL}/32\n",
                pair.b_endpoint()
            ),
        );
        Setup {
            pair,
            token,
            public,
            peer_public,
            peer,
            ifname,
            config_dir,
            conf,
        }
    }

    fn a(&self) -> &Netns {
        &self.pair.a
    }

    /// A command in namespace a with the token and config directory in its environment.
    fn command_in_a(&self, program: &str) -> Command {
        let mut command = self.a().command("env");
        let bin_dir = wg_pkcs11_binary().parent().unwrap().to_path_buf();
        command
            .arg(format!(
                "PATH={}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ))
            .arg("WG_QUICK_USERSPACE_IMPLEMENTATION=wg-pkcs11")
            .arg(format!(
                "WG_PKCS11_CONFIG_DIR={}",
                self.config_dir.display()
            ))
            .arg(program);
        self.token.apply(&mut command);
        command
    }

    /// `wg-quick ACTION CONF` in namespace a (wg-quick works in the current namespace).
    fn wg_quick(&self, action: &str) -> Output {
        self.command_in_a("wg-quick")
            .args([action, self.conf.to_str().unwrap()])
            .output()
            .unwrap()
    }

    fn wg_quick_ok(&self, action: &str) -> String {
        let out = self.wg_quick(action);
        assert!(
            out.status.success(),
            "wg-quick {action} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The peer's view of us: the latest handshake (seconds since the epoch, 0 for none).
    fn peer_handshake(&self) -> u64 {
        self.peer
            .dump()
            .peer(&self.public)
            .map_or(0, |p| p.latest_handshake)
    }

    fn tunnel_works(&self) -> bool {
        poll_until(Duration::from_secs(10), || ping(self.a(), B_TUNNEL, 1))
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Pids of wg-pkcs11 daemons whose command line names `ifname` (detached daemons are not our
/// children, so they are found this way).
fn daemons_of(ifname: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_daemon = args.first().is_some_and(|a| a.ends_with("wg-pkcs11"))
            && args.iter().any(|a| a == "--foreground")
            && args
                .iter()
                .any(|a| a == ifname || a.ends_with(&format!("/{ifname}.conf")));
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if is_daemon && !zombie {
            pids.push(pid);
        }
    }
    pids
}

fn link_exists(ns: &Netns, ifname: &str) -> bool {
    ns.output(["ip", "link", "show", ifname]).status.success()
}

#[test]
fn stock_wg_quick_up_strip_syncconf_save_down_and_up_again() {
    let s = Setup::new("wq", true);
    let up = s.wg_quick("up");
    let stderr = String::from_utf8_lossy(&up.stderr);
    assert!(up.status.success(), "wg-quick up failed:\n{stderr}");
    assert!(
        stderr.contains(&format!("[#] wg-pkcs11 {}", s.ifname)),
        "wg-quick did not run the userspace implementation:\n{stderr}"
    );
    assert_eq!(daemons_of(&s.ifname).len(), 1, "one daemon runs on");
    assert!(
        s.tunnel_works(),
        "no ping through the tunnel wg-quick brought up"
    );
    let first_handshake = s.peer_handshake();
    assert_ne!(first_handshake, 0);

    // A key that is not the token's is refused, whatever path it takes.
    let other_key = s.pair.dir().join("other.key");
    write_private(&other_key, &format!("{}\n", wg_genkey().0));
    let refused = s.a().output([
        "wg",
        "set",
        &s.ifname,
        "private-key",
        other_key.to_str().unwrap(),
    ]);
    assert!(
        !refused.status.success(),
        "wg set private-key with another key was accepted"
    );

    // strip: what wg reads; syncconf (systemctl reload wg-quick@) adds a peer and keeps the
    // session of the one that stays.
    let (_, added_peer) = wg_genkey();
    let text = std::fs::read_to_string(&s.conf).unwrap();
    write_private(
        &s.conf,
        &format!("{text}\n[Peer]\nPublicKey = {added_peer}\nAllowedIPs = 10.77.0.0/24\n"),
    );
    let stripped = s.wg_quick_ok("strip");
    assert!(!stripped.contains("Address"), "{stripped}");
    assert!(stripped.contains(&added_peer), "{stripped}");
    // wg's handshake times have a resolution of one second: let one pass, so a new handshake
    // would show.
    std::thread::sleep(Duration::from_millis(1100));
    let ecdh_before = s.token.counters().ecdh;
    let sync = s.a().output([
        "bash",
        "-c",
        &format!(
            "wg syncconf {} <(env WG_PKCS11_CONFIG_DIR={} {} strip {})",
            s.ifname,
            s.config_dir.display(),
            "wg-quick",
            s.conf.display()
        ),
    ]);
    assert!(
        sync.status.success(),
        "wg syncconf <(wg-quick strip) failed: {}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let dump = wg_show_dump(s.a(), &s.ifname);
    assert!(
        dump.peer(&added_peer).is_some(),
        "syncconf did not add the peer"
    );
    assert!(ping(s.a(), B_TUNNEL, 1));
    assert_eq!(
        s.peer_handshake(),
        first_handshake,
        "syncconf broke the session: a new handshake was needed"
    );
    // The added peer's static-static DH is computed ahead (one chip operation per new peer);
    // a handshake with the kept peer would be another.
    assert!(
        s.token.counters().ecdh <= ecdh_before + 1,
        "syncconf cost a handshake"
    );

    // save: wg-quick rewrites the file from `wg showconf`; a peer added at run time is kept,
    // and so is the key, which was never in the file.
    let (_, runtime_peer) = wg_genkey();
    s.a().run([
        "wg",
        "set",
        &s.ifname,
        "peer",
        &runtime_peer,
        "allowed-ips",
        "10.78.0.0/24",
    ]);
    s.wg_quick_ok("save");
    let saved = std::fs::read_to_string(&s.conf).unwrap();
    assert!(saved.contains(&runtime_peer), "{saved}");
    let key_file = s.config_dir.join(format!("{}.pkcs11", s.ifname));
    assert!(
        std::fs::read_to_string(&key_file)
            .unwrap()
            .starts_with("pkcs11:"),
        "the key file was touched"
    );

    // down: wg-quick deletes the link; the daemon goes with it, promptly.
    let pids = daemons_of(&s.ifname);
    s.wg_quick_ok("down");
    let start = Instant::now();
    let gone = poll_until(Duration::from_secs(5), || daemons_of(&s.ifname).is_empty());
    let took = start.elapsed();
    assert!(gone, "the daemon {pids:?} outlived wg-quick down");
    assert!(
        took <= EXIT_AFTER_TUN_DELETED,
        "the daemon took {took:?} to exit after wg-quick down"
    );
    assert!(!uapi_socket(&s.ifname).exists());

    // up again from the saved file.
    s.wg_quick_ok("up");
    assert!(s.tunnel_works(), "the saved config did not come back up");
    let dump = wg_show_dump(s.a(), &s.ifname);
    assert!(dump.peer(&runtime_peer).is_some());
    s.wg_quick_ok("down");
    wait_until("the daemon exits", Duration::from_secs(5), || {
        daemons_of(&s.ifname).is_empty()
    });
}

#[test]
fn wg_pkcs11_up_and_down_by_name_in_etc_wireguard() {
    let s = Setup::new("wqn", false);
    // Names resolve in /etc/wireguard, as for wg-quick: move the config there (a unique name,
    // removed at the end).
    let etc_conf = Path::new("/etc/wireguard").join(format!("{}.conf", s.ifname));
    std::fs::create_dir_all("/etc/wireguard").unwrap();
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(etc_conf.clone());
    std::fs::copy(&s.conf, &etc_conf).unwrap();
    let by_name = |args: &[&str]| {
        let mut command = s.a().command(wg_pkcs11_binary());
        command.args(args);
        s.token.apply(&mut command);
        command.output().unwrap()
    };
    let up = by_name(&["up", &s.ifname]);
    assert!(
        up.status.success(),
        "wg-pkcs11 up {} failed: {}",
        s.ifname,
        String::from_utf8_lossy(&up.stderr)
    );
    // `up` returned: the interface is already there and configured (readiness, not a race).
    assert!(link_exists(s.a(), &s.ifname));
    let dump = wg_show_dump(s.a(), &s.ifname);
    assert!(dump.peer(&s.peer_public).is_some());
    assert_eq!(daemons_of(&s.ifname).len(), 1);
    assert!(s.tunnel_works());
    // A second up of a running interface fails, as wg-quick's does.
    let again = by_name(&["up", &s.ifname]);
    assert_eq!(again.status.code(), Some(1));

    // save by name: a peer added at run time goes into the file, the pkcs11: PrivateKey stays.
    let (_, runtime_peer) = wg_genkey();
    s.a().run([
        "wg",
        "set",
        &s.ifname,
        "peer",
        &runtime_peer,
        "allowed-ips",
        "10.79.0.0/24",
    ]);
    let save = by_name(&["save", &s.ifname]);
    assert!(
        save.status.success(),
        "{}",
        String::from_utf8_lossy(&save.stderr)
    );
    let saved = std::fs::read_to_string(&etc_conf).unwrap();
    assert!(
        saved.contains("PrivateKey = pkcs11:"),
        "save lost the key:\n{saved}"
    );
    assert!(saved.contains(&runtime_peer), "{saved}");
    assert!(
        saved.contains(&format!("Address = {A_TUNNEL}/24")),
        "{saved}"
    );
    // strip by name: for wg, without the URI and wg-quick's keys.
    let strip = by_name(&["strip", &s.ifname]);
    let stripped = String::from_utf8_lossy(&strip.stdout);
    assert!(strip.status.success());
    assert!(
        !stripped.contains("pkcs11:") && !stripped.contains("Address"),
        "{stripped}"
    );
    assert!(stripped.contains(&runtime_peer), "{stripped}");

    // SaveConfig = true: the daemon saves on its way down (what `wg set` added since is kept).
    let text = std::fs::read_to_string(&etc_conf).unwrap();
    std::fs::write(
        &etc_conf,
        text.replacen("[Interface]\n", "[Interface]\nSaveConfig = true\n", 1),
    )
    .unwrap();
    let (_, late_peer) = wg_genkey();
    s.a().run([
        "wg",
        "set",
        &s.ifname,
        "peer",
        &late_peer,
        "allowed-ips",
        "10.80.0.0/24",
    ]);
    let down = by_name(&["down", &s.ifname]);
    assert!(
        down.status.success(),
        "wg-pkcs11 down failed: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    // `down` returned: everything is gone already.
    assert!(!link_exists(s.a(), &s.ifname));
    assert!(!uapi_socket(&s.ifname).exists());
    assert!(daemons_of(&s.ifname).is_empty());
    let saved = std::fs::read_to_string(&etc_conf).unwrap();
    assert!(
        saved.contains(&late_peer),
        "SaveConfig did not save on down:\n{saved}"
    );
    assert!(saved.contains("PrivateKey = pkcs11:"), "{saved}");
    // Down again: not a WireGuard interface, exit 1 as wg-quick.
    let twice = by_name(&["down", &s.ifname]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("is not a WireGuard interface"));
}

#[test]
fn help_and_version_are_not_file_names() {
    for command in ["up", "down", "save", "strip"] {
        let out = Command::new(wg_pkcs11_binary())
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{command} --help: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(&format!("Usage: wg-pkcs11 {command}")),
            "{text}"
        );
    }
    let out = Command::new(wg_pkcs11_binary())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let version = String::from_utf8_lossy(&out.stdout);
    let number = version
        .trim()
        .strip_prefix("wg-pkcs11 ")
        .expect("`wg-pkcs11 VERSION`");
    assert!(number.split('.').count() == 3, "{version}");
    // Usage errors exit 1, as wg-quick's.
    let out = Command::new(wg_pkcs11_binary())
        .args(["up", "a", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// A datagram socket standing in for systemd's notify socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn new(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket { socket, path }
    }

    /// The next message, waiting up to `timeout`.
    fn next(&self, timeout: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

#[test]
fn sd_notify_ready_sighup_reload_keeps_sessions_and_a_deleted_tun_ends_the_daemon() {
    let s = Setup::new("wqr", false);
    let notify = NotifySocket::new(s.pair.dir());
    let mut command = s.a().command(wg_pkcs11_binary());
    command
        .args(["up", "--foreground", s.conf.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &notify.path);
    s.token.apply(&mut command);
    // stderr is a file; JOURNAL_STREAM names that very file, as systemd does for the journal.
    let log_path = s.pair.dir().join(format!("daemon-{}.log", s.ifname));
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = std::fs::metadata(&log_path).unwrap();
    use std::os::unix::fs::MetadataExt;
    command
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut daemon = command.spawn().unwrap();

    // READY=1 only once the interface is up: addresses in place, peers configured.
    let ready = notify.next(Duration::from_secs(20)).expect("no READY=1");
    assert!(ready.starts_with("READY=1"), "{ready}");
    assert!(link_exists(s.a(), &s.ifname));
    let address = s.a().run(["ip", "-brief", "address", "show", &s.ifname]);
    assert!(
        address.contains(A_TUNNEL),
        "READY before the address: {address}"
    );
    assert!(wg_show_dump(s.a(), &s.ifname)
        .peer(&s.peer_public)
        .is_some());

    assert!(s.tunnel_works());
    let handshake = s.peer_handshake();
    assert_ne!(handshake, 0);
    let ecdh = s.token.counters().ecdh;
    // A new handshake would show in wg's one-second handshake times.
    std::thread::sleep(Duration::from_millis(1100));

    // SIGHUP with a peer added and the existing one's allowed IPs widened.
    let (_, added_peer) = wg_genkey();
    write_private(
        &s.conf,
        &(std::fs::read_to_string(&s.conf).unwrap().replace(
            &format!("AllowedIPs = {B_TUNNEL}/32"),
            &format!("AllowedIPs = {B_TUNNEL}/32, 10.66.0.0/24"),
        ) + &format!("\n[Peer]\nPublicKey = {added_peer}\nAllowedIPs = 10.77.0.0/24\n")),
    );
    let hup = |daemon: &std::process::Child| {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(daemon.id() as i32, libc::SIGHUP) };
    };
    hup(&daemon);
    let reloading = notify
        .next(Duration::from_secs(10))
        .expect("no RELOADING=1");
    assert!(reloading.starts_with("RELOADING=1"), "{reloading}");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let ready = notify
        .next(Duration::from_secs(10))
        .expect("no READY=1 after reload");
    assert!(ready.starts_with("READY=1"), "{ready}");
    let dump = wg_show_dump(s.a(), &s.ifname);
    assert!(
        dump.peer(&added_peer).is_some(),
        "SIGHUP did not add the peer"
    );
    let kept = dump.peer(&s.peer_public).expect("the kept peer is gone");
    assert!(
        kept.allowed_ips.iter().any(|ip| ip == "10.66.0.0/24"),
        "{kept:?}"
    );
    assert!(ping(s.a(), B_TUNNEL, 1), "the tunnel stopped after SIGHUP");
    assert_eq!(s.peer_handshake(), handshake, "the reload cost the session");
    assert!(
        s.token.counters().ecdh <= ecdh + 1,
        "the reload cost a handshake"
    );
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "SIGHUP stopped the daemon"
    );

    // SIGHUP with the added peer gone again.
    write_private(
        &s.conf,
        &std::fs::read_to_string(&s.conf).unwrap().replace(
            &format!("\n[Peer]\nPublicKey = {added_peer}\nAllowedIPs = 10.77.0.0/24\n"),
            "",
        ),
    );
    hup(&daemon);
    notify
        .next(Duration::from_secs(10))
        .expect("no RELOADING=1");
    notify.next(Duration::from_secs(10)).expect("no READY=1");
    assert!(wg_show_dump(s.a(), &s.ifname).peer(&added_peer).is_none());

    // A config that no longer parses: nothing changes, the tunnel runs on.
    write_private(&s.conf, "[Interface]\nthis is not a config\n");
    hup(&daemon);
    notify
        .next(Duration::from_secs(10))
        .expect("no RELOADING=1");
    notify.next(Duration::from_secs(10)).expect("no READY=1");
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "a bad reload stopped the daemon"
    );
    assert!(wg_show_dump(s.a(), &s.ifname)
        .peer(&s.peer_public)
        .is_some());
    assert!(ping(s.a(), B_TUNNEL, 1));

    // The TUN deleted under the daemon (ip link del): it exits, cleanly and promptly.
    s.a().run(["ip", "link", "del", &s.ifname]);
    let deleted = Instant::now();
    let exited = poll_until(Duration::from_secs(5), || {
        daemon.try_wait().unwrap().is_some()
    });
    let took = deleted.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(exited, "the daemon outlived its TUN:\n{log}");
    assert!(
        took <= EXIT_AFTER_TUN_DELETED,
        "the daemon took {took:?} to exit after its TUN was deleted"
    );
    assert!(daemon.wait().unwrap().success());
    assert!(!uapi_socket(&s.ifname).exists());
    assert!(
        !log.contains("reading the TUN"),
        "the daemon spun on its dead TUN:\n{log}"
    );
    let stopping = notify.next(Duration::from_secs(1)).expect("no STOPPING=1");
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    // journald's form: a priority on every line, no timestamps of our own.
    for line in log.lines() {
        assert!(
            line.starts_with("<3>")
                || line.starts_with("<4>")
                || line.starts_with("<6>")
                || line.starts_with("<7>"),
            "not a journald line: {line:?}"
        );
    }
    assert!(log.contains("handshake completed"), "{log}");
    assert!(log.contains(&format!("peer {added_peer} added")), "{log}");
}
