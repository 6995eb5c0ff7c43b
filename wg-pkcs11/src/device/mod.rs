//! The device: a TUN interface, a UDP socket and the threads that move
//! packets between them through the protocol core.
//!
//! # Threads, not async
//!
//! Four plain threads, each blocked in a batched system call:
//!
//! ```text
//! TUN reader   read (TSO super-packet) -> route (AllowedIPs) -> segment -> encrypt -> sendmsg(UDP_SEGMENT)
//! UDP reader   recvmmsg(UDP_GRO) -> decrypt -> replay / source check -> coalesce -> write(TUN)
//!              handshake messages: mac1 (and mac2 under load) -> handshake queue
//! handshake    owns EVERY static-key operation (the token: tens of ms each)
//! timers       ticks every peer's timer state machine every 100 ms
//! ```
//!
//! Why not async: the work per packet is CPU-bound (AEAD), the descriptors
//! are few and always busy, and the batched calls (recvmmsg, TSO reads, GSO
//! sends) already amortise the system call cost over tens of packets. A
//! runtime would add wakeups, task hand-offs and allocation for nothing; two
//! packet threads on a 2-core machine keep both cores doing crypto, one per
//! direction, which is what single-stream TCP needs. With more cores, the two
//! readers share their AEAD with crypto helpers (crypto_pool: a super-packet
//! or a receive batch split in two halves, order kept). The only slow thing,
//! the token, gets its own thread so neither packet thread can ever wait on
//! it: packet threads only push to the handshake queue (dropping when it is
//! full), and the queue decides "under load" (cookie replies before any token
//! operation) from its backlog in chip time and the chip operations recently
//! wasted on messages that did not authenticate (queue.rs).

mod consumed;
pub mod counters;
mod counting_key;
mod crypto_pool;
mod handshake;
mod key_switch;
mod netns;
pub mod offload;
mod peers;
mod pktinfo;
mod queue;
mod ratelimit;
mod receive;
mod route_watch;
mod send;
mod socket_slot;
mod sockopt;
pub mod stats;
mod timers;
pub mod tun;
pub mod udp;
pub mod udp_offload;
mod vnet;
mod waker;

pub use crypto_pool::MAX_HELPERS as MAX_CRYPTO_HELPERS;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::cookie::CookieChecker;
use crate::key::StaticKey;
use crate::noise::{Identity, IndexTable};
use crate::peer::Peer;

use counters::Counters;
pub use counters::{CounterSnapshot, DropReason};
use counting_key::CountingKey;
use handshake::JobQueue;
pub use peers::{PeerConfig, PeerInfo};
pub(crate) use peers::{PeerState, Peers};
use socket_slot::SocketSlot;
use tun::Tun;
use udp::UdpSocket;
use waker::Waker;

/// At most this many packets wait per peer for a session (the kernel's MAX_STAGED_PACKETS).
pub const MAX_STAGED_PACKETS: usize = 128;

/// What `Device::start` needs.
pub struct DeviceConfig {
    /// The interface name (created if it does not exist).
    pub tun_name: String,
    /// The static key: a software key or a token key, never called off the handshake thread.
    pub private_key: Arc<dyn StaticKey>,
    /// 0: any free port (see `Device::listen_port`).
    pub listen_port: u16,
    /// SO_MARK on the UDP socket; 0 is none.
    pub fwmark: u32,
    pub peers: Vec<PeerConfig>,
    /// Use TUN offloads (virtio-net header, TSO/GRO) when the kernel has them. On by default.
    pub offload: bool,
    /// Threads that seal and open beside the two packet loops (crypto_pool); None: as many as
    /// the cores beyond the loops' two, at most 2.
    pub crypto_helpers: Option<usize>,
}

impl DeviceConfig {
    pub fn new(tun_name: &str, private_key: Arc<dyn StaticKey>) -> DeviceConfig {
        DeviceConfig {
            tun_name: tun_name.to_string(),
            private_key,
            listen_port: 0,
            fwmark: 0,
            peers: Vec::new(),
            offload: true,
            crypto_helpers: None,
        }
    }
}

/// State shared by the device's threads.
pub(crate) struct Shared {
    pub(crate) identity: Identity,
    pub(crate) tun: Tun,
    /// The TUN's MTU, refreshed by the timer thread: padding never goes beyond it (as the kernel
    /// and wireguard-go do), so a full-size packet still fits the underlay's MTU.
    pub(crate) mtu: AtomicUsize,
    /// The current UDP socket; `wg set IF listen-port` replaces it.
    pub(crate) udp: SocketSlot,
    pub(crate) index: IndexTable<Peer>,
    pub(crate) peers: RwLock<Peers>,
    pub(crate) cookies: CookieChecker,
    pub(crate) counters: Arc<Counters>,
    pub(crate) jobs: JobQueue,
    pub(crate) stop: AtomicBool,
    /// The TUN interface was deleted (`ip link del`, `wg-quick down`): the device is dead and
    /// its owner should stop it (see [`Device::tun_gone`]).
    pub(crate) tun_gone: AtomicBool,
    pub(crate) tun_waker: Waker,
    pub(crate) udp_waker: Waker,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Ask the handshake worker for an initiation to `state` (at most one queued per peer), for
    /// anything but a retry: the peer's retries start over (`Peer::handshake_wanted`).
    pub(crate) fn request_initiation(&self, state: &Arc<PeerState>) {
        state.peer.handshake_wanted();
        self.queue_initiation(state);
    }

    /// Queue an initiation to `state` unless one is queued already (a retry: the timers set
    /// `initiation_is_retry`).
    pub(crate) fn queue_initiation(&self, state: &Arc<PeerState>) {
        if !state.initiation_queued.swap(true, Ordering::AcqRel) {
            self.jobs
                .push_own(handshake::Job::Initiate(state.clone()), Instant::now());
        }
    }

    /// Ask the TUN thread to send what `state` has staged.
    pub(crate) fn request_flush(&self, state: &Arc<PeerState>) {
        state.flush_pending.store(true, Ordering::Release);
        self.tun_waker.wake();
    }

    pub(crate) fn peer_state(&self, public: &[u8; 32]) -> Option<Arc<PeerState>> {
        self.peers.read().by_key.get(public).cloned()
    }
}

/// A running WireGuard interface.
pub struct Device {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The TUN and UDP loops and their crypto helpers.
    data: Option<crypto_pool::DataPool>,
}

/// The body of one of the device's threads.
type LoopBody = fn(Arc<Shared>);

/// Run one of the device's loops until it returns. A bug that panics inside a loop must not
/// leave the interface half dead: the loop is logged, counted and restarted (with fresh
/// buffers) until the device stops.
fn run_loop(label: &str, shared: Arc<Shared>, body: LoopBody) {
    loop {
        let s = shared.clone();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || body(s))) {
            Ok(()) => return,
            Err(_) if shared.stopping() => return,
            Err(_) => {
                log::error!("{label}: the loop panicked; restarting it");
                shared
                    .counters
                    .loop_restarts
                    .fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Spawn one of the device's loops on a thread of its own.
fn thread(name: &str, shared: Arc<Shared>, body: LoopBody) -> io::Result<JoinHandle<()>> {
    let label = name.to_string();
    std::thread::Builder::new()
        .name(label.clone())
        .spawn(move || run_loop(&label, shared, body))
}

impl Device {
    /// Create the TUN and the socket, add the peers and start the threads.
    pub fn start(config: DeviceConfig) -> io::Result<Device> {
        // Secrets stay in RAM: no core dump, no ptrace or /proc/PID/mem by other users.
        if let Err(e) = crate::secret_mem::harden_process() {
            log::warn!("making the process non-dumpable: {e}");
        }
        let counters = Arc::new(Counters::default());
        let key: Arc<dyn StaticKey> = Arc::new(CountingKey {
            inner: config.private_key.clone(),
            shared_counters: counters.clone(),
        });
        let public_key = key.public_key();
        let tun = Tun::create(&config.tun_name, config.offload)?;
        let udp = UdpSocket::bind(config.listen_port, config.fwmark)?;
        // Rebinds (wg set listen-port) create their socket in this same namespace.
        let netns = netns::NetNamespace::current()
            .map_err(|e| log::warn!("the device's network namespace: {e}"))
            .ok();
        log::info!(
            "{}: listening on UDP port {} (GRO {}), TUN offload {} (USO {})",
            tun.name(),
            udp.port(),
            udp.gro(),
            tun.offload(),
            tun.uso()
        );
        let shared = Arc::new(Shared {
            identity: Identity::new(key),
            mtu: AtomicUsize::new(tun.mtu().map_or(DEFAULT_MTU, |m| m as usize)),
            tun,
            udp: SocketSlot::new(udp, netns),
            index: IndexTable::new(),
            peers: RwLock::new(Peers::default()),
            cookies: CookieChecker::new(&public_key),
            counters,
            jobs: JobQueue::new(),
            stop: AtomicBool::new(false),
            tun_gone: AtomicBool::new(false),
            tun_waker: Waker::new()?,
            udp_waker: Waker::new()?,
        });
        let mut device = Device {
            shared: shared.clone(),
            threads: Vec::new(),
            data: None,
        };
        for p in &config.peers {
            device.set_peer(p);
        }
        let data = crypto_pool::DataPool::start(
            &shared,
            [("wg-tun", send::run), ("wg-udp", receive::run)],
            config.crypto_helpers,
        )?;
        log::debug!(
            "{}: {} crypto helper thread(s) beside the packet loops",
            shared.tun.name(),
            data.helpers()
        );
        device.data = Some(data);
        let loops: [(&str, LoopBody); 2] =
            [("wg-handshake", handshake::run), ("wg-timers", timers::run)];
        for (name, body) in loops {
            device.threads.push(thread(name, shared.clone(), body)?);
        }
        Ok(device)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        self.shared.tun.name()
    }

    /// The UDP port actually bound.
    pub fn listen_port(&self) -> u16 {
        self.shared.udp.port()
    }

    /// Move to another UDP port at run time (0: any free port); returns the port bound.
    ///
    /// The new socket is bound first (with the current fwmark): if that fails (EADDRINUSE...)
    /// the current socket stays and the error is returned. Sessions are kept; a peer learns
    /// the new port from our next authenticated packet (roaming), as with the kernel's device.
    pub fn set_listen_port(&self, port: u16) -> io::Result<u16> {
        let shared = &self.shared;
        let bound = shared.udp.rebind(port, || {
            shared.udp_waker.wake();
            shared.tun_waker.wake();
        })?;
        log::info!("{}: listening on UDP port {bound}", shared.tun.name());
        // Tell every peer with a session at once (an authenticated keepalive from the new port
        // moves its endpoint for us), instead of leaving it to send to the old port until we
        // next have data for it.
        let now = Instant::now();
        let states: Vec<Arc<PeerState>> = shared.peers.read().by_key.values().cloned().collect();
        for state in &states {
            timers::send_keepalive(shared, state, now);
        }
        Ok(bound)
    }

    /// Our static public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.shared.identity.public_key()
    }

    /// The socket's fwmark (0: none).
    pub fn fwmark(&self) -> u32 {
        self.shared.udp.fwmark()
    }

    /// Change the socket's fwmark (SO_MARK) at run time; 0 removes it.
    pub fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        self.shared.udp.set_fwmark(mark)
    }

    /// True once the TUN interface was deleted under us: nothing can pass any more, and the
    /// daemon should go down (as wireguard-go does when its interface disappears).
    pub fn tun_gone(&self) -> bool {
        self.shared.tun_gone.load(Ordering::Acquire)
    }

    /// Whether the TUN runs with virtio-net headers and TSO/GRO.
    pub fn offload(&self) -> bool {
        self.shared.tun.offload()
    }

    /// Whether the TUN also takes UDP super-datagrams (USO, Linux 6.2+): received UDP is then
    /// coalesced before it is written to the TUN.
    pub fn uso(&self) -> bool {
        self.shared.tun.uso()
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.shared.counters.snapshot()
    }

    /// Stop the threads and close the TUN and socket (also done on drop).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.threads.is_empty() && self.data.is_none() {
            return;
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.tun_waker.wake();
        self.shared.udp_waker.wake();
        self.shared.jobs.wake_all();
        if let Some(mut data) = self.data.take() {
            data.join();
        }
        for t in self.threads.drain(..) {
            t.thread().unpark();
            let _ = t.join();
        }
        let keys: Vec<[u8; 32]> = self.shared.peers.read().by_key.keys().copied().collect();
        for k in keys {
            self.remove_peer(&k);
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How often the timer thread ticks.
pub(crate) const TIMER_TICK: Duration = Duration::from_millis(100);

/// The MTU assumed until the TUN reports its own (wg-quick's default).
const DEFAULT_MTU: usize = 1420;
