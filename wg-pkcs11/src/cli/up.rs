//! `up CONF`: bring the interface up in the foreground and take everything down again on
//! SIGINT/SIGTERM or when the UAPI socket is removed.
//!
//! Order (as wg-quick): PreUp, device (TUN + UDP + peers), UAPI socket, addresses/MTU/routes/
//! DNS, PostUp ... PreDown, routes etc. undone, socket removed, device closed, PostDown.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use wg_pkcs11::config::{interface_name_from_path, Config, PrivateKeySource};
use wg_pkcs11::key::{StaticKey, TokenKey};
use wg_pkcs11::netconfig::NetConfig;
use wg_pkcs11::uapi::UapiServer;

use super::device::{start_device, RunningDevice};

/// The signals that end the daemon. They are blocked in every thread and collected with
/// sigtimedwait by the main thread, so no signal handler runs at an arbitrary point.
const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn stop_signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before sigaddset uses it, and
    // both only write into the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in STOP_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Block the stop signals in this thread and every thread it spawns afterwards.
fn block_stop_signals() -> Result<(), String> {
    let set = stop_signal_set();
    // SAFETY: `set` is an initialised sigset_t; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(format!(
            "pthread_sigmask: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    Ok(())
}

/// Wait up to `timeout` for a stop signal; returns it if one came.
fn wait_stop_signal(timeout: Duration) -> Option<libc::c_int> {
    let set = stop_signal_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; a null siginfo pointer is allowed.
    let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    (signal > 0).then_some(signal)
}

/// The static key the config names: in a token (URI) or in the file (base64).
pub fn load_key(source: &PrivateKeySource) -> Result<Arc<dyn StaticKey>, String> {
    match source {
        PrivateKeySource::Pkcs11(uri) => {
            let key = TokenKey::open(uri).map_err(|e| e.to_string())?;
            Ok(Arc::new(key))
        }
        PrivateKeySource::Inline(bytes) => super::device::soft_key(bytes),
    }
}

pub fn run(path: &Path) -> Result<(), String> {
    block_stop_signals()?;
    let ifname = interface_name_from_path(path)?;
    let mut config = Config::load(path).map_err(|e| e.to_string())?;
    for warning in &config.warnings {
        log::warn!("{}: {warning}", path.display());
    }
    let key = load_key(&config.interface.private_key)?;
    log::info!(
        "{ifname}: public key {}",
        base64::engine::general_purpose::STANDARD.encode(key.public_key())
    );
    let mut net = NetConfig::new(&ifname, &mut config);
    net.pre_up().map_err(|e| e.to_string())?;

    let device = match start_device(&ifname, key, &config) {
        Ok(device) => device,
        Err(e) => {
            net.post_down();
            return Err(format!("{ifname}: cannot start the device: {e}"));
        }
    };
    let uapi = match UapiServer::start(&ifname, device.backend.clone()) {
        Ok(server) => server,
        Err(e) => {
            device.stop();
            net.post_down();
            return Err(format!("{ifname}: cannot open the UAPI socket: {e}"));
        }
    };
    if let Err(e) = net.configure() {
        uapi.shutdown();
        device.stop();
        net.post_down();
        return Err(format!("{ifname}: {e}"));
    }
    log::info!("{ifname}: up (UAPI {})", uapi.path().display());

    let reason = loop {
        if let Some(signal) = wait_stop_signal(Duration::from_millis(250)) {
            break format!("signal {signal}");
        }
        if uapi.socket_removed() {
            break format!("{} removed", uapi.path().display());
        }
    };
    log::info!("{ifname}: going down ({reason})");
    take_down(net, uapi, device);
    Ok(())
}

fn take_down(mut net: NetConfig, uapi: UapiServer, device: RunningDevice) {
    net.deconfigure();
    uapi.shutdown();
    device.stop();
    net.post_down();
}
