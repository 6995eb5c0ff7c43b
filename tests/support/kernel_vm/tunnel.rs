//! One tunnel between wg-pkcs11 (in a namespace of the test's own on the guest's link) and a
//! kernel WireGuard interface in the shared VM. Each tunnel has its own index `k`: guest
//! interface `wg<k>` on port 51900+k, tunnel addresses 10.20.k.1 (wg-pkcs11) and 10.20.k.2
//! (the kernel), so tests run side by side on one VM.
//!
//! Only the initiator is given its peer's endpoint, so the other side can only answer: that
//! proves who initiated.

use std::path::Path;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::guest_wg::GuestWg;
use super::vm::{HostLink, KernelVm, GUEST_ADDRESS};
use crate::interop::{Initiator, TOKEN_LATENCY_MS};
use crate::traffic::ping;
use crate::virtual_token::VirtualToken;
use crate::wait::poll_until;
use crate::wg_pkcs11::{wg_pkcs11_genkey, WgPkcs11, WgPkcs11Conf};
use crate::wireguard::{unique_interface_name, wg_genkey, PeerSpec, WgDump};

/// wg-pkcs11's UDP port (each tunnel's daemon has a namespace of its own).
pub const HOST_PORT: u16 = 51820;

/// How long the first handshake may take: the guest is emulated (TCG) on a busy machine.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where wg-pkcs11's private key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKey {
    /// `wg genkey`, in the config file.
    Software,
    /// Generated inside the virtual SE050 by `wg-pkcs11 genkey`, addressed by a pkcs11: URI.
    Token,
}

/// How the tunnel is set up. `Initiator::Reference` is the kernel.
#[derive(Clone, Debug)]
pub struct TunnelOptions {
    pub key: HostKey,
    pub initiator: Initiator,
    /// The preshared key each side is given: (wg-pkcs11's, the kernel's).
    pub preshared_keys: (Option<String>, Option<String>),
    pub persistent_keepalive: Option<u16>,
    /// The virtual SE050's latency per operation (a token key only).
    pub token_latency_ms: u32,
}

impl TunnelOptions {
    pub fn new(key: HostKey, initiator: Initiator) -> TunnelOptions {
        TunnelOptions {
            key,
            initiator,
            preshared_keys: (None, None),
            persistent_keepalive: None,
            token_latency_ms: TOKEN_LATENCY_MS,
        }
    }
}

pub struct KernelTunnel {
    // Fields drop in declaration order: the daemon stops before its namespace goes (`host`).
    pub daemon: WgPkcs11,
    pub guest: GuestWg<'static>,
    pub vm: &'static KernelVm,
    pub k: u32,
    pub host: HostLink,
    pub token: VirtualToken,
    pub host_public: String,
    pub guest_public: String,
    pub options: TunnelOptions,
    dir: TempDir,
}

impl KernelTunnel {
    /// Both ends configured and up; no packet sent yet.
    pub fn new(vm: &'static KernelVm, options: TunnelOptions) -> KernelTunnel {
        let k = vm.next_index();
        assert!(k < 250, "too many tunnels on one VM");
        let host = vm.attach_host(&format!("kt{k}"));
        let dir = tempfile::Builder::new()
            .prefix(&format!("e2e-kernel-tunnel-{k}-"))
            .tempdir()
            .expect("cannot create a temporary directory");
        let token = VirtualToken::new(options.token_latency_ms);
        let (host_private, host_public) = match options.key {
            HostKey::Software => wg_genkey(),
            HostKey::Token => {
                let label = format!("wg-kernel-{k}");
                let public = wg_pkcs11_genkey(&token, &label);
                (token.key_uri(&label), public)
            }
        };

        let (guest_private, guest_public) = wg_genkey();
        let guest_port = 51900 + k as u16;
        let guest = GuestWg::create(
            vm,
            &format!("wg{k}"),
            &guest_private,
            guest_port,
            &[&format!("10.20.{k}.2/24")],
        );
        assert_eq!(
            guest.public_key(),
            guest_public,
            "the kernel derived another public key than `wg pubkey`"
        );
        let mut guest_sees = PeerSpec::new(&host_public, &[&format!("10.20.{k}.1/32")]);
        if options.initiator == Initiator::Reference {
            guest_sees = guest_sees.endpoint(&format!("{}:{HOST_PORT}", host.address));
        }
        if let Some(psk) = &options.preshared_keys.1 {
            guest_sees = guest_sees.preshared_key(psk);
        }
        if let Some(seconds) = options.persistent_keepalive {
            guest_sees = guest_sees.persistent_keepalive(seconds);
        }
        guest.set_peer(&guest_sees);

        let mut daemon_sees = PeerSpec::new(&guest_public, &[&format!("10.20.{k}.2/32")]);
        if options.initiator == Initiator::WgPkcs11 {
            daemon_sees = daemon_sees.endpoint(&format!("{GUEST_ADDRESS}:{guest_port}"));
        }
        if let Some(psk) = &options.preshared_keys.0 {
            daemon_sees = daemon_sees.preshared_key(psk);
        }
        if let Some(seconds) = options.persistent_keepalive {
            daemon_sees = daemon_sees.persistent_keepalive(seconds);
        }
        let conf = WgPkcs11Conf {
            private_key: host_private,
            listen_port: Some(HOST_PORT),
            addresses: vec![format!("10.20.{k}.1/24")],
            mtu: Some(1420),
            peers: vec![daemon_sees],
        };
        let ifname = unique_interface_name("wgk");
        let conf_path = conf.write(dir.path(), &ifname);
        let daemon = WgPkcs11::up(&host.ns, &token, &conf_path, dir.path());
        KernelTunnel {
            vm,
            k,
            host,
            token,
            daemon,
            guest,
            host_public,
            guest_public,
            options,
            dir,
        }
    }

    /// wg-pkcs11's tunnel address.
    pub fn host_tunnel_ip(&self) -> String {
        format!("10.20.{}.1", self.k)
    }

    /// The kernel's tunnel address.
    pub fn guest_tunnel_ip(&self) -> String {
        format!("10.20.{}.2", self.k)
    }

    /// wg-pkcs11's config file (what `wg-pkcs11 rotate --config` rewrites).
    pub fn conf_path(&self) -> std::path::PathBuf {
        self.dir().join(format!("{}.conf", self.daemon.ifname))
    }

    /// The kernel's endpoint as wg-pkcs11 should see it.
    pub fn guest_endpoint(&self) -> String {
        format!("{GUEST_ADDRESS}:{}", self.guest.listen_port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The initiator pings the other side until a reply comes (the first packet starts the
    /// handshake); returns how long that took. Fails with both sides' logs if no reply comes.
    pub fn handshake(&self) -> Duration {
        let start = Instant::now();
        let answered = match self.options.initiator {
            Initiator::WgPkcs11 => poll_until(HANDSHAKE_TIMEOUT, || {
                ping(&self.host.ns, &self.guest_tunnel_ip(), 1)
            }),
            Initiator::Reference => self
                .vm
                .ping_until_reply(&self.host_tunnel_ip(), HANDSHAKE_TIMEOUT),
        };
        if !answered {
            self.fail(&format!(
                "no handshake between wg-pkcs11 and the kernel ({:?} key, {:?} initiating) within \
                 {HANDSHAKE_TIMEOUT:?}",
                self.options.key, self.options.initiator
            ));
        }
        start.elapsed()
    }

    /// `wg show dump` of both sides, as close together as the channel allows:
    /// (wg-pkcs11's view of the kernel, the kernel's view of wg-pkcs11).
    pub fn dumps(&self) -> (WgDump, WgDump) {
        (self.daemon.dump(), self.guest.dump())
    }

    /// Panics with `message`, wg-pkcs11's log, both `wg show`s and the VM's console.
    pub fn fail(&self, message: &str) -> ! {
        let host_show = self.host.ns.output(["wg", "show", &self.daemon.ifname]);
        let guest_show = self.vm.run(&format!("wg show {}", self.guest.ifname));
        self.vm.fail(&format!(
            "{message}\n--- wg-pkcs11 log:\n{}\n--- wg show on wg-pkcs11's side:\n{}\n--- wg show \
             in the guest:\n{}",
            self.daemon.log(),
            String::from_utf8_lossy(&host_show.stdout),
            guest_show.output
        ))
    }
}
