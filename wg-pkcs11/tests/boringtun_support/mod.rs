//! The shared harness of the boringtun interop tests: a minimal single-threaded device around
//! the protocol core (`Ours`, following the receive and send paths of PROTOCOL_API.md) whose
//! static key counts its Diffie-Hellman operations, and boringtun's `Tunn` (`Theirs`).
#![allow(dead_code)] // each test file uses part of it

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519;
use wg_pkcs11::allowedips::AllowedIps;
use wg_pkcs11::cookie::CookieChecker;
use wg_pkcs11::key::{KeyError, SoftKey, StaticKey};
use wg_pkcs11::noise::{
    self, consume_initiation, message_type, receiver_index, HandshakeError, Identity, IndexTable,
    MessageType,
};
use wg_pkcs11::peer::Peer;
use zeroize::Zeroizing;

/// A static key (software or token) that counts its Diffie-Hellman operations.
pub struct CountingKey {
    pub inner: Arc<dyn StaticKey>,
    pub count: AtomicUsize,
}

impl StaticKey for CountingKey {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn diffie_hellman(&self, p: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.inner.diffie_hellman(p)
    }
}

/// What our side did with a received datagram.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Send this datagram back to the sender.
    Reply(Vec<u8>),
    /// A decrypted IP packet for the TUN device.
    Packet(Vec<u8>),
    Keepalive,
    /// Silently dropped, with the reason (counted by a real device).
    Dropped(String),
    /// Handled, nothing to send (cookie reply consumed).
    Consumed,
}

/// A minimal device around the protocol core: one peer, one index table, one clock.
pub struct Ours {
    pub key: Arc<CountingKey>,
    pub id: Identity,
    pub table: IndexTable<Peer>,
    pub checker: CookieChecker,
    pub allowed: AllowedIps<Arc<Peer>>,
    pub peer: Arc<Peer>,
    pub under_load: bool,
    pub addr: SocketAddr,
    pub peer_addr: SocketAddr,
}

impl Ours {
    pub fn new(peer_public: [u8; 32], psk: Option<[u8; 32]>, now: Instant) -> Ours {
        Ours::with_key(Arc::new(SoftKey::generate()), peer_public, psk, now)
    }

    /// Our side with `key` (a token key, say) as its static key, counted.
    pub fn with_key(
        key: Arc<dyn StaticKey>,
        peer_public: [u8; 32],
        psk: Option<[u8; 32]>,
        now: Instant,
    ) -> Ours {
        let key = Arc::new(CountingKey {
            inner: key,
            count: AtomicUsize::new(0),
        });
        let id = Identity::new(key.clone());
        let peer_addr: SocketAddr = "[2001:db8::2]:51820".parse().unwrap();
        let peer = Peer::new(peer_public, psk, Some(peer_addr), 0, now);
        let mut allowed = AllowedIps::new();
        allowed.insert(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 32, peer.clone());
        allowed.insert("fd00::2".parse().unwrap(), 128, peer.clone());
        Ours {
            checker: CookieChecker::new(&id.public_key()),
            key,
            id,
            table: IndexTable::new(),
            allowed,
            peer,
            under_load: false,
            addr: "192.0.2.1:51820".parse().unwrap(),
            peer_addr,
        }
    }

    pub fn dh_count(&self) -> usize {
        self.key.count.load(Ordering::SeqCst)
    }

    pub fn initiation(&self, now: Instant) -> Vec<u8> {
        self.peer
            .create_initiation(&self.id, &self.table, false, now)
            .unwrap()
            .to_vec()
    }

    /// The receive path of PROTOCOL_API.md.
    pub fn receive(&self, pkt: &[u8], src: SocketAddr, now: Instant) -> Outcome {
        let dropped = |why: String| Outcome::Dropped(why);
        match message_type(pkt) {
            None => dropped("not a WireGuard message".into()),
            Some(t @ (MessageType::Initiation | MessageType::Response)) => {
                if !self.checker.check_mac1(pkt) {
                    return dropped("bad mac1".into());
                }
                if self.under_load && !self.checker.check_mac2(pkt, src, now) {
                    return Outcome::Reply(
                        self.checker
                            .create_cookie_reply(pkt, src, now)
                            .unwrap()
                            .to_vec(),
                    );
                }
                if t == MessageType::Initiation {
                    let rx = match consume_initiation(&self.id, pkt) {
                        Ok(rx) => rx,
                        Err(e) => return dropped(e.to_string()),
                    };
                    if rx.initiator_public() != self.peer.public_key() {
                        return dropped(HandshakeError::UnknownPeer.to_string());
                    }
                    match self
                        .peer
                        .accept_initiation(&self.id, &self.table, rx, src, now)
                    {
                        Ok(resp) => Outcome::Reply(resp.to_vec()),
                        Err(e) => dropped(e.to_string()),
                    }
                } else {
                    let Some(peer) = self.table.get(receiver_index(pkt).unwrap()) else {
                        return dropped("unknown receiver index".into());
                    };
                    match peer.consume_response(&self.id, &self.table, pkt, src, now) {
                        // Confirm the session at once: a keepalive (no packets are queued here).
                        Ok(()) => Outcome::Reply(self.keepalive(now).unwrap()),
                        Err(e) => dropped(e.to_string()),
                    }
                }
            }
            Some(MessageType::CookieReply) => {
                let Some(peer) = self.table.get(receiver_index(pkt).unwrap()) else {
                    return dropped("unknown receiver index".into());
                };
                match peer.consume_cookie_reply(pkt, now) {
                    Ok(()) => Outcome::Consumed,
                    Err(e) => dropped(e.to_string()),
                }
            }
            Some(MessageType::Transport) => {
                let index = receiver_index(pkt).unwrap();
                let Some(peer) = self.table.get(index) else {
                    return dropped("unknown receiver index".into());
                };
                let Some(kp) = peer.keypair_for_index(index) else {
                    return dropped("no session for index".into());
                };
                let mut buf = pkt.to_vec();
                let n = match kp.decrypt(&mut buf, now) {
                    Ok(n) => n,
                    Err(e) => return dropped(e.to_string()),
                };
                peer.received_transport(&kp, src, pkt.len(), n == 0, now);
                if n == 0 {
                    return Outcome::Keepalive;
                }
                let plain = &buf[16..16 + n];
                let (len, source) = match plain[0] >> 4 {
                    4 if n >= 20 => (
                        u16::from_be_bytes([plain[2], plain[3]]) as usize,
                        IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&plain[12..16]).unwrap())),
                    ),
                    6 if n >= 40 => (
                        40 + u16::from_be_bytes([plain[4], plain[5]]) as usize,
                        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&plain[8..24]).unwrap())),
                    ),
                    _ => return dropped("not an IP packet".into()),
                };
                if len > n {
                    return dropped("IP length beyond the message".into());
                }
                match self.allowed.lookup(source) {
                    Some(p) if Arc::ptr_eq(p, &peer) => Outcome::Packet(plain[..len].to_vec()),
                    _ => dropped("source not in the peer's AllowedIPs".into()),
                }
            }
        }
    }

    /// The send path: an IP packet (or a keepalive) into a transport message.
    pub fn send(&self, packet: &[u8], now: Instant) -> Option<Vec<u8>> {
        let kp = self.peer.current_keypair(now)?;
        let mut buf = vec![0u8; packet.len() + 48];
        buf[16..16 + packet.len()].copy_from_slice(packet);
        let len = kp.encrypt(&mut buf, packet.len(), now).unwrap();
        buf.truncate(len);
        self.peer.sent_transport(&kp, len, packet.is_empty(), now);
        Some(buf)
    }

    pub fn keepalive(&self, now: Instant) -> Option<Vec<u8>> {
        self.send(&[], now)
    }
}

/// boringtun's side: its Tunn, with our public key as its peer.
pub struct Theirs {
    pub tunn: Tunn,
}

impl Theirs {
    pub fn connect(
        secret: x25519::StaticSecret,
        our_public: [u8; 32],
        psk: Option<[u8; 32]>,
        rate_limit: Option<u64>,
    ) -> Theirs {
        let public = x25519::PublicKey::from(&secret);
        let limiter = rate_limit.map(|l| Arc::new(RateLimiter::new(&public, l)));
        Theirs {
            tunn: Tunn::new(
                secret,
                x25519::PublicKey::from(our_public),
                psk,
                None,
                7,
                limiter,
            ),
        }
    }

    /// Feed a datagram to boringtun; collect everything it writes (network and tunnel), including
    /// the packets it flushes from its queue afterwards.
    pub fn receive(&mut self, src: IpAddr, pkt: &[u8]) -> Vec<BtOut> {
        let mut out = Vec::new();
        let mut dst = vec![0u8; 2048];
        let mut input = pkt;
        loop {
            match BtOut::from(self.tunn.decapsulate(Some(src), input, &mut dst)) {
                BtOut::Network(v) => out.push(BtOut::Network(v)),
                // `Done` after datagrams only means the queue is empty.
                BtOut::Done if !out.is_empty() => break,
                other => {
                    out.push(other);
                    break;
                }
            }
            input = &[];
        }
        out
    }

    pub fn send(&mut self, packet: &[u8]) -> BtOut {
        let mut dst = vec![0u8; 2048];
        BtOut::from(self.tunn.encapsulate(packet, &mut dst))
    }

    pub fn initiation(&mut self, force: bool) -> Vec<u8> {
        let mut dst = vec![0u8; 256];
        match BtOut::from(self.tunn.format_handshake_initiation(&mut dst, force)) {
            BtOut::Network(v) => v,
            other => panic!("boringtun made no initiation: {other:?}"),
        }
    }

    pub fn timers(&mut self) -> BtOut {
        let mut dst = vec![0u8; 2048];
        BtOut::from(self.tunn.update_timers(&mut dst))
    }
}

#[derive(Debug, PartialEq)]
pub enum BtOut {
    Done,
    Err(String),
    Network(Vec<u8>),
    Tunnel(Vec<u8>, IpAddr),
}

impl From<TunnResult<'_>> for BtOut {
    fn from(r: TunnResult<'_>) -> Self {
        match r {
            TunnResult::Done => BtOut::Done,
            TunnResult::Err(e) => BtOut::Err(format!("{e:?}")),
            TunnResult::WriteToNetwork(b) => BtOut::Network(b.to_vec()),
            TunnResult::WriteToTunnelV4(b, a) => BtOut::Tunnel(b.to_vec(), a.into()),
            TunnResult::WriteToTunnelV6(b, a) => BtOut::Tunnel(b.to_vec(), a.into()),
        }
    }
}

pub fn ipv4_packet(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![
        0x60,
        0,
        0,
        0,
        (payload.len() >> 8) as u8,
        payload.len() as u8,
        17,
        64,
    ];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// Both sides, keyed to each other.
pub fn setup(psk: Option<[u8; 32]>, their_rate_limit: Option<u64>) -> (Ours, Theirs, Instant) {
    let now = Instant::now();
    let secret = x25519::StaticSecret::random_from_rng(rand_core::OsRng);
    let ours = Ours::new(x25519::PublicKey::from(&secret).to_bytes(), psk, now);
    let theirs = Theirs::connect(secret, ours.id.public_key(), psk, their_rate_limit);
    (ours, theirs, now)
}

pub fn single_network(out: Vec<BtOut>) -> Vec<u8> {
    match out.as_slice() {
        [BtOut::Network(v), ..] => v.clone(),
        other => panic!("expected a datagram from boringtun, got {other:?}"),
    }
}

/// We initiate; returns after the session is confirmed on both sides.
pub fn handshake_we_initiate(ours: &Ours, theirs: &mut Theirs, now: Instant) {
    let init = ours.initiation(now);
    assert_eq!(init.len(), noise::INITIATION_LEN);
    let resp = single_network(theirs.receive(ours.addr.ip(), &init));
    assert_eq!(resp.len(), noise::RESPONSE_LEN);
    let Outcome::Reply(keepalive) = ours.receive(&resp, ours.peer_addr, now) else {
        panic!("our side refused boringtun's response")
    };
    assert_eq!(keepalive.len(), 32);
    assert_eq!(
        theirs.receive(ours.addr.ip(), &keepalive),
        vec![BtOut::Done]
    );
}

/// boringtun initiates; returns after the session is confirmed on both sides.
pub fn handshake_they_initiate(ours: &Ours, theirs: &mut Theirs, now: Instant) {
    let init = theirs.initiation(true);
    let Outcome::Reply(resp) = ours.receive(&init, ours.peer_addr, now) else {
        panic!("our side refused boringtun's initiation")
    };
    let keepalive = single_network(theirs.receive(ours.addr.ip(), &resp));
    assert_eq!(
        ours.receive(&keepalive, ours.peer_addr, now),
        Outcome::Keepalive
    );
}

/// Data both ways, IPv4 and IPv6.
pub fn exchange_data(ours: &Ours, theirs: &mut Theirs, now: Instant, tag: &str) {
    let v4 = ipv4_packet(
        [10, 0, 0, 1],
        [10, 0, 0, 2],
        format!("ours->theirs v4 {tag}").as_bytes(),
    );
    let msg = ours.send(&v4, now).expect("we have a session");
    assert_eq!(msg.len() % 16, 0, "padded to 16");
    assert_eq!(
        theirs.receive(ours.addr.ip(), &msg),
        vec![BtOut::Tunnel(
            v4.clone(),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
        )]
    );
    let v6 = ipv6_packet(
        "fd00::1".parse().unwrap(),
        "fd00::2".parse().unwrap(),
        format!("ours->theirs v6 {tag}").as_bytes(),
    );
    let msg = ours.send(&v6, now).unwrap();
    assert_eq!(
        theirs.receive(ours.addr.ip(), &msg),
        vec![BtOut::Tunnel(v6, "fd00::1".parse().unwrap())]
    );

    let v4 = ipv4_packet(
        [10, 0, 0, 2],
        [10, 0, 0, 1],
        format!("theirs->ours v4 {tag}").as_bytes(),
    );
    let BtOut::Network(msg) = theirs.send(&v4) else {
        panic!("boringtun has no session")
    };
    assert_eq!(ours.receive(&msg, ours.peer_addr, now), Outcome::Packet(v4));
    let v6 = ipv6_packet(
        "fd00::2".parse().unwrap(),
        "fd00::1".parse().unwrap(),
        &vec![0xab; 1300],
    );
    let BtOut::Network(msg) = theirs.send(&v6) else {
        panic!("boringtun has no session")
    };
    assert_eq!(ours.receive(&msg, ours.peer_addr, now), Outcome::Packet(v6));
}

/// A software key whose Diffie-Hellman can be held back, like a token busy for as long as a test
/// wants: while `hold()` is in force every DH waits until `release()` (or fails after 10 s, so a
/// test whose other thread is wrongly stuck behind the key fails instead of hanging).
pub struct GatedKey {
    inner: SoftKey,
    held: std::sync::Mutex<bool>,
    changed: std::sync::Condvar,
    pub waiting: std::sync::atomic::AtomicBool,
}

impl GatedKey {
    pub fn new() -> GatedKey {
        GatedKey {
            inner: SoftKey::generate(),
            held: std::sync::Mutex::new(false),
            changed: std::sync::Condvar::new(),
            waiting: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn hold(&self) {
        *self.held.lock().unwrap() = true;
    }

    pub fn release(&self) {
        *self.held.lock().unwrap() = false;
        self.changed.notify_all();
    }
}

impl StaticKey for GatedKey {
    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }
    fn diffie_hellman(&self, p: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let held = self.held.lock().unwrap();
        self.waiting.store(true, Ordering::SeqCst);
        let (held, timeout) = self
            .changed
            .wait_timeout_while(held, std::time::Duration::from_secs(10), |h| *h)
            .unwrap();
        drop(held);
        self.waiting.store(false, Ordering::SeqCst);
        if timeout.timed_out() {
            return Err(KeyError::Token("held for 10 s: the test is stuck".into()));
        }
        self.inner.diffie_hellman(p)
    }
}
