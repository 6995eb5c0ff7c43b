//! The built `wg-pkcs11` binary end to end: two network namespaces joined by a veth pair, a
//! virtual SE050 behind the built libpkcs11_se050.so in a temporary directory, and wireguard-go
//! as the peer in the second namespace. Used with `mod device_support;` beside it.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::device_support::{must, Netns, Pair};

pub const BIN: &str = env!("CARGO_BIN_EXE_wg-pkcs11");

/// Namespaces A (`net.a`, address `net.a_addr`) and B (`net.b`, `net.b_addr`) and a virtual
/// chip. Dropped, it sends SIGTERM to what still runs in the namespaces (so the daemon and
/// wireguard-go remove their UAPI sockets), deletes them, then the chip's directory.
pub struct Testbed {
    pub net: Pair,
    pub dir: tempfile::TempDir,
    /// The built libpkcs11_se050.so, next to the binary.
    pub module: PathBuf,
}

impl Testbed {
    /// Namespaces named after `prefixes`, and a chip configured with `chip_config` besides its
    /// transport and state file (lines ending in a newline, or nothing).
    pub fn new(prefixes: (&str, &str), chip_config: &str) -> Testbed {
        let net = Pair::with(prefixes, libc::SIGTERM);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("se050.toml"),
            format!(
                "transport = \"virtual\"\nvirtual_state = \"{}\"\n{chip_config}",
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
        Testbed { net, dir, module }
    }

    /// `name` in the test's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `wg-pkcs11 ARGS` (in namespace `ns`, if given) with the test's chip.
    pub fn wg_pkcs11(&self, ns: Option<&Netns>, args: &[&str]) -> Command {
        let mut command = match ns {
            Some(ns) => ns.command(BIN),
            None => Command::new(BIN),
        };
        command
            .args(args)
            .env("PKCS11_SE050_CONF", self.path("se050.toml"));
        command
    }

    /// The URI of key `label` in the chip through the built module; `query` goes after the
    /// module's path (`&name=value...`, or nothing).
    pub fn uri(&self, label: &str, query: &str) -> String {
        format!(
            "pkcs11:token=SE050;object={label}?module-path={}{query}",
            self.module.display()
        )
    }

    /// wireguard-go in B as interface `ifname` (address 10.9.0.2/24, port 51820) with
    /// `peer_public` as its peer (allowed 10.9.0.1/32); its key in `b.key`. Returns its
    /// public key.
    pub fn wireguard_go(&self, ifname: &str, peer_public: &str) -> String {
        let b = &self.net.b;
        b.must("wireguard-go", &[ifname]);
        let private = must("wg", &["genkey"]);
        let key_file = self.path("b.key");
        write_mode(&key_file, &private, 0o600);
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
        b.must(
            "wg",
            &[
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
        b.ip(&["addr", "add", "10.9.0.2/24", "dev", ifname]);
        b.ip(&["link", "set", ifname, "up"]);
        public
    }
}

/// Write `content` to `path` with permissions `mode`.
pub fn write_mode(path: &Path, content: &str, mode: u32) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The UAPI socket of interface `ifname`.
pub fn socket(ifname: &str) -> PathBuf {
    PathBuf::from(format!("/var/run/wireguard/{ifname}.sock"))
}

/// Wait for `child` to exit; past `timeout`, kill it and fail.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("the daemon did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
