//! `conf/wg-rotate-server`, as shipped, against a real `wg` interface (wireguard-go in a
//! namespace) with two devices as peers (issue 20, finding 9). It runs as the forced command of
//! one device's ssh key: the server's admin fixes the interface and the device's AllowedIPs, the
//! device says only its new public key (SSH_ORIGINAL_COMMAND). So a device cannot touch another
//! peer's entry, every argument is checked before anything changes, and the preshared key
//! reaches `wg set` without a file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use e2e_tests::wait::poll_until;
use e2e_tests::wireguard::*;
use e2e_tests::*;

const DEVICE_IPS: &str = "10.10.0.1/32";
const OTHER_IPS: &str = "10.10.0.3/32";

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/wg-rotate-server")
}

/// A wireguard-go server with two device peers: "ours" (with a preshared key, an endpoint and a
/// keepalive) and "other".
struct Server {
    ns: Netns,
    dir: tempfile::TempDir,
    wg: UserspacePeer,
    ours: String,
    ours_psk: String,
    other: String,
}

impl Server {
    fn new(tag: &str) -> Server {
        let ns = Netns::new(tag);
        let dir = tempfile::Builder::new()
            .prefix(&format!("e2e-{tag}-"))
            .tempdir()
            .unwrap();
        let wg = UserspacePeer::start(
            UserspaceWireGuard::WireguardGo,
            &ns,
            &unique_interface_name("rsv"),
            dir.path(),
        );
        let (private, _) = wg_genkey();
        let (_, ours) = wg_genkey();
        let (_, other) = wg_genkey();
        let (ours_psk, _) = wg_genkey();
        wg.configure(
            &private,
            51820,
            &[
                PeerSpec::new(&ours, &[DEVICE_IPS])
                    .endpoint("127.0.0.1:40001")
                    .persistent_keepalive(25),
                PeerSpec::new(&other, &[OTHER_IPS]).endpoint("127.0.0.1:40003"),
            ],
        );
        let psk_file = dir.path().join("ours.psk");
        std::fs::write(&psk_file, format!("{ours_psk}\n")).unwrap();
        std::fs::set_permissions(&psk_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        wg.set(&[
            "peer".into(),
            ours.clone(),
            "preshared-key".into(),
            psk_file.display().to_string(),
        ]);
        std::fs::remove_file(&psk_file).unwrap();
        Server {
            ns,
            dir,
            wg,
            ours,
            ours_psk,
            other,
        }
    }

    /// `wg show IF dump` without the counters (wireguard-go keeps trying to reach the keepalive
    /// peer): keys, preshared keys, endpoints, AllowedIPs, keepalives. What must not change when
    /// the script refuses.
    fn dump_text(&self) -> String {
        let dump = self.ns.run(["wg", "show", &self.wg.ifname, "dump"]);
        let mut lines: Vec<String> = dump
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                if f.len() == 8 {
                    [f[0], f[1], f[2], f[3], f[7]].join("\t")
                } else {
                    line.to_string()
                }
            })
            .collect();
        // wireguard-go lists its peers in no fixed order.
        lines.sort();
        lines.join("\n")
    }

    fn show(&self, what: &str) -> String {
        self.ns.run(["wg", "show", &self.wg.ifname, what])
    }

    /// The script in the server's namespace as sshd runs a forced command: `args` from the
    /// admin's authorized_keys line, `ssh_command` what the device asked for (None: not run by
    /// sshd). `path_first` is put before PATH; TMPDIR is `tmp`.
    fn run(
        &self,
        args: &[&str],
        ssh_command: Option<&str>,
        path_first: Option<&Path>,
        tmp: &Path,
    ) -> Output {
        let mut command = self.ns.command("sh");
        command.arg(script()).args(args);
        command.env_remove("SSH_ORIGINAL_COMMAND");
        if let Some(words) = ssh_command {
            command.env("SSH_ORIGINAL_COMMAND", words);
        }
        if let Some(dir) = path_first {
            let path = std::env::var("PATH").unwrap_or_default();
            command.env("PATH", format!("{}:{path}", dir.display()));
        }
        command.env("TMPDIR", tmp);
        // No authorization hook of this machine's /etc takes part.
        command.env(
            "WG_ROTATE_AUTHORIZE",
            self.dir.path().join("no-authorize-hook"),
        );
        command.output().expect("cannot run sh")
    }

    /// The device's forced command: interface and AllowedIPs fixed, the device's words given.
    fn forced(&self, device_ips: &str, ssh_command: &str) -> Output {
        let tmp = self.empty_tmp();
        self.run(
            &[&self.wg.ifname, device_ips, "2"],
            Some(ssh_command),
            None,
            &tmp,
        )
    }

    fn empty_tmp(&self) -> PathBuf {
        let tmp = self.dir.path().join(format!("tmp-{}", rand_suffix()));
        std::fs::create_dir(&tmp).unwrap();
        tmp
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The line of `wg show IF SUBCOMMAND` for `key`, without the key.
fn field(listing: &str, key: &str) -> Option<String> {
    listing.lines().find_map(|l| {
        let (k, v) = l.split_once('\t')?;
        (k == key).then(|| v.to_string())
    })
}

#[test]
fn a_device_replaces_only_its_own_key_and_never_names_the_old_one() {
    let s = Server::new("rsvown");
    let other_ips_before = field(&s.show("allowed-ips"), &s.other);
    let (_, attacker) = wg_genkey();

    // What the old sample hook allowed (a shell on the server, every argument the caller's): name
    // another device's key as the old one. The admin's line is not there: refused, nothing added.
    let tmp = s.empty_tmp();
    let out = s.run(&[&s.wg.ifname, &s.other, &attacker], None, None, &tmp);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        !s.show("peers").contains(&attacker),
        "the caller's key was added: {}",
        text(&out)
    );

    // Under its forced command, the device's words are one key and nothing else.
    for words in [
        format!("{} {attacker}", s.other),
        format!("{attacker} {}", s.other),
        format!("wg-rotate-server {} {} {attacker}", s.wg.ifname, s.other),
        s.other.clone(),
        s.ours.clone(),
    ] {
        let before = s.dump_text();
        let out = s.forced(DEVICE_IPS, &words);
        assert!(!out.status.success(), "accepted `{words}`: {}", text(&out));
        assert_eq!(s.dump_text(), before, "`{words}` changed the server");
    }

    // The device's own rotation: its new key becomes a peer without AllowedIPs, with the old
    // peer's endpoint, keepalive and preshared key; the other device is untouched.
    let (_, new) = wg_genkey();
    let out = s.forced(DEVICE_IPS, &new);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        field(&s.show("allowed-ips"), &new).as_deref(),
        Some("(none)")
    );
    assert_eq!(
        field(&s.show("preshared-keys"), &new).as_deref(),
        Some(s.ours_psk.as_str()),
        "the preshared key did not reach wg set"
    );
    assert_eq!(
        field(&s.show("endpoints"), &new).as_deref(),
        Some("127.0.0.1:40001")
    );
    assert_eq!(
        field(&s.show("persistent-keepalive"), &new).as_deref(),
        Some("25")
    );
    assert_eq!(field(&s.show("allowed-ips"), &s.other), other_ips_before);
    assert_eq!(
        field(&s.show("allowed-ips"), &s.ours).as_deref(),
        Some(DEVICE_IPS)
    );
    // No handshake with the new key within the timeout (2 s): it goes again, the old key stays.
    let gone = poll_until(Duration::from_secs(15), || !s.show("peers").contains(&new));
    assert!(gone, "the new key that never handshook was not removed");
    assert_eq!(
        field(&s.show("allowed-ips"), &s.ours).as_deref(),
        Some(DEVICE_IPS)
    );
}

#[test]
fn bad_arguments_are_refused_before_anything_changes() {
    let s = Server::new("rsvbad");
    let (_, good) = wg_genkey();
    let ifname = s.wg.ifname.clone();
    // 43 base64 characters whose last one has non-zero low bits: 33 bytes' worth, not 32.
    let not_32_bytes = format!("{}B=", &good[..42]);
    let marker = s.dir.path().join("marker");
    let injected = format!("$(touch {})", marker.display());
    let key_cases: Vec<String> = vec![
        String::new(),
        "short".into(),
        not_32_bytes,
        format!("{good}="),
        format!("{}!=", &good[..42]),
        format!("{good}\n{good}"),
        format!("{good} "),
        format!("{good};id"),
        injected.clone(),
        format!("-{}", &good[1..]),
    ];
    let before = s.dump_text();
    for words in &key_cases {
        let out = s.forced(DEVICE_IPS, words);
        assert!(
            !out.status.success(),
            "accepted key `{words}`: {}",
            text(&out)
        );
        assert_eq!(s.dump_text(), before, "`{words}` changed the server");
    }
    let forced_cases: Vec<Vec<&str>> = vec![
        vec![],
        vec![&ifname],
        vec!["../etc", DEVICE_IPS],
        vec![".", DEVICE_IPS],
        vec!["-h", DEVICE_IPS],
        vec!["averyveryverylongname", DEVICE_IPS],
        vec!["wg 0", DEVICE_IPS],
        vec![&ifname, ""],
        vec![&ifname, ","],
        vec![&ifname, "10.10.0.1/32;id"],
        vec![&ifname, "10.10.0.1/32 10.10.0.3/32"],
        vec![&ifname, &injected],
        vec![&ifname, "10.10.9.9/32"],
        vec![&ifname, DEVICE_IPS, "abc"],
        vec![&ifname, DEVICE_IPS, "0"],
        vec![&ifname, DEVICE_IPS, "9999999"],
        vec![&ifname, DEVICE_IPS, "2", "extra"],
    ];
    for args in &forced_cases {
        let tmp = s.empty_tmp();
        let out = s.run(args, Some(&good), None, &tmp);
        assert!(!out.status.success(), "accepted {args:?}: {}", text(&out));
        assert_eq!(s.dump_text(), before, "{args:?} changed the server");
    }
    // Not run by sshd (no SSH_ORIGINAL_COMMAND): refused, even with good arguments.
    let tmp = s.empty_tmp();
    let out = s.run(&[&ifname, DEVICE_IPS], None, None, &tmp);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(s.dump_text(), before);
    assert!(!marker.exists(), "an argument was run as a command");
}

/// `wg set` fails (a `wg` first on PATH that refuses `set`): no file with the preshared key is
/// left behind, and the server is as before.
#[test]
fn a_failing_wg_set_leaves_no_file_and_no_half_registered_key() {
    let s = Server::new("rsvtmp");
    let real_wg = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v wg"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let bin = s.dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("wg");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncase \"$1\" in set) echo 'wg set: refused by the test' >&2; exit 1 ;; esac\nexec {real_wg} \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_, new) = wg_genkey();
    let before = s.dump_text();
    let tmp = s.empty_tmp();
    let out = s.run(
        &[&s.wg.ifname, DEVICE_IPS, "2"],
        Some(&new),
        Some(&bin),
        &tmp,
    );
    assert!(!out.status.success(), "{}", text(&out));
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "files left in TMPDIR: {left:?}");
    assert_eq!(s.dump_text(), before);

    // A `wg set` that applied the new peer and then failed (wireguard-go applies a request line
    // by line): the script's trap removes the half-registered key again.
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncase \"$1 $*\" in set*' remove') exec {real_wg} \"$@\" ;; set*) {real_wg} \"$@\"; \
             echo 'wg set: failed after applying' >&2; exit 1 ;; esac\nexec {real_wg} \"$@\"\n"
        ),
    )
    .unwrap();
    let (_, new) = wg_genkey();
    let tmp = s.empty_tmp();
    let out = s.run(
        &[&s.wg.ifname, DEVICE_IPS, "2"],
        Some(&new),
        Some(&bin),
        &tmp,
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        !s.show("peers").contains(&new),
        "the half-registered key stayed: {}",
        text(&out)
    );
    assert_eq!(s.dump_text(), before);
}
