//! The Debian package as an admin gets it: `scripts/package` builds it, lintian finds no error
//! or warning in it, `dpkg -i` installs it, a tunnel comes up using only what it installed
//! (/usr/bin/wg-pkcs11, the module in p11-kit's module directory found by `module-name=` through
//! its p11-kit registration), the unit passes `systemd-analyze verify`, and `dpkg --purge`
//! removes every file it installed. Needs root. Installing and purging happen in a private root
//! (private_root.rs: an overlay of the host's `/` on a tmpfs, in a mount namespace of its own,
//! chrooted into), so the host is never changed: the test checks that its dpkg database and the
//! package's directories are the same after as before, and a killed run leaves nothing behind.

#[path = "debian_package/private_root.rs"]
mod private_root;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
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

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The .deb, built once by `scripts/package` for every test of this file.
fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let out = Command::new(workspace().join("scripts/package"))
            .current_dir(workspace())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/package failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deb = workspace().join(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .expect("scripts/package printed no file name")
                .trim(),
        );
        assert!(deb.is_file(), "{} missing", deb.display());
        assert!(deb.starts_with(workspace().join("target/debian")));
        deb
    })
}

/// lintian, as the arm64/armhf parts of scripts/test-platforms run it (deb-lintian): any error
/// or warning fails, by lintian's exit status and by an `E:` or `W:` line; info and pedantic
/// tags are printed, not counted.
#[test]
fn lintian_finds_no_error_or_warning() {
    let deb = package();
    let out = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--display-info", "--pedantic"])
        .args(["--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .unwrap_or_else(|e| panic!("cannot run lintian (scripts/install-deps installs it): {e}"));
    let report = String::from_utf8_lossy(&out.stdout);
    println!("lintian {}:\n{report}", deb.display());
    let failing: Vec<&str> = report
        .lines()
        .filter(|line| line.starts_with("E: ") || line.starts_with("W: "))
        .collect();
    assert!(
        out.status.success() && failing.is_empty(),
        "lintian {} ({}): {failing:#?}\n{}",
        deb.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the package could change on the host, one entry per file (type, mode, owner, size,
/// modification time): the dpkg database, the package's directories, the groups its postinst
/// may add. /run/wireguard is left out: other tests' daemons put their sockets there meanwhile.
fn host_state() -> BTreeMap<PathBuf, String> {
    let multiarch = must("dpkg-architecture", &["-qDEB_HOST_MULTIARCH"])
        .trim()
        .to_string();
    let mut state = BTreeMap::new();
    for path in [
        "/var/lib/dpkg/status",
        "/var/lib/dpkg/info",
        "/etc/group",
        "/etc/gshadow",
        "/etc/wireguard",
        "/etc/pkcs11-se050",
        "/usr/bin/wg-pkcs11",
        &format!("/usr/lib/{multiarch}/pkcs11"),
        "/usr/share/p11-kit/modules",
        "/lib/systemd/system",
        "/usr/lib/tmpfiles.d",
        "/usr/share/doc/wg-pkcs11",
        "/usr/share/man/man8",
        "/usr/share/bash-completion/completions",
        "/usr/share/zsh/vendor-completions",
        "/usr/share/fish/vendor_completions.d",
        "/var/lib/wg-pkcs11",
        "/run/lock/pkcs11-se050-i2c-1-0x48.lock",
        private_root::MARKER,
    ] {
        record(Path::new(path), &mut state);
    }
    let status = std::fs::read("/var/lib/dpkg/status").unwrap();
    state.insert(
        PathBuf::from("/var/lib/dpkg/status (content)"),
        format!("{:x?}", sha256(&status)),
    );
    state
}

fn record(path: &Path, state: &mut BTreeMap<PathBuf, String>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        state.insert(path.to_path_buf(), "absent".into());
        return;
    };
    state.insert(
        path.to_path_buf(),
        format!(
            "{:o} {}:{} {} bytes, modified {}.{:09}",
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec()
        ),
    );
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap().flatten() {
            record(&entry.path(), state);
        }
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

const DEB_ENV: &str = "WG_PKCS11_TEST_DEB";

#[test]
fn build_install_run_a_tunnel_and_purge() {
    require_root();
    if private_root::inside() {
        // The copy run_inside started: the package's file name is in its environment.
        let deb = PathBuf::from(std::env::var_os(DEB_ENV).expect("WG_PKCS11_TEST_DEB unset"));
        private_root::enter(&workspace().join("target/debian/private-root"));
        install_run_a_tunnel_and_purge(&deb);
        return;
    }
    let deb = package();
    let before = host_state();
    std::fs::create_dir_all(workspace().join("target/debian/private-root")).unwrap();
    let inside =
        private_root::run_inside("build_install_run_a_tunnel_and_purge", &[(DEB_ENV, deb)]);
    println!(
        "--- in the private root:\n{}{}",
        String::from_utf8_lossy(&inside.stdout),
        String::from_utf8_lossy(&inside.stderr)
    );
    assert!(
        inside.status.success(),
        "installing, running and purging in the private root failed ({}): its output is above",
        inside.status
    );
    // The copy reports through libtest: a filter that matched nothing would pass silently.
    assert!(
        String::from_utf8_lossy(&inside.stdout)
            .contains("test build_install_run_a_tunnel_and_purge ... ok"),
        "the private root's copy did not run the test"
    );
    let after = host_state();
    let paths: BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
    let changed: Vec<String> = paths
        .into_iter()
        .filter(|path| before.get(*path) != after.get(*path))
        .map(|path| {
            format!(
                "{}: {} -> {}",
                path.display(),
                before.get(path).map_or("absent", |s| s),
                after.get(path).map_or("absent", |s| s)
            )
        })
        .collect();
    assert!(
        changed.is_empty(),
        "installing and purging in the private root changed the host: {changed:#?}"
    );
}

/// Runs inside the private root: `/` is an overlay of the host's, so what dpkg does here stays
/// here.
fn install_run_a_tunnel_and_purge(deb: &Path) {
    // The private root starts as a copy of the host. An installation there is the admin's (a
    // killed run of this test leaves none): the purge could not be checked over an installation
    // the test did not make, so the test refuses to run rather than pass without it.
    assert!(
        !installed(),
        "{PACKAGE} is installed on this machine (by its admin): this test installs and purges it \
         in a copy of this machine's root, and cannot check the purge over an installation it \
         did not make. Remove it (dpkg --purge {PACKAGE}) or run the test on another machine."
    );
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
        "/usr/share/zsh/vendor-completions/_wg-pkcs11",
        "/usr/share/fish/vendor_completions.d/wg-pkcs11.fish",
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
    // it too. Made here (in the private root) if no daemon of this machine has made it yet.
    let pin_memory = Path::new("/var/lib/wg-pkcs11");
    if !pin_memory.exists() {
        std::fs::create_dir_all(pin_memory).unwrap();
        std::fs::write(pin_memory.join("refused-pins"), b"").unwrap();
    }
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
