//! A handshake storm (issue 15): N boringtun peers, each on its own source address, all initiate
//! at once against a device whose key is in a virtual SE050 taking 300 ms per ECDH (the real
//! libpkcs11_se050.so, as `wg-pkcs11 up` uses it). Before the handshake queue dropped stale and
//! superseded initiations, half of 40 such peers never got a session: the daemon answered
//! initiations their senders had already replaced. Every peer must get a session, on both sides.
//!
//! Getting every session is not enough to show the queue at work: boringtun accepts a response
//! to its previous initiation, and its retries every REKEY_TIMEOUT bring every peer in at last
//! even through a one-place queue or without cookies. So the first test also checks, from the
//! peers' side and the device's counters, the three things the queue does in a storm: it answers
//! (almost) no initiation its sender had already replaced (stale ones dropped), it refuses no
//! initiation for want of room, and once the chip's backlog passes the load threshold it demands
//! cookies from the rest.
//!
//! Asserts protocol outcomes under generous deadlines, not speed; it prints the figures the
//! benchmark (`bench/run storm`) records. STORM_PEERS and STORM_LATENCY_MS change the size and
//! the chip's latency. Needs root and the module built (`cargo build -p pkcs11-se050`).

mod device_support;
mod virtual_se050_module;

/// The latency of this binary's virtual chip (`virtual_se050_module` configures it before main).
fn virtual_se050_latency_ms() -> u64 {
    env_or("STORM_LATENCY_MS", 300)
}

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use device_support::*;
use mock_instant::MockClock;
use virtual_se050_module::virtual_se050_module;
use wg_pkcs11::device::{DeviceConfig, DropReason, PeerConfig};
use wg_pkcs11::key::token::{genkey, TokenKey};
use wg_pkcs11::key::StaticKey;
use wg_pkcs11::uri::Pkcs11Uri;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The veth interface that carries `addr` in `ns`.
fn device_of(ns: &Netns, addr: &str) -> String {
    let out = ns.ip(&["-o", "addr", "show"]);
    let line = out
        .lines()
        .find(|l| l.contains(&format!(" {addr}/")))
        .unwrap_or_else(|| panic!("no interface with {addr}: {out}"));
    let dev = line.split_whitespace().nth(1).unwrap();
    dev.split('@').next().unwrap().to_string()
}

/// What the peers' side saw.
struct StormResult {
    peers: Vec<(Tunn, UdpSocket)>,
    /// When each peer had its session (from the start of the storm).
    established: Vec<Option<Duration>>,
    tally: Tally,
}

/// Messages the peers sent and received, as the storm's figures report them.
struct Tally {
    initiations_sent: u64,
    cookie_replies_received: u64,
    /// Each peer's newest initiation's sender index: a response names it as its receiver.
    newest_initiation: Vec<Option<[u8; 4]>>,
    /// Responses whose receiver index is not their peer's newest initiation: they answer one
    /// its sender had already replaced (boringtun still takes the one before, so this shows
    /// only here, not as a failed handshake).
    responses_to_replaced: u64,
}

impl Tally {
    fn new(peers: usize) -> Tally {
        Tally {
            initiations_sent: 0,
            cookie_replies_received: 0,
            newest_initiation: vec![None; peers],
            responses_to_replaced: 0,
        }
    }

    /// What peer `peer` received from the device, before its `Tunn` sees it.
    fn received(&mut self, peer: usize, pkt: &[u8]) {
        match pkt.first() {
            Some(3) => self.cookie_replies_received += 1,
            Some(2)
                if pkt.len() >= 12
                    && self.newest_initiation[peer] != Some(pkt[8..12].try_into().unwrap()) =>
            {
                self.responses_to_replaced += 1;
            }
            _ => {}
        }
    }
}

/// boringtun's clock in these tests is mock_instant's, per thread: advanced with the real time
/// by the thread that drives the `Tunn`s.
struct PeerClock {
    last: Instant,
}

impl PeerClock {
    fn start() -> PeerClock {
        PeerClock {
            last: Instant::now(),
        }
    }

    fn advance(&mut self) {
        let now = Instant::now();
        MockClock::advance(now - self.last);
        self.last = now;
    }
}

/// Send `pkt` from peer `peer` to the device, noting it if it is an initiation.
fn send(peer: usize, sock: &UdpSocket, pkt: &[u8], device: SocketAddr, tally: &mut Tally) {
    if pkt.first() == Some(&1) && pkt.len() >= 8 {
        tally.initiations_sent += 1;
        tally.newest_initiation[peer] = Some(pkt[4..8].try_into().unwrap());
    }
    sock.send_to(pkt, device).unwrap();
}

/// Every peer sends an initiation at once (`force`: even if it has a session).
fn initiate_all(
    peers: &mut [(Tunn, UdpSocket)],
    device: SocketAddr,
    force: bool,
    tally: &mut Tally,
) {
    let mut out = vec![0u8; 2048];
    for (i, (tunn, sock)) in peers.iter_mut().enumerate() {
        if let TunnResult::WriteToNetwork(p) = tunn.format_handshake_initiation(&mut out, force) {
            send(i, sock, p, device, tally);
        }
    }
}

/// One round for peer `peer`: what the device sent it goes through its `Tunn`, the answers go
/// back, then its timers run (a retry or a rekey).
fn serve(peer: usize, tunn: &mut Tunn, sock: &UdpSocket, device: SocketAddr, tally: &mut Tally) {
    let (mut buf, mut out) = (vec![0u8; 2048], vec![0u8; 2048]);
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        tally.received(peer, &buf[..n]);
        let mut r = tunn.decapsulate(Some(from.ip()), &buf[..n], &mut out);
        while let TunnResult::WriteToNetwork(p) = r {
            send(peer, sock, p, device, tally);
            r = tunn.decapsulate(None, &[], &mut out);
        }
    }
    if let TunnResult::WriteToNetwork(p) = tunn.update_timers(&mut out) {
        send(peer, sock, p, device, tally);
    }
}

/// Drive every `Tunn` from one thread until all have a session or `deadline` passes.
fn run_storm(
    mut peers: Vec<(Tunn, UdpSocket)>,
    device: SocketAddr,
    deadline: Duration,
) -> StormResult {
    let start = Instant::now();
    let mut clock = PeerClock::start();
    let mut tally = Tally::new(peers.len());
    let mut established = vec![None; peers.len()];
    initiate_all(&mut peers, device, false, &mut tally);
    while start.elapsed() < deadline && established.iter().any(Option::is_none) {
        clock.advance();
        for (i, (tunn, sock)) in peers.iter_mut().enumerate() {
            serve(i, tunn, sock, device, &mut tally);
            if established[i].is_none() && tunn.time_since_last_handshake().is_some() {
                established[i] = Some(start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    StormResult {
        peers,
        established,
        tally,
    }
}

/// The peers whose `established` is still `None`.
fn without_session(established: &[Option<Duration>]) -> Vec<usize> {
    (0..established.len())
        .filter(|&i| established[i].is_none())
        .collect()
}

/// The peers' side of a storm: their boringtun secrets, their source addresses (one each, then
/// the flooders'), and where they find the device. Moved into the thread that drives them.
struct Peers {
    secrets: Vec<x25519::StaticSecret>,
    sources: Vec<IpAddr>,
    a_pub: [u8; 32],
    device: SocketAddr,
}

impl Peers {
    /// A `Tunn` and a socket on its own source address for each peer (in the calling thread's
    /// namespace).
    fn tunnels(self) -> Vec<(Tunn, UdpSocket)> {
        let a_pub = self.a_pub;
        self.secrets
            .into_iter()
            .zip(self.sources)
            .enumerate()
            .map(|(i, (secret, src))| {
                let sock = UdpSocket::bind((src, 0)).unwrap();
                sock.set_nonblocking(true).unwrap();
                let tunn = Tunn::new(
                    secret,
                    x25519::PublicKey::from(a_pub),
                    None,
                    None,
                    i as u32 + 1,
                    None,
                );
                (tunn, sock)
            })
            .collect()
    }
}

/// A device in its own namespace with `n` peers, and `n + extra` source addresses added to the
/// other namespace's veth (the last `extra` for flooders).
struct Setup {
    _chip: std::sync::MutexGuard<'static, ()>,
    pair: Pair,
    a: wg_pkcs11::device::Device,
    peers: Peers,
    n: usize,
    latency_ms: u64,
}

impl Setup {
    /// How long the peers get: `base_secs`, plus six chip operations per peer.
    fn deadline(&self, base_secs: u64) -> Duration {
        Duration::from_secs(base_secs)
            + Duration::from_millis(self.latency_ms) * (self.n as u32) * 6
    }
}

fn setup(label: &str, n: usize, extra: usize) -> Setup {
    // The tests share one virtual chip, which serves one operation at a time: one test at once.
    static CHIP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = CHIP.lock().unwrap_or_else(|e| e.into_inner());
    let latency_ms = virtual_se050_latency_ms();
    let module = virtual_se050_module(latency_ms);
    let uri = Pkcs11Uri::parse(&format!(
        "pkcs11:token=SE050;object={label}?module-path={}",
        module.display()
    ))
    .unwrap();
    genkey(&uri).unwrap();
    let key: Arc<dyn StaticKey> = Arc::new(TokenKey::open(&uri).unwrap());
    let a_pub = key.public_key();

    let pair = Pair::new();
    let vb = device_of(&pair.b, &pair.b_addr);
    let prefix = pair.b_addr.rsplit_once('.').unwrap().0.to_string();
    let sources: Vec<IpAddr> = (0..n + extra)
        .map(|i| format!("{prefix}.{}", 10 + i).parse().unwrap())
        .collect();
    for s in &sources {
        pair.b.ip(&["addr", "add", &format!("{s}/24"), "dev", &vb]);
    }
    let secrets: Vec<x25519::StaticSecret> = (0..n)
        .map(|_| x25519::StaticSecret::random_from_rng(rand_core::OsRng))
        .collect();
    let port = 44000 + (std::process::id() % 10000) as u16;
    let mut config = DeviceConfig::new(&unique("wgst"), key);
    config.listen_port = port;
    for (i, s) in secrets.iter().enumerate() {
        config.peers.push(PeerConfig {
            public_key: x25519::PublicKey::from(s).to_bytes(),
            preshared_key: None,
            endpoint: None,
            allowed_ips: vec![(
                format!("10.77.{}.{}", i / 200, i % 200 + 2)
                    .parse()
                    .unwrap(),
                32,
            )],
            persistent_keepalive: 0,
        });
    }
    let a = start_device(&pair.a, config, "10.77.0.1/16", "fd77::1/64");
    let device: SocketAddr = format!("{}:{port}", pair.a_addr).parse().unwrap();
    // The per-peer static-static DHs run while the worker is idle (one each); the storm
    // starts after them, as against a daemon that has been up for a moment.
    let precompute = (Duration::from_millis(latency_ms) * n as u32) * 3 + Duration::from_secs(30);
    assert!(
        wait_for(precompute.as_secs(), || a.counters().token_operations
            >= n as u64),
        "static-static precompute: {:?}",
        a.counters()
    );
    Setup {
        _chip: guard,
        pair,
        a,
        peers: Peers {
            secrets,
            sources,
            a_pub,
            device,
        },
        n,
        latency_ms,
    }
}

#[test]
fn every_peer_of_a_storm_on_distinct_addresses_gets_a_session_with_a_slow_chip() {
    let n = env_or("STORM_PEERS", 30) as usize;
    assert!((1..=200).contains(&n), "STORM_PEERS 1..=200");
    let s = setup("wg-storm", n, 0);
    let deadline = s.deadline(30);
    let (a, latency_ms, peers) = (&s.a, s.latency_ms, s.peers);
    let before = a.counters();
    let device = peers.device;
    let result = s
        .pair
        .b
        .enter(move || run_storm(peers.tunnels(), device, deadline));
    // The device's side: every session confirmed by the peer's first message.
    let confirmed = wait_for(10, || {
        a.counters().sessions_confirmed - before.sessions_confirmed >= n as u64
    });
    let after = a.counters();
    let up: Vec<Duration> = result.established.iter().flatten().copied().collect();
    let all_up = up.iter().max().copied().unwrap_or_default();
    let chip_ops = after.token_operations - before.token_operations;
    let handshakes = after.handshakes() - before.handshakes();
    let per_handshake = chip_ops as f64 / handshakes.max(1) as f64;
    let cookies = result.tally.cookie_replies_received;
    let late = result.tally.responses_to_replaced;
    let queue_full = after.dropped(DropReason::QueueFull) - before.dropped(DropReason::QueueFull);
    println!(
        "STORM peers={n} latency_ms={latency_ms} up={}/{n} all_up_s={:.2} chip_ops={chip_ops} \
         handshakes={handshakes} chip_ops_per_handshake={per_handshake:.2} initiations_sent={} \
         cookie_replies={cookies} stale_dropped={} replayed_dropped={} responses_sent={} \
         responses_to_replaced={late} queue_full={queue_full}",
        up.len(),
        all_up.as_secs_f64(),
        result.tally.initiations_sent,
        after.dropped(DropReason::Stale) - before.dropped(DropReason::Stale),
        after.dropped(DropReason::Replayed) - before.dropped(DropReason::Replayed),
        after.responses_sent - before.responses_sent,
    );
    assert_eq!(
        up.len(),
        n,
        "peers without a session after {deadline:?}: {:?}",
        without_session(&result.established)
    );
    assert!(
        confirmed,
        "the device confirmed {} of {n} sessions: {after:?}",
        after.sessions_confirmed - before.sessions_confirmed
    );
    // Responses answer initiations their senders still wait for: an initiation that waited so
    // long that its sender retried is dropped unanswered. (Answering them, as a FIFO queue did,
    // sent 12 of 41 responses to replaced initiations here, 167 of 187 against wireguard-go
    // peers in the issue.) The slack covers a chip operation slower than the queue's estimate
    // on a loaded machine.
    assert!(
        late <= 1 + n as u64 / 15,
        "{late} responses answered initiations their sender had already replaced"
    );
    // The lane holds a whole storm: no initiation is refused for want of room (a queue cut
    // short refuses most, and the peers get in only through their retries).
    assert_eq!(queue_full, 0, "initiations refused by a full queue");
    // All initiate at once: once the waiting ones are a second of chip work (the load
    // threshold, about 1000 / latency_ms of them), the rest get a cookie reply instead of a
    // place. Half the expected count: messages the worker took while the storm arrived, and a
    // chip time measured longer on a loaded machine, admit a few more.
    let admitted_before_load = 1000u64.div_ceil(latency_ms.max(1)) + 1;
    let expected_cookies = (n as u64).saturating_sub(admitted_before_load) / 2;
    assert!(
        cookies >= expected_cookies,
        "{cookies} cookie replies for {n} simultaneous initiations (at least {expected_cookies})"
    );
    // Every completed handshake cost the responder's one ECDH; none was spent on a replay.
    assert!(
        chip_ops >= handshakes,
        "{chip_ops} chip operations for {handshakes} handshakes"
    );
    assert_eq!(
        after.dropped(DropReason::Replayed),
        before.dropped(DropReason::Replayed)
    );
    assert_eq!(after.loop_restarts, 0);
}

/// An initiation (type 1) whose sender index, ephemeral, static and timestamp are garbage from
/// the xorshift state `x`; its macs are the caller's.
fn garbage_initiation(init: &mut [u8], x: &mut u64) {
    init[0] = 1;
    for b in init[4..116].iter_mut() {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *b = *x as u8;
    }
}

/// A flooder that owns its address: initiations with a valid mac1 and garbage inside from
/// several ports of one address, at the per-address limit (20 a second), answering every
/// cookie reply so that its mac2 is valid under load, as a real attacker's peer would.
fn flood(src: IpAddr, a_pub: [u8; 32], device: SocketAddr, stop: &AtomicBool) -> u64 {
    use wg_pkcs11::cookie::CookieState;
    let socks: Vec<UdpSocket> = (0..8)
        .map(|_| {
            let s = UdpSocket::bind((src, 0)).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let mut cookies: Vec<CookieState> = socks.iter().map(|_| CookieState::new(&a_pub)).collect();
    let mut sent = 0u64;
    let mut buf = [0u8; 256];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(src.to_string().len() as u32);
    while !stop.load(Ordering::Relaxed) {
        let i = (sent % socks.len() as u64) as usize;
        while let Ok((n, _)) = socks[i].recv_from(&mut buf) {
            if n == 64 && buf[0] == 3 {
                let _ = cookies[i].consume_cookie_reply(&buf[..64], Instant::now());
            }
        }
        let mut init = [0u8; 148];
        garbage_initiation(&mut init, &mut x);
        cookies[i].add_macs(&mut init, Instant::now());
        let _ = socks[i].send_to(&init, device);
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    sent
}

/// Issue 15's flood: legitimate peers rekey while two addresses flood at their per-address
/// limit and answer cookie replies. Every rekey completes (the benchmark reports how fast,
/// against 2 x REKEY_TIMEOUT); the flood costs chip operations only at the bounded rate.
#[test]
fn legitimate_rekeys_complete_under_a_cookie_answering_flood() {
    let n = env_or("FLOOD_PEERS", 10) as usize;
    let s = setup("wg-flood", n, 2);
    let deadline = s.deadline(60);
    let (a, latency_ms, peers) = (&s.a, s.latency_ms, s.peers);
    let flooders = [peers.sources[n], peers.sources[n + 1]];
    let before = a.counters();
    let (rekeys, floods) = s.pair.b.enter(move || {
        let (a_pub, device) = (peers.a_pub, peers.device);
        // Sessions first, without the flood.
        let up = run_storm(peers.tunnels(), device, deadline);
        assert!(
            up.established.iter().all(Option::is_some),
            "initial sessions"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let flood_threads: Vec<_> = flooders
            .into_iter()
            .map(|src| {
                let stop = stop.clone();
                std::thread::spawn(move || flood(src, a_pub, device, &stop))
            })
            .collect();
        // (Flooder threads are spawned from this thread: they are in this namespace too.)
        std::thread::sleep(Duration::from_secs(2));
        let rekeys = rekey_all(up.peers, device, deadline);
        stop.store(true, Ordering::Relaxed);
        let floods: Vec<u64> = flood_threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        (rekeys, floods)
    });
    let after = a.counters();
    let done: Vec<Duration> = rekeys.iter().flatten().copied().collect();
    let slowest = done.iter().max().copied().unwrap_or_default();
    println!(
        "FLOOD peers={n} latency_ms={latency_ms} rekeyed={}/{n} slowest_rekey_s={:.2} \
         flood_initiations={} cookie_replies_sent={} rate_limited={} chip_ops={} handshakes={}",
        done.len(),
        slowest.as_secs_f64(),
        floods.iter().sum::<u64>(),
        after.cookie_replies_sent - before.cookie_replies_sent,
        after.dropped(DropReason::RateLimited) - before.dropped(DropReason::RateLimited),
        after.token_operations - before.token_operations,
        after.handshakes() - before.handshakes(),
    );
    assert_eq!(done.len(), n, "rekeys that never completed: {rekeys:?}");
    assert_eq!(after.loop_restarts, 0);
}

/// Every peer starts a new handshake at once; when did each complete (from its start)?
fn rekey_all(
    mut peers: Vec<(Tunn, UdpSocket)>,
    device: SocketAddr,
    deadline: Duration,
) -> Vec<Option<Duration>> {
    let start = Instant::now();
    let mut clock = PeerClock::start();
    let mut tally = Tally::new(peers.len());
    initiate_all(&mut peers, device, true, &mut tally);
    let mut done = vec![None; peers.len()];
    while start.elapsed() < deadline && done.iter().any(Option::is_none) {
        clock.advance();
        for (i, (tunn, sock)) in peers.iter_mut().enumerate() {
            serve(i, tunn, sock, device, &mut tally);
            if done[i].is_none()
                && tunn
                    .time_since_last_handshake()
                    .is_some_and(|t| t < start.elapsed())
            {
                done[i] = Some(start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    done
}

/// A blind spoofer: garbage initiations with a valid mac1 from `from` (another's address and
/// port) through a raw socket bound to that address, `per_second` of them, until `stop`.
/// Receives nothing (a raw UDP socket does not take the datagrams of the port it imitates).
fn spoof(from: SocketAddr, to: SocketAddr, a_pub: [u8; 32], per_second: u64, stop: &AtomicBool) {
    use wg_pkcs11::cookie::CookieState;
    let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
        panic!("IPv4 only");
    };
    // SAFETY: plain socket(2); owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP) };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just opened and is owned from here on.
    let _owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let sockaddr = |ip: std::net::Ipv4Addr| {
        // SAFETY: sockaddr_in is plain old data; zero is valid.
        let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_addr.s_addr = u32::from(ip).to_be();
        a
    };
    let (src, dst) = (sockaddr(*from.ip()), sockaddr(*to.ip()));
    let len = std::mem::size_of::<libc::sockaddr_in>() as u32;
    // SAFETY: src is a valid sockaddr_in: the kernel's IP header carries this source.
    let r = unsafe { libc::bind(fd, (&src as *const libc::sockaddr_in).cast(), len) };
    assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
    let mut cookie = CookieState::new(&a_pub);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    while !stop.load(Ordering::Relaxed) {
        let mut datagram = [0u8; 8 + 148];
        datagram[0..2].copy_from_slice(&from.port().to_be_bytes());
        datagram[2..4].copy_from_slice(&to.port().to_be_bytes());
        datagram[4..6].copy_from_slice(&(8u16 + 148).to_be_bytes());
        let init = &mut datagram[8..];
        garbage_initiation(init, &mut x);
        cookie.add_macs(init, Instant::now());
        // SAFETY: buffer and address live across the call, their sizes given.
        let n = unsafe {
            libc::sendto(
                fd,
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                (&dst as *const libc::sockaddr_in).cast(),
                len,
            )
        };
        assert!(n >= 0, "raw send: {}", std::io::Error::last_os_error());
        std::thread::sleep(Duration::from_millis(1000 / per_second));
    }
}

/// Issue 20, with many peers: a blind spoofer impersonates one of N peers on distinct addresses
/// (its address and port, 15 garbage initiations a second) during their storm. The spoofer's
/// garbage never displaces a queued initiation and soon needs a cookie it never sees: every
/// peer, the impersonated one included, gets its session, and the garbage costs the chip a
/// bounded number of operations (the queue's waste budget: a few, then one per REKEY_TIMEOUT).
#[test]
fn every_peer_of_a_storm_gets_a_session_while_a_blind_spoofer_impersonates_one() {
    let n = env_or("STORM_PEERS", 10) as usize;
    let s = setup("wg-spoofed-storm", n, 0);
    let deadline = s.deadline(30);
    let (a, latency_ms, peers) = (&s.a, s.latency_ms, s.peers);
    let before = a.counters();
    let started = Instant::now();
    let result = s.pair.b.enter(move || {
        let (a_pub, device) = (peers.a_pub, peers.device);
        let peers = peers.tunnels();
        let victim = peers[0].1.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let spoofer = {
            let stop = stop.clone();
            std::thread::spawn(move || spoof(victim, device, a_pub, 15, &stop))
        };
        let result = run_storm(peers, device, deadline);
        stop.store(true, Ordering::Relaxed);
        spoofer.join().unwrap();
        result
    });
    let spoofed_for = started.elapsed();
    let after = a.counters();
    let garbage_ops = after.dropped(DropReason::Handshake) - before.dropped(DropReason::Handshake);
    let up: Vec<Duration> = result.established.iter().flatten().copied().collect();
    println!(
        "SPOOFED STORM peers={n} latency_ms={latency_ms} up={}/{n} victim_up_s={:?} \
         all_up_s={:.2} chip_ops={} garbage_ops={garbage_ops} spoofed_for_s={:.1} cookies={}",
        up.len(),
        result.established[0].map(|d| d.as_secs_f64()),
        up.iter().max().copied().unwrap_or_default().as_secs_f64(),
        after.token_operations - before.token_operations,
        spoofed_for.as_secs_f64(),
        after.cookie_replies_sent - before.cookie_replies_sent,
    );
    assert_eq!(
        up.len(),
        n,
        "peers without a session after {deadline:?}: {:?}",
        result.established
    );
    // The waste budget (3, then one per REKEY_TIMEOUT) plus what the queue held before load
    // set in (at most 4 places per address).
    let bound = 3 + 4 + spoofed_for.as_secs() / 5 + 1;
    assert!(
        garbage_ops <= bound,
        "{garbage_ops} chip operations on garbage in {spoofed_for:?} (at most {bound})"
    );
    assert_eq!(after.loop_restarts, 0);
}
