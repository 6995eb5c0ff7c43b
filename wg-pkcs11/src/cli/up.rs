//! `up CONF`: bring the interface up in the foreground and take everything down again on
//! SIGINT/SIGTERM or when the UAPI socket is removed.
//!
//! Order (as wg-quick): PreUp, device (TUN + UDP + peers), UAPI socket, addresses/MTU/routes/
//! DNS, PostUp ... PreDown, routes etc. undone, socket removed, device closed, PostDown.

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use wg_pkcs11::config::{interface_name_from_path, Config, PrivateKeySource};
use wg_pkcs11::endpoint::{self, PeerState, Reresolver};
use wg_pkcs11::key::{StaticKey, TokenKey};
use wg_pkcs11::netconfig::NetConfig;
use wg_pkcs11::uapi::{PeerUpdate, SetRequest, UapiBackend, UapiServer};

use super::device::{start_device, RunningDevice};

/// The signals that end the daemon.
const STOP_SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The stop signals, caught by signal-hook from the start of `up` (so one that comes while the
/// key is still loading is not lost) and handed over by a thread of their own, so none of our
/// code runs inside a signal handler and the main thread can wait with a timeout.
struct StopSignals {
    received: mpsc::Receiver<i32>,
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl StopSignals {
    fn catch() -> Result<StopSignals, String> {
        let mut signals = Signals::new(STOP_SIGNALS)
            .map_err(|e| format!("cannot catch the stop signals: {e}"))?;
        let handle = signals.handle();
        let (sender, received) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if sender.send(signal).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
        Ok(StopSignals {
            received,
            handle,
            thread: Some(thread),
        })
    }

    /// Wait up to `timeout` for a stop signal; returns it if one came.
    fn wait(&self, timeout: Duration) -> Option<i32> {
        self.received.recv_timeout(timeout).ok()
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
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
    let stop_signals = StopSignals::catch()?;
    let ifname = interface_name_from_path(path)?;
    let mut config = Config::load(path).map_err(|e| e.to_string())?;
    for warning in &config.warnings {
        log::warn!("{}: {warning}", path.display());
    }
    // The file is parsed without a lookup; host names are resolved now, once.
    config
        .resolve_endpoints(path, &endpoint::system_resolver)
        .map_err(|e| e.to_string())?;
    let mut reresolver = Reresolver::new(
        config
            .peers
            .iter()
            .filter_map(|p| Some((p.public_key, p.endpoint.clone()?))),
    );
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

    let mut next_reresolve = Instant::now() + endpoint::RERESOLVE_INTERVAL;
    let reason = loop {
        if let Some(signal) = stop_signals.wait(Duration::from_millis(250)) {
            break format!("signal {signal}");
        }
        if !reresolver.is_empty() && Instant::now() >= next_reresolve {
            reresolve(&ifname, &mut reresolver, device.backend.as_ref());
            next_reresolve = Instant::now() + endpoint::RERESOLVE_INTERVAL;
        }
        if uapi.socket_removed() {
            break format!("{} removed", uapi.path().display());
        }
    };
    log::info!("{ifname}: going down ({reason})");
    take_down(net, uapi, device);
    Ok(())
}

/// Point quiet peers with a host-name endpoint at what the name resolves to now.
fn reresolve(ifname: &str, reresolver: &mut Reresolver, backend: &dyn UapiBackend) {
    let Ok(info) = backend.get() else { return };
    let running: Vec<PeerState> = info
        .peers
        .iter()
        .map(|p| PeerState {
            public_key: p.public_key,
            endpoint: p.endpoint,
            last_handshake: p.last_handshake,
        })
        .collect();
    let changes = reresolver.check(&running, SystemTime::now(), &endpoint::system_resolver);
    if changes.is_empty() {
        return;
    }
    let request = SetRequest {
        peers: changes
            .into_iter()
            .map(|(public_key, address)| {
                log::info!("{ifname}: a peer's endpoint name now resolves to {address}");
                PeerUpdate {
                    public_key,
                    update_only: true,
                    endpoint: Some(address),
                    ..PeerUpdate::default()
                }
            })
            .collect(),
        ..SetRequest::default()
    };
    if let Err(e) = backend.set(request) {
        log::warn!("{ifname}: setting a re-resolved endpoint failed: {e}");
    }
}

fn take_down(mut net: NetConfig, uapi: UapiServer, device: RunningDevice) {
    net.deconfigure();
    uapi.shutdown();
    device.stop();
    net.post_down();
}
