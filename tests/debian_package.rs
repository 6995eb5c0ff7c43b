//! The Debian package as an admin gets it: `scripts/package` builds it, `dpkg -i` installs it,
//! a tunnel comes up using only what it installed (/usr/bin/wg-pkcs11, the module in p11-kit's
//! module directory found by `module-name=` through its p11-kit registration), the unit passes
//! `systemd-analyze verify`, and `dpkg --purge` removes every file it installed. Needs root, and
//! a machine where the package is not installed: it installs and purges it on the host, and
//! fails (never skips the purge) where it finds an installation it did not make.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use e2e_tests::topology::{A_TUNNEL, B_TUNNEL, LISTEN_PORT_A, LISTEN_PORT_B};
use e2e_tests::wireguard::uapi_socket;
use e2e_tests::{
    ping, poll_until, require_root, unique_interface_name, wg_genkey, NamespacePair, PeerSpec,
    UserspacePeer, UserspaceWireGuard, VirtualToken,
};

const PACKAGE: &str = "wg-pkcs11";

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
        "{program} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    run("dpkg-query", &["-W", "-f=${Status}", PACKAGE])
        .stdout
        .starts_with(b"install ok installed")
}

/// Purges the package if the test dies half-way.
struct Purge {
    armed: bool,
}

impl Drop for Purge {
    fn drop(&mut self) {
        if self.armed {
            let _ = run("dpkg", &["--purge", PACKAGE]);
        }
    }
}

#[test]
fn build_install_run_a_tunnel_and_purge() {
    require_root();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(workspace.join("scripts/package"))
        .current_dir(workspace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/package failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = workspace.join(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("scripts/package printed no file name")
            .trim(),
    );
    assert!(deb.is_file(), "{} missing", deb.display());
    assert!(deb.starts_with(workspace.join("target/debian")));

    // The test installs and purges the package on this machine. An installation that was there
    // before is the admin's (purging it would take away their setup), or one a killed run left
    // behind: either way the purge could not be checked, so the test refuses to run rather than
    // pass without it.
    assert!(
        !installed(),
        "{PACKAGE} is installed on this machine already (by its admin, or left by a killed run of \
         this test): this test installs and purges it, and cannot check the purge over an \
         installation it did not make. Remove it (dpkg --purge {PACKAGE}) or run the test on a \
         throwaway machine."
    );
    let mut purge = Purge { armed: true };
    must("dpkg", &["-i", deb.to_str().unwrap()]);
    let files: Vec<PathBuf> = must("dpkg", &["-L", PACKAGE])
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect();
    let multiarch = must("dpkg-architecture", &["-qDEB_HOST_MULTIARCH"])
        .trim()
        .to_string();
    let module = format!("/usr/lib/{multiarch}/pkcs11/libpkcs11_se050.so");
    for expected in [
        "/usr/bin/wg-pkcs11",
        &module,
        "/usr/share/p11-kit/modules/pkcs11-se050.module",
        "/lib/systemd/system/wg-pkcs11@.service",
        "/usr/lib/tmpfiles.d/wg-pkcs11.conf",
        "/usr/share/man/man8/wg-pkcs11.8.gz",
        "/usr/share/man/man5/pkcs11-se050.toml.5.gz",
        "/usr/share/bash-completion/completions/wg-pkcs11",
        "/usr/share/doc/wg-pkcs11/examples/wg0-client.conf",
        "/usr/share/doc/wg-pkcs11/examples/wg0.pkcs11",
        "/etc/pkcs11-se050/pkcs11-se050.toml",
    ] {
        assert!(
            files.iter().any(|f| f == Path::new(expected)),
            "{expected} is not in the package: {files:?}"
        );
    }
    // The tmpfiles rule ran: the chip's lock file for the i2c group, /run/wireguard.
    let lock = std::fs::metadata("/run/lock/pkcs11-se050-i2c-1-0x48.lock").unwrap();
    assert_eq!(lock.permissions().mode() & 0o777, 0o660);
    assert!(Path::new("/run/wireguard").is_dir());
    // The unit is valid as systemd reads it.
    let verify = run(
        "systemd-analyze",
        &["verify", "--man=no", "wg-pkcs11@wgpkg0.service"],
    );
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let version = must("/usr/bin/wg-pkcs11", &["--version"]);
    assert!(version.starts_with("wg-pkcs11 "), "{version}");

    // A tunnel from the installed files only: a virtual chip (the package's config in /etc
    // names the I2C bus of a real one), the key made through the p11-kit registration.
    let token = VirtualToken::new(10);
    let via_p11_kit =
        |label: &str| format!("pkcs11:token=SE050;object={label}?module-name=pkcs11-se050");
    let mut genkey = Command::new("/usr/bin/wg-pkcs11");
    genkey.args(["genkey", &via_p11_kit("pkg-key")]);
    token.apply(&mut genkey);
    let out = genkey.output().unwrap();
    assert!(
        out.status.success(),
        "genkey through the installed registration: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut list = Command::new("p11-kit");
    list.arg("list-modules");
    token.apply(&mut list);
    let listed = String::from_utf8_lossy(&list.output().unwrap().stdout).into_owned();
    assert!(
        listed.contains("pkcs11-se050"),
        "p11-kit does not list the module:\n{listed}"
    );

    let pair = NamespacePair::new("deb");
    let peer_if = unique_interface_name("pkb");
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
    let ifname = unique_interface_name("pka");
    let config_dir = pair.dir().join("wireguard");
    std::fs::create_dir_all(&config_dir).unwrap();
    let conf = config_dir.join(format!("{ifname}.conf"));
    std::fs::write(
        &conf,
        format!(
            "[Interface]\nPrivateKey = {}\nAddress = {A_TUNNEL}/24\nListenPort = {LISTEN_PORT_A}\n\n\
             [Peer]\nPublicKey = {peer_public}\nEndpoint = {}\nAllowedIPs = {B_TUNNEL}/32\n",
            via_p11_kit("pkg-key"),
            pair.b_endpoint()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let installed_cli = |args: &[&str]| {
        let mut command = pair.a.command("/usr/bin/wg-pkcs11");
        command.args(args).env("WG_PKCS11_CONFIG_DIR", &config_dir);
        token.apply(&mut command);
        command.output().unwrap()
    };
    let up = installed_cli(&["up", &ifname]);
    assert!(
        up.status.success(),
        "installed wg-pkcs11 up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        poll_until(Duration::from_secs(10), || ping(&pair.a, B_TUNNEL, 1)),
        "no ping through the tunnel of the installed daemon"
    );
    let down = installed_cli(&["down", &ifname]);
    assert!(
        down.status.success(),
        "installed wg-pkcs11 down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!uapi_socket(&ifname).exists());

    // What the daemon writes at run time after a refused PIN (key/refusals.rs): purge removes
    // it too. Made here if no daemon of this machine has made it yet.
    let pin_memory = Path::new("/var/lib/wg-pkcs11");
    if !pin_memory.exists() {
        std::fs::create_dir_all(pin_memory).unwrap();
        std::fs::write(pin_memory.join("refused-pins"), b"").unwrap();
    }
    purge.armed = false;
    must("dpkg", &["--purge", PACKAGE]);
    assert!(!installed());
    assert!(
        !pin_memory.exists(),
        "dpkg --purge left the refused-PIN memory in {}",
        pin_memory.display()
    );
    let left: Vec<&PathBuf> = files.iter().filter(|f| f.exists()).collect();
    assert!(left.is_empty(), "dpkg --purge left files behind: {left:?}");
    let status = run("dpkg-query", &["-W", "-f=${Status}", PACKAGE]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.is_empty() || status.contains("not-installed"),
        "after purge: {status}"
    );
}
