//! The daemon under test: `wg-pkcs11 genkey|pubkey|up`, with its key in a virtual SE050.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

use crate::artifacts::wg_pkcs11_binary;
use crate::netns::Netns;
use crate::process::Background;
use crate::virtual_token::VirtualToken;
use crate::wait::poll_until;
use crate::wireguard::{uapi_socket, wg_show_dump, PeerSpec, WgDump, STARTUP_TIMEOUT};

fn run_cli(token: &VirtualToken, args: &[&str]) -> String {
    let mut command = Command::new(wg_pkcs11_binary());
    command.args(args);
    token.apply(&mut command);
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "`wg-pkcs11 {}` failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let public = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert_public_key(&public, args);
    public
}

fn assert_public_key(text: &str, args: &[&str]) {
    if text.is_empty() {
        panic!(
            "`wg-pkcs11 {}` succeeded but printed nothing: this build of wg-pkcs11 does not \
             implement the command yet",
            args.join(" ")
        );
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| {
            panic!(
                "`wg-pkcs11 {}` printed {text:?}, not base64: {e}",
                args.join(" ")
            )
        });
    assert_eq!(
        bytes.len(),
        32,
        "`wg-pkcs11 {}` printed {text:?}, not a 32-byte X25519 public key",
        args.join(" ")
    );
}

/// `wg-pkcs11 genkey URI`: generates an X25519 key pair labelled `label` inside the token and
/// returns its public key (base64).
pub fn wg_pkcs11_genkey(token: &VirtualToken, label: &str) -> String {
    run_cli(token, &["genkey", &token.key_uri(label)])
}

/// `wg-pkcs11 pubkey URI`: the public key (base64) of the pair labelled `label`.
pub fn wg_pkcs11_pubkey(token: &VirtualToken, label: &str) -> String {
    run_cli(token, &["pubkey", &token.key_uri(label)])
}

/// A wg-quick style configuration for wg-pkcs11.
#[derive(Clone, Debug, Default)]
pub struct WgPkcs11Conf {
    /// A `pkcs11:` URI (or a base64 key).
    pub private_key: String,
    pub listen_port: Option<u16>,
    pub addresses: Vec<String>,
    pub mtu: Option<u16>,
    pub peers: Vec<PeerSpec>,
}

impl WgPkcs11Conf {
    pub fn render(&self) -> String {
        let mut text = format!("[Interface]\nPrivateKey = {}\n", self.private_key);
        if let Some(port) = self.listen_port {
            text.push_str(&format!("ListenPort = {port}\n"));
        }
        if !self.addresses.is_empty() {
            text.push_str(&format!("Address = {}\n", self.addresses.join(", ")));
        }
        if let Some(mtu) = self.mtu {
            text.push_str(&format!("MTU = {mtu}\n"));
        }
        for peer in &self.peers {
            text.push('\n');
            text.push_str(&peer.conf_section());
        }
        text
    }

    /// Writes `dir/<ifname>.conf` (the file name names the interface, as with wg-quick).
    pub fn write(&self, dir: &Path, ifname: &str) -> PathBuf {
        let path = dir.join(format!("{ifname}.conf"));
        std::fs::write(&path, self.render())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

/// `wg-pkcs11 up --foreground CONF` running in a namespace.
pub struct WgPkcs11 {
    pub ns: Netns,
    pub ifname: String,
    process: Background,
}

impl WgPkcs11 {
    /// Starts the daemon with the token's configuration and waits until its UAPI socket answers.
    pub fn up(ns: &Netns, token: &VirtualToken, conf_path: &Path, log_dir: &Path) -> WgPkcs11 {
        let ifname = conf_path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("configuration file name is not UTF-8")
            .to_string();
        let mut command = ns.command(wg_pkcs11_binary());
        command.arg("up").arg("--foreground").arg(conf_path);
        command.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        token.apply(&mut command);
        let mut process = Background::spawn(&format!("wg-pkcs11-{ifname}"), command, log_dir);
        let socket = uapi_socket(&ifname);
        let ready = poll_until(STARTUP_TIMEOUT, || {
            process.assert_running();
            socket.exists() && ns.output(["wg", "show", &ifname]).status.success()
        });
        if !ready {
            panic!(
                "wg-pkcs11 up {} did not bring up {ifname} (UAPI socket {}) within \
                 {STARTUP_TIMEOUT:?}; its output:\n{}",
                conf_path.display(),
                socket.display(),
                process.log()
            );
        }
        WgPkcs11 {
            ns: ns.clone(),
            ifname,
            process,
        }
    }

    pub fn dump(&self) -> WgDump {
        wg_show_dump(&self.ns, &self.ifname)
    }

    /// `wg show IF` as a person reads it.
    pub fn show(&self) -> String {
        self.ns.run(["wg", "show", &self.ifname])
    }

    pub fn assert_running(&mut self) {
        self.process.assert_running();
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGTERM and wait: the daemon must exit on its own and take its interface and UAPI socket
    /// with it. Panics (with the log) otherwise.
    pub fn down(mut self) {
        let clean = self.process.stop();
        assert!(
            clean,
            "wg-pkcs11 did not exit on SIGTERM; its output:\n{}",
            self.process.log()
        );
        let ifname = self.ifname.clone();
        let gone = poll_until(std::time::Duration::from_secs(5), || {
            !self
                .ns
                .output(["ip", "link", "show", &ifname])
                .status
                .success()
        });
        assert!(gone, "wg-pkcs11 exited but left interface {ifname} behind");
        assert!(
            !uapi_socket(&ifname).exists(),
            "wg-pkcs11 exited but left {} behind",
            uapi_socket(&ifname).display()
        );
    }
}

impl Drop for WgPkcs11 {
    fn drop(&mut self) {
        self.process.stop();
        let _ = std::fs::remove_file(uapi_socket(&self.ifname));
    }
}
