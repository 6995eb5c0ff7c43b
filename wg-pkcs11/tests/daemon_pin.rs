//! The daemon and the token's user PIN, end to end: the real `wg-pkcs11` in a network namespace
//! this test creates (a real TUN), its key in a virtual SE050 whose PIN the chip enforces
//! (UserID objects, failure counter, lockout; provisioned with Debian's pkcs11-tool), and
//! wireguard-go as the peer in a second namespace.
//!
//! - The PIN from a `pin-source` file and from a systemd credential (`$CREDENTIALS_DIRECTORY`
//!   set here, as systemd sets it: the default credential `pin`, and `credential:NAME`); a
//!   missing credential is a clear error that costs no attempt.
//! - A wrong PIN: exit status 77 and an error that says it is the PIN, exactly one attempt used
//!   (the chip allows 3 here, so a second attempt would show as CKF_USER_PIN_FINAL_TRY); a second
//!   start uses none.
//! - At the final try or locked: no attempt at all, exit 77.
//! - Permission warnings for a PIN file and a config holding `pin-value`.
//! - The PIN appears in no log line, no error, no `show`/`show --json`, no UAPI `get`, no
//!   `strip`/`save` output.
//!
//! The chip's counter is read through the token flags (`pkcs11-tool -T`). Needs root.

mod daemon_support;
mod device_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daemon_support::{socket, wait_exit, write_mode, Testbed};
use device_support::{must, output_text as text, unique, Netns};

const SO_PIN: &str = "87654321";
const USER_PIN: &str = "24681357";
const WRONG_PIN: &str = "97531864";
/// What the daemon exits with when the PIN is the problem (key::login::PIN_EXIT_STATUS).
const PIN_EXIT: i32 = 77;

/// Two namespaces joined by a veth pair, a virtual SE050 with a user PIN (at most 3 wrong
/// attempts), provisioned with pkcs11-tool.
fn setup() -> Testbed {
    let setup = Testbed::new(("wgpa", "wgpb"), "pin_max_attempts = 3\n");
    setup.pkcs11_tool_ok(&["--init-token", "--label", "SE050", "--so-pin", SO_PIN]);
    setup.pkcs11_tool_ok(&[
        "--init-pin",
        "--login",
        "--so-pin",
        SO_PIN,
        "--pin",
        USER_PIN,
    ]);
    setup
}

/// What the tests below add to the [`Testbed`]: pkcs11-tool on its chip, keys made with the
/// user PIN, the daemon with a state directory of its own, and the tunnel to wireguard-go.
impl Testbed {
    fn pkcs11_tool(&self, args: &[&str]) -> std::process::Output {
        Command::new("pkcs11-tool")
            .arg("--module")
            .arg(&self.module)
            .args(args)
            .env("PKCS11_SE050_CONF", self.path("se050.toml"))
            .output()
            .unwrap()
    }

    fn pkcs11_tool_ok(&self, args: &[&str]) {
        let out = self.pkcs11_tool(args);
        assert!(out.status.success(), "pkcs11-tool {args:?}: {}", text(&out));
    }

    /// The token's flags as pkcs11-tool prints them: where the chip's PIN counter shows.
    fn token_flags(&self) -> String {
        let out = self.pkcs11_tool(&["-T"]);
        text(&out)
            .lines()
            .find(|l| l.contains("token flags"))
            .unwrap_or_else(|| panic!("no token flags in {}", text(&out)))
            .to_string()
    }

    /// A wrong PIN entered by hand (one attempt of the chip's).
    fn wrong_login_by_hand(&self) {
        let out = self.pkcs11_tool(&["--login", "--pin", WRONG_PIN, "--test"]);
        assert!(!out.status.success());
        // The attempt that reaches the maximum is answered "blocked" (6983): CKR_PIN_LOCKED.
        let said = text(&out);
        assert!(
            said.contains("CKR_PIN_INCORRECT") || said.contains("CKR_PIN_LOCKED"),
            "{said}"
        );
    }

    /// `wg-pkcs11 ARGS` (in namespace `ns`) with the test's chip and state directory, logging
    /// at level info, and no systemd credentials unless the test gives them.
    fn wg_pkcs11_isolated(&self, ns: Option<&Netns>, args: &[&str]) -> Command {
        let mut command = self.wg_pkcs11(ns, args);
        command
            .env("WG_PKCS11_STATE_DIR", self.path("wg-state"))
            .env("RUST_LOG", "info")
            .env_remove("CREDENTIALS_DIRECTORY");
        command
    }

    /// A key pair made in the chip with the user PIN (so it carries the chip's policy: only a
    /// session authenticated with that PIN may use it). Returns its public key.
    fn genkey(&self, label: &str) -> String {
        let pin_file = self.path("genkey.pin");
        write_mode(&pin_file, &format!("{USER_PIN}\n"), 0o600);
        let uri = self.uri(label, &format!("&pin-source={}", pin_file.display()));
        let out = self
            .wg_pkcs11_isolated(None, &["genkey", &uri])
            .output()
            .unwrap();
        assert!(out.status.success(), "genkey: {}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// wireguard-go in B (10.9.0.2, port 51820) with `peer_public` as its peer; its public key.
    fn wireguard_go_peer(&self, peer_public: &str) -> String {
        self.wireguard_go_named(peer_public).1
    }

    /// [`Testbed::wireguard_go_peer`], also returning wireguard-go's interface name.
    fn wireguard_go_named(&self, peer_public: &str) -> (String, String) {
        let ifname = unique("wgs");
        let public = self.wireguard_go(&ifname, peer_public);
        (ifname, public)
    }

    /// A key `label` made with the user PIN, wireguard-go in B as its peer, `pin` in the file
    /// `<label>.pin` (mode `pin_mode`), and a config (mode 0600) for an interface
    /// `<if_prefix>…` in A whose key reads its PIN from that file.
    fn pin_file_tunnel(
        &self,
        label: &str,
        pin: &str,
        pin_mode: u32,
        if_prefix: &str,
    ) -> PinFileTunnel {
        let public = self.genkey(label);
        let (server_if, server) = self.wireguard_go_named(&public);
        let pin_file = self.path(&format!("{label}.pin"));
        write_mode(&pin_file, &format!("{pin}\n"), pin_mode);
        let ifname = unique(if_prefix);
        let uri = self.uri(label, &format!("&pin-source={}", pin_file.display()));
        let conf = self.conf(&ifname, &uri, &server, 0o600);
        PinFileTunnel {
            public,
            server_if,
            pin_file,
            ifname,
            conf,
        }
    }

    /// `wg-pkcs11 show`, `show --json`, `strip` and `save` in A: each works and shows no PIN.
    fn assert_no_pin_in_the_cli(&self, ifname: &str, conf: &Path) {
        for args in [
            vec!["show", ifname],
            vec!["show", "--json", ifname],
            vec!["strip", conf.to_str().unwrap()],
            vec!["save", conf.to_str().unwrap()],
        ] {
            let out = self
                .wg_pkcs11_isolated(Some(&self.net.a), &args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {}", text(&out));
            assert_no_pin(&format!("wg-pkcs11 {args:?}"), &text(&out));
        }
    }

    /// A config for interface `ifname` with `private_key`, mode `mode`.
    fn conf(&self, ifname: &str, private_key: &str, server_public: &str, mode: u32) -> PathBuf {
        let path = self.path(&format!("{ifname}.conf"));
        let server = &self.net.b_addr;
        write_mode(
            &path,
            &format!(
                "[Interface]\nPrivateKey = {private_key}\nListenPort = 51821\nAddress = 10.9.0.1/24\n\n\
                 [Peer]\nPublicKey = {server_public}\nEndpoint = {server}:51820\n\
                 AllowedIPs = 10.9.0.2/32\n"
            ),
            mode,
        );
        path
    }

    /// `up --foreground CONF` in A, its stderr in a file.
    fn start(&self, conf: &Path, credentials: Option<&Path>) -> (Child, PathBuf) {
        let log = self.path(&format!("daemon-{}.log", unique("")));
        let mut command = self.wg_pkcs11_isolated(
            Some(&self.net.a),
            &["up", "--foreground", conf.to_str().unwrap()],
        );
        if let Some(dir) = credentials {
            command.env("CREDENTIALS_DIRECTORY", dir);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        (child, log)
    }

    /// `up --foreground CONF` in A that must fail: its exit code and stderr.
    fn start_failing(&self, args: &[&str], credentials: Option<&Path>) -> (i32, String) {
        let mut command = self.wg_pkcs11_isolated(Some(&self.net.a), args);
        if let Some(dir) = credentials {
            command.env("CREDENTIALS_DIRECTORY", dir);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(30));
        let out = child.wait_with_output().unwrap();
        let code = status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {status}"));
        (code, text(&out))
    }

    /// Ping through the tunnel, then SIGTERM: exit 0. Returns the daemon's log.
    fn ping_and_stop(&self, ifname: &str, mut daemon: Child, log: &Path) -> String {
        wait_up(&mut daemon, log, ifname_of(&socket(ifname)));
        let ping = self.net.a.exec("ping", &["-c", "2", "-W", "3", "10.9.0.2"]);
        assert!(
            ping.status.success(),
            "no ping through the tunnel: {}\n{}",
            text(&ping),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        must("kill", &["-TERM", &daemon.id().to_string()]);
        let status = wait_exit(&mut daemon, Duration::from_secs(15));
        let log = std::fs::read_to_string(log).unwrap();
        assert!(status.success(), "exit {status}: {log}");
        log
    }
}

/// What [`Testbed::pin_file_tunnel`] set up.
struct PinFileTunnel {
    /// The key's public key, from the token.
    public: String,
    /// wireguard-go's interface in B.
    server_if: String,
    /// The key's pin-source.
    pin_file: PathBuf,
    /// A's interface, named in `conf`.
    ifname: String,
    conf: PathBuf,
}

fn wait_for(
    what: &str,
    timeout: Duration,
    daemon: &mut Child,
    log: &Path,
    mut done: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while !done() {
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!(
                "the daemon exited ({status}) before {what}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The interface is up once the daemon logged so (after its addresses and routes).
fn wait_up(daemon: &mut Child, log: &Path, ifname: &str) {
    let marker = format!("{ifname}: up (UAPI");
    wait_for(
        "the interface to be up",
        Duration::from_secs(20),
        daemon,
        log,
        || {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains(&marker)
        },
    );
}

fn ifname_of(socket: &Path) -> &str {
    socket.file_stem().unwrap().to_str().unwrap()
}

/// What the daemon answers a UAPI `get` (what `wg show` reads, with the daemon's own keys).
fn uapi_get(socket: &Path) -> String {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"get=1\n\n").unwrap();
    let mut answer = String::new();
    for line in std::io::BufReader::new(stream).lines() {
        let line = line.unwrap();
        answer.push_str(&line);
        answer.push('\n');
        if line.starts_with("errno=") {
            break;
        }
    }
    assert!(answer.contains("errno=0"), "{answer}");
    answer
}

fn assert_no_pin(what: &str, output: &str) {
    for pin in [USER_PIN, WRONG_PIN] {
        assert!(!output.contains(pin), "{what} shows a PIN:\n{output}");
    }
}

/// The flags of a counter that saw no wrong PIN since the last success.
fn clean(flags: &str) -> bool {
    flags.contains("login required")
        && !flags.contains("count low")
        && !flags.contains("final")
        && !flags.contains("locked")
}

#[test]
fn pin_source_file_runs_the_tunnel_and_the_pin_shows_nowhere() {
    let setup = setup();
    // A PIN file others may read: used, with a warning.
    let PinFileTunnel {
        pin_file,
        ifname,
        conf,
        ..
    } = setup.pin_file_tunnel("wg-file", USER_PIN, 0o644, "wgpf");
    let (mut daemon, log) = setup.start(&conf, None);
    let socket = socket(&ifname);
    wait_up(&mut daemon, &log, ifname_of(&socket));
    // Everything that shows the key or the interface: no PIN in any of it.
    let ping = setup
        .net
        .a
        .exec("ping", &["-c", "2", "-W", "3", "10.9.0.2"]);
    assert!(ping.status.success(), "{}", text(&ping));
    setup.assert_no_pin_in_the_cli(&ifname, &conf);
    let show = setup
        .wg_pkcs11_isolated(Some(&setup.net.a), &["show", &ifname])
        .output()
        .unwrap();
    let show = text(&show);
    assert!(
        show.contains(&format!(
            "logged in with the PIN from pin-source {}",
            pin_file.display()
        )),
        "{show}"
    );
    // The UAPI get the stock tool reads, with the daemon's own keys.
    let get = uapi_get(&socket);
    assert!(get.contains("wg_pkcs11_pin="), "{get}");
    assert_no_pin("UAPI get", &get);
    assert_no_pin(
        "wg show",
        &setup.net.a.must("wg", &["show", &ifname, "dump"]),
    );
    let log = setup.ping_and_stop(&ifname, daemon, &log);
    assert!(
        log.contains("is accessible by group or others (mode 644)"),
        "no warning about the PIN file:\n{log}"
    );
    assert!(log.contains("logged in to token `SE050`"), "{log}");
    assert_no_pin("the daemon's log", &log);
    assert!(clean(&setup.token_flags()), "{}", setup.token_flags());

    // The same PIN file made private: no warning.
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (daemon, log) = setup.start(&conf, None);
    let log = setup.ping_and_stop(&ifname, daemon, &log);
    assert!(!log.contains("accessible by group or others"), "{log}");
}

#[test]
fn pin_value_in_a_config_others_may_read_is_warned_about_and_never_shown() {
    let setup = setup();
    let public = setup.genkey("wg-value");
    let server = setup.wireguard_go_peer(&public);
    let ifname = unique("wgpv");
    let uri = setup.uri("wg-value", &format!("&pin-value={USER_PIN}"));
    let conf = setup.conf(&ifname, &uri, &server, 0o644);
    let (daemon, log) = setup.start(&conf, None);
    // strip prints no pkcs11: PrivateKey at all; show, show --json and UAPI get no pin-value.
    let socket = socket(&ifname);
    let mut daemon = daemon;
    wait_up(&mut daemon, &log, ifname_of(&socket));
    setup.assert_no_pin_in_the_cli(&ifname, &conf);
    let get = uapi_get(&socket);
    assert_no_pin("UAPI get", &get);
    // save kept the PrivateKey line as it was: the config still works.
    assert!(std::fs::read_to_string(&conf).unwrap().contains(&uri));
    let log = setup.ping_and_stop(&ifname, daemon, &log);
    assert!(
        log.contains("holds the token's PIN (pin-value in the key's URI) and is accessible by group or others (mode 644)"),
        "no warning about the config:\n{log}"
    );
    assert_no_pin("the daemon's log", &log);

    // An error that echoes the URI (one that does not parse) shows no pin-value either.
    let bad = format!("pkcs11:object=x;colour=red?pin-value={USER_PIN}");
    let out = setup
        .wg_pkcs11_isolated(None, &["pubkey", &bad])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("colour"), "{}", text(&out));
    assert_no_pin("a URI error", &text(&out));
}

#[test]
fn systemd_credentials_default_and_named_and_a_missing_one_costs_no_attempt() {
    let setup = setup();
    let public = setup.genkey("wg-cred");
    let server = setup.wireguard_go_peer(&public);
    let credentials = setup.path("credentials");
    std::fs::create_dir(&credentials).unwrap();
    // As systemd's LoadCredential= leaves them: read-only, root's.
    write_mode(&credentials.join("pin"), &format!("{USER_PIN}\n"), 0o400);
    write_mode(&credentials.join("wgpin"), &format!("{USER_PIN}\n"), 0o400);
    let ifname = unique("wgpc");

    // The URI names no PIN: the credential `pin`.
    let conf = setup.conf(&ifname, &setup.uri("wg-cred", ""), &server, 0o600);
    let (daemon, log) = setup.start(&conf, Some(&credentials));
    let log = setup.ping_and_stop(&ifname, daemon, &log);
    assert!(log.contains("using the systemd credential `pin`"), "{log}");
    assert!(
        log.contains("with the PIN from systemd credential `pin`"),
        "{log}"
    );
    assert_no_pin("the daemon's log", &log);

    // pin-source=credential:NAME.
    let named = setup.uri("wg-cred", "&pin-source=credential:wgpin");
    let conf = setup.conf(&ifname, &named, &server, 0o600);
    let (daemon, log) = setup.start(&conf, Some(&credentials));
    let log = setup.ping_and_stop(&ifname, daemon, &log);
    assert!(
        log.contains("with the PIN from systemd credential `wgpin`"),
        "{log}"
    );

    // No $CREDENTIALS_DIRECTORY, or none of that name: a clear error, exit 77, no attempt.
    let args = ["up", "--foreground", conf.to_str().unwrap()];
    let (code, out) = setup.start_failing(&args, None);
    assert_eq!(code, PIN_EXIT, "{out}");
    assert!(out.contains("$CREDENTIALS_DIRECTORY is not set"), "{out}");
    let elsewhere = setup.path("other-credentials");
    std::fs::create_dir(&elsewhere).unwrap();
    let (code, out) = setup.start_failing(&args, Some(&elsewhere));
    assert_eq!(code, PIN_EXIT, "{out}");
    assert!(out.contains("no credential `wgpin`"), "{out}");
    // And the token requires a PIN that a URI without one, outside systemd, does not give.
    let conf = setup.conf(&ifname, &setup.uri("wg-cred", ""), &server, 0o600);
    let (code, out) = setup.start_failing(&["up", "--foreground", conf.to_str().unwrap()], None);
    assert_eq!(code, PIN_EXIT, "{out}");
    assert!(
        out.contains("requires a login (CKF_LOGIN_REQUIRED)"),
        "{out}"
    );
    assert!(clean(&setup.token_flags()), "{}", setup.token_flags());
}

#[test]
fn a_wrong_pin_uses_one_attempt_and_a_second_start_none() {
    let setup = setup();
    let PinFileTunnel {
        pin_file,
        ifname,
        conf,
        ..
    } = setup.pin_file_tunnel("wg-wrong", WRONG_PIN, 0o600, "wgpw");
    assert!(clean(&setup.token_flags()), "{}", setup.token_flags());

    let (code, out) = setup.start_failing(&["up", "--foreground", conf.to_str().unwrap()], None);
    assert_eq!(code, PIN_EXIT, "{out}");
    assert!(
        out.contains("wg-pkcs11: PIN: token `SE050`")
            && out.contains("CKR_PIN_INCORRECT")
            && out.contains("one attempt used")
            && out.contains(&format!("pin-source {}", pin_file.display())),
        "{out}"
    );
    assert_no_pin("the error", &out);
    // Exactly one attempt: with 3 allowed, a second one would show as the final try.
    let flags = setup.token_flags();
    assert!(
        flags.contains("count low") && !flags.contains("final") && !flags.contains("locked"),
        "{flags}"
    );

    // Started again (as systemd would, or a reboot; detached this time): no attempt.
    let (code, out) = setup.start_failing(&["up", conf.to_str().unwrap()], None);
    assert_eq!(code, PIN_EXIT, "{out}");
    assert!(
        out.contains("already refused the PIN") && out.contains("no attempt made"),
        "{out}"
    );
    assert_eq!(
        setup.token_flags(),
        flags,
        "the second start used an attempt"
    );
    // Nothing under the state directory holds the PIN.
    for entry in std::fs::read_dir(setup.path("wg-state")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes
            .windows(WRONG_PIN.len())
            .any(|w| w == WRONG_PIN.as_bytes()));
    }

    // The right PIN in the file: up, and the chip's counter is clean again.
    write_mode(&pin_file, &format!("{USER_PIN}\n"), 0o600);
    let (daemon, log) = setup.start(&conf, None);
    setup.ping_and_stop(&ifname, daemon, &log);
    assert!(clean(&setup.token_flags()), "{}", setup.token_flags());
}

#[test]
fn at_the_final_try_or_locked_the_daemon_makes_no_attempt() {
    let setup = setup();
    let PinFileTunnel { ifname, conf, .. } =
        setup.pin_file_tunnel("wg-lock", USER_PIN, 0o600, "wgpl");
    let args = ["up", "--foreground", conf.to_str().unwrap()];

    // Two wrong PINs by hand: one attempt left. Even the right PIN is not sent.
    setup.wrong_login_by_hand();
    setup.wrong_login_by_hand();
    let flags = setup.token_flags();
    assert!(flags.contains("final user PIN try"), "{flags}");
    let (code, out) = setup.start_failing(&args, None);
    assert_eq!(code, PIN_EXIT, "{out}");
    assert!(
        out.contains("ONE PIN attempt left") && out.contains("no attempt made"),
        "{out}"
    );
    assert_eq!(
        setup.token_flags(),
        flags,
        "the daemon spent the last attempt"
    );

    // A third wrong PIN by hand locks it: a clear error, still no attempt.
    setup.wrong_login_by_hand();
    let flags = setup.token_flags();
    assert!(flags.contains("user PIN locked"), "{flags}");
    let (code, out) = setup.start_failing(&args, None);
    assert_eq!(code, PIN_EXIT, "{out}");
    assert!(
        out.contains("is LOCKED") && out.contains("no attempt made"),
        "{out}"
    );
    assert_no_pin("the error", &out);

    // The SO unlocks it (C_InitPIN resets the chip's counter): the daemon runs again.
    setup.pkcs11_tool_ok(&[
        "--init-pin",
        "--login",
        "--so-pin",
        SO_PIN,
        "--pin",
        USER_PIN,
    ]);
    let (daemon, log) = setup.start(&conf, None);
    setup.ping_and_stop(&ifname, daemon, &log);
}

/// The unit must never restart a daemon that stopped because of its PIN.
#[test]
fn the_shipped_unit_does_not_restart_on_the_pin_status() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/wg-pkcs11@.service");
    let unit = std::fs::read_to_string(unit).unwrap();
    assert!(
        unit.lines()
            .any(|l| l.trim() == format!("RestartPreventExitStatus={PIN_EXIT}")),
        "{unit}"
    );
    assert!(unit.lines().any(|l| l.trim() == "StateDirectory=wg-pkcs11"));
}

/// A chip reset (a power cycle announced in the virtual chip's `STATE.power`, seen by every
/// process using the chip) while the daemon runs: it logs in again by itself and the tunnel
/// handshakes again. After the SO changed the PIN, the next reset's login is refused: the daemon
/// stops with exit status 77, having used one attempt.
#[test]
fn after_a_chip_reset_the_daemon_logs_in_again_or_stops_when_refused() {
    let setup = setup();
    let PinFileTunnel {
        public,
        server_if,
        ifname,
        conf,
        ..
    } = setup.pin_file_tunnel("wg-reset", USER_PIN, 0o600, "wgpr");
    let (mut daemon, log) = setup.start(&conf, None);
    let socket = socket(&ifname);
    wait_up(&mut daemon, &log, ifname_of(&socket));
    let state = setup.path("state");
    let power_cycle = || {
        let power = setup.path("state.power");
        let count: u64 = std::fs::read_to_string(&power)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let temporary = setup.path("state.power.tmp");
        std::fs::write(&temporary, format!("{}\n", count + 1)).unwrap();
        std::fs::rename(&temporary, &power).unwrap();
        assert!(state.exists());
    };
    // A new handshake from the server's side: wireguard-go forgets the peer and meets it again.
    let rehandshake = || {
        let b = &setup.net.b;
        b.must("wg", &["set", &server_if, "peer", &public, "remove"]);
        let endpoint = format!("{}:51821", setup.net.a_addr);
        b.must(
            "wg",
            &[
                "set",
                &server_if,
                "peer",
                &public,
                "allowed-ips",
                "10.9.0.1/32",
                "endpoint",
                &endpoint,
            ],
        );
        b.exec("ping", &["-c", "3", "-W", "3", "10.9.0.1"])
    };
    power_cycle();
    let ping = rehandshake();
    let so_far = std::fs::read_to_string(&log).unwrap();
    assert!(ping.status.success(), "{}\n{so_far}", text(&ping));
    assert!(so_far.contains("lost the login"), "{so_far}");
    assert!(clean(&setup.token_flags()), "{}", setup.token_flags());

    // The SO sets another PIN; the next reset's login is refused once, and the daemon stops.
    setup.pkcs11_tool_ok(&[
        "--init-pin",
        "--login",
        "--so-pin",
        SO_PIN,
        "--pin",
        WRONG_PIN,
    ]);
    power_cycle();
    let _ = rehandshake();
    let status = wait_exit(&mut daemon, Duration::from_secs(20));
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(PIN_EXIT), "{log}");
    assert!(
        log.contains("CKR_PIN_INCORRECT") && log.contains("no more handshakes"),
        "{log}"
    );
    assert_no_pin("the daemon's log", &log);
    let flags = setup.token_flags();
    assert!(
        flags.contains("count low") && !flags.contains("final") && !flags.contains("locked"),
        "{flags}"
    );
}
