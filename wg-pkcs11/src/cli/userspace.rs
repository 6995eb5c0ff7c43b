//! `wg-pkcs11 [-f|--foreground] IFNAME`: the userspace-implementation mode, as `wireguard-go
//! IFNAME`, so stock wg-quick runs it (`WG_QUICK_USERSPACE_IMPLEMENTATION=wg-pkcs11`) on hosts
//! without the kernel module: create the TUN and the UAPI socket, return once both exist (the
//! daemon runs on), and take the configuration from `wg setconf` / `wg syncconf`.
//!
//! The key is the one thing wg cannot pass: its URI comes from `/etc/wireguard/IFNAME.pkcs11`
//! (see `keyfile.rs`), and whatever `wg` sends as `private_key` is accepted only when it changes
//! nothing (`uapi::check_private_key`). The daemon exits when its TUN is deleted (`wg-quick
//! down` runs `ip link delete`), when its socket file is removed, or on SIGINT/SIGTERM.

use std::time::Duration;

use wg_pkcs11::key::TokenKey;
use wg_pkcs11::uapi::UapiServer;

use super::device::start_unconfigured;
use super::keyfile;
use super::notify::Readiness;
use super::signals::{self, CaughtSignals, Request};
use super::watch::HandshakeLog;

const LOOP_TICK: Duration = Duration::from_millis(100);

pub fn run(ifname: &str, foreground: bool) -> Result<(), String> {
    if !keyfile::is_interface_name(ifname) {
        return Err(format!(
            "`{ifname}` is not an interface name (1-15 characters of a-z A-Z 0-9 _ = + . -)"
        ));
    }
    if !foreground {
        return super::detach::run_detached(&["--foreground".to_string(), ifname.to_string()]);
    }
    // Before the key file and its PIN are read, as `up` does.
    wg_pkcs11::secret_mem::harden_process()
        .map_err(|e| format!("cannot make the process non-dumpable: {e}"))?;
    let mut readiness = Readiness::from_env();
    let signals = CaughtSignals::catch()?;
    let key_file = keyfile::key_file_for_interface(ifname);
    if !key_file.exists() {
        return Err(format!(
            "{ifname}: no key: put the pkcs11: URI of the interface's key in {} (wg-quick's \
             config then has no PrivateKey)",
            key_file.display()
        ));
    }
    let uri = keyfile::read_key_file(&key_file)?;
    let key = TokenKey::open(&uri).map_err(|e| format!("{ifname}: {e}"))?;
    let device = start_unconfigured(ifname, std::sync::Arc::new(key))
        .map_err(|e| format!("{ifname}: cannot start the device: {e}"))?;
    let uapi = match UapiServer::start(ifname, device.backend.clone()) {
        Ok(server) => server,
        Err(e) => {
            device.stop();
            return Err(format!("{ifname}: cannot open the UAPI socket: {e}"));
        }
    };
    log::info!(
        "{ifname}: created, waiting for wg setconf (key from {})",
        key_file.display()
    );
    readiness.ready(&format!("{ifname} created"));
    let mut handshakes = HandshakeLog::new(ifname);
    let mut key_failure = None;
    let reason = loop {
        match signals.wait(LOOP_TICK) {
            Some(Request::Stop(signal)) => break signals::name(signal).to_string(),
            Some(Request::Reload) => log::info!(
                "{ifname}: SIGHUP: nothing to re-read in this mode (wg syncconf configures it)"
            ),
            None => {}
        }
        if uapi.socket_removed() {
            break format!("{} removed", uapi.path().display());
        }
        if device.tun_gone() {
            break "the interface was deleted".to_string();
        }
        if let Some(why) = device.key_unusable() {
            key_failure = Some(why);
            break "its key can no longer be used".to_string();
        }
        handshakes.tick(&device);
    };
    log::info!("{ifname}: going down ({reason})");
    readiness.stopping();
    uapi.shutdown();
    device.stop();
    match key_failure {
        Some(why) => Err(format!("{ifname}: {why}")),
        None => Ok(()),
    }
}
