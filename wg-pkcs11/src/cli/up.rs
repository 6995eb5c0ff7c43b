//! `up [--foreground] IFNAME|CONF`: bring the interface up and run it until SIGINT/SIGTERM, until
//! its UAPI socket is removed, or until its TUN is deleted. Without `--foreground` the command
//! returns once the interface is up and the daemon runs on (see `detach.rs`). SIGHUP re-reads
//! the config and applies it as `wg syncconf` would (peers added, removed, updated; sessions of
//! the peers that stay are kept).
//!
//! Order (as wg-quick): PreUp, device (TUN + UDP + peers), UAPI socket, addresses/MTU/routes/
//! DNS, PostUp ... PreDown, routes etc. undone, socket removed, device closed, PostDown.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use wg_pkcs11::config::{interface_name_from_path, PrivateKeySource};
use wg_pkcs11::endpoint::{self, PeerState, Reresolver};
use wg_pkcs11::key::{StaticKey, TokenKey};
use wg_pkcs11::netconfig::NetConfig;
use wg_pkcs11::uapi::{PeerUpdate, SetRequest, UapiBackend, UapiServer};

use super::device::{short_key, start_device, RunningDevice};
use super::keyfile;
use super::notify::Readiness;
use super::signals::{self, CaughtSignals, Request};
use super::watch::HandshakeLog;

/// How often the main loop looks at the socket and the TUN (a deleted TUN ends the daemon
/// within this, plus the teardown).
const LOOP_TICK: Duration = Duration::from_millis(100);

/// The static key the config names: in a token (URI) or in the file (base64).
pub fn load_key(source: &PrivateKeySource) -> Result<Arc<dyn StaticKey>, String> {
    match source {
        PrivateKeySource::Pkcs11(uri) => {
            let key = TokenKey::open(uri).map_err(|e| e.to_string())?;
            Ok(Arc::new(key))
        }
        PrivateKeySource::Inline(bytes) => super::device::soft_key(bytes),
        PrivateKeySource::Forgotten => Err("the config's key was already handed over".into()),
    }
}

/// `wg-pkcs11 up [--foreground] ARG`.
pub fn run(argument: &str, foreground: bool) -> Result<(), String> {
    if !foreground {
        return super::detach::run_detached(&[
            "up".to_string(),
            "--foreground".to_string(),
            argument.to_string(),
        ]);
    }
    run_foreground(&keyfile::config_path(argument))
}

fn run_foreground(path: &Path) -> Result<(), String> {
    // Before any secret is read (the config's keys, a PIN): no core dump, no ptrace by others.
    wg_pkcs11::secret_mem::harden_process()
        .map_err(|e| format!("cannot make the process non-dumpable: {e}"))?;
    let mut readiness = Readiness::from_env();
    let signals = CaughtSignals::catch()?;
    let ifname = interface_name_from_path(path)?;
    let mut config = keyfile::load_config(path)?;
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
    // What a reload compares a re-read PrivateKey with: the URI, or for an inline key nothing
    // (its public key is compared; the secret itself stays in the key object only).
    let running_key = match &config.interface.private_key {
        PrivateKeySource::Inline(_) => PrivateKeySource::Forgotten,
        source => source.clone(),
    };
    let key = load_key(&config.interface.private_key)?;
    log::info!(
        "{ifname}: public key {}",
        base64::engine::general_purpose::STANDARD.encode(key.public_key())
    );
    let mut net = NetConfig::new(&ifname, &mut config);
    net.pre_up().map_err(|e| e.to_string())?;

    let device = start_device(&ifname, key, &config);
    // The key object and the peers hold the secrets now, each in one locked slot: wipe the
    // config's, and what parsing and handing them over left on the stack.
    config.forget_secrets();
    wg_pkcs11::secret_mem::scrub_stack();
    let device = match device {
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
    if let Some(signal) = signals.stop_pending() {
        log::info!(
            "{ifname}: {} while starting: going down",
            signals::name(signal)
        );
        take_down(net, uapi, device);
        return Ok(());
    }
    log::info!("{ifname}: up (UAPI {})", uapi.path().display());
    readiness.ready(&format!("{ifname} is up"));

    let mut handshakes = HandshakeLog::new(&ifname);
    let mut next_reresolve = Instant::now() + endpoint::RERESOLVE_INTERVAL;
    let mut key_failure = None;
    let reason = loop {
        match signals.wait(LOOP_TICK) {
            Some(Request::Stop(signal)) => break signals::name(signal).to_string(),
            Some(Request::Reload) => {
                readiness.reloading();
                if let Some(peers) = reload(&ifname, path, &device, &running_key) {
                    reresolver = peers;
                }
                wg_pkcs11::secret_mem::scrub_stack();
                readiness.ready(&format!("{ifname} is up"));
            }
            None => {}
        }
        if !reresolver.is_empty() && Instant::now() >= next_reresolve {
            reresolve(&ifname, &mut reresolver, device.backend.as_ref());
            next_reresolve = Instant::now() + endpoint::RERESOLVE_INTERVAL;
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
    // SaveConfig = true: as wg-quick's down, save before anything is taken down (a deleted
    // interface has nothing left to save).
    if !device.tun_gone() && super::quick::wants_save(path) {
        if let Err(e) = super::quick::save_config(path, &ifname) {
            log::error!("{ifname}: SaveConfig: {e}");
        }
    }
    take_down(net, uapi, device);
    match key_failure {
        Some(why) => Err(format!("{ifname}: {why}")),
        None => Ok(()),
    }
}

/// SIGHUP: re-read the file and apply it like `wg syncconf`. A config that does not parse, or
/// names another key, changes nothing (and the tunnel runs on). Returns the new config's
/// host-name endpoints to re-resolve when it was applied.
fn reload(
    ifname: &str,
    path: &Path,
    device: &RunningDevice,
    running_key: &PrivateKeySource,
) -> Option<Reresolver> {
    log::info!("{ifname}: SIGHUP: re-reading {}", path.display());
    let config = keyfile::load_config(path).and_then(|mut config| {
        config
            .resolve_endpoints(path, &endpoint::system_resolver)
            .map_err(|e| e.to_string())?;
        Ok(config)
    });
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            log::error!("{ifname}: reload refused, nothing changed: {e}");
            return None;
        }
    };
    let reresolver = Reresolver::new(
        config
            .peers
            .iter()
            .filter_map(|p| Some((p.public_key, p.endpoint.clone()?))),
    );
    match device.sync(&config, running_key) {
        Ok(summary) => {
            for key in &summary.added {
                log::info!("{ifname}: peer {} added", short_key(key));
            }
            for key in &summary.removed {
                log::info!("{ifname}: peer {} removed", short_key(key));
            }
            for key in &summary.updated {
                log::info!("{ifname}: peer {} updated", short_key(key));
            }
            log::info!(
                "{ifname}: reloaded ({} added, {} removed, {} updated; addresses, routes and \
                 hooks are applied at the next up, as with wg syncconf)",
                summary.added.len(),
                summary.removed.len(),
                summary.updated.len()
            );
            Some(reresolver)
        }
        Err(e) => {
            log::error!("{ifname}: reload refused: {e}");
            None
        }
    }
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
