//! The receive path, on the UDP thread: recvmmsg with UDP GRO, then a batch in
//! three passes. First each datagram is classified and a transport message's
//! session looked up; then the transport messages are authenticated and
//! decrypted in place, in two halves on two threads when a helper is free
//! (crypto_pool); last, in arrival order on this thread, each counter passes
//! the replay window, the inner source the sending peer's AllowedIPs, and the
//! packet is coalesced per flow and written to the TUN. Handshake messages
//! pass mac1 (and, under load, mac2 or get a cookie reply) and go to the
//! handshake worker's queue. This thread never runs a static-key operation
//! and never waits for the worker.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::counters::DropReason;
use super::crypto_pool::{fork, MIN_PACKETS_TO_SPLIT};
use super::handshake::Job;
use super::offload::{Coalescer, Offer, VnetHdr};
use super::pktinfo;
use super::queue::Pushed;
use super::ratelimit::RateLimiter;
use super::socket_slot::CachedSocket;
use super::tun::VNET_HDR_LEN;
use super::udp::{RecvBatch, UdpSocket, MAX_UDP_PAYLOAD};
use super::udp_offload::UdpCoalescer;
use super::waker::Ready;
use super::Shared;
use crate::keypair::Keypair;
use crate::noise::{self, MessageType, INITIATION_LEN, RESPONSE_LEN, TRANSPORT_HEADER_LEN};
use crate::peer::Peer;
use crate::sticky::LocalAddr;

/// Receive slots per recvmmsg. With GRO each holds up to 64 KiB of datagrams.
const BATCH: usize = 32;
/// Datagrams the kernel puts in one GRO slot at most (UDP_GRO_CNT_MAX).
const MAX_GRO_SEGMENTS: usize = 64;

/// A session the current batch's transport messages belong to.
struct Session {
    index: u32,
    peer: Arc<Peer>,
    keypair: Arc<Keypair>,
}

/// One datagram of the current batch: where it lies, and how far it got.
#[derive(Clone, Copy)]
struct Entry {
    slot: usize,
    offset: usize,
    len: usize,
    state: EntryState,
}

#[derive(Clone, Copy)]
enum EntryState {
    /// Not a transport message: handled in the last pass.
    Control,
    /// A transport message already refused.
    Dropped(DropReason),
    /// A transport message of `sessions[session]`, still sealed.
    Sealed { session: usize },
    /// Authenticated and decrypted in place: plaintext length and counter. The replay window
    /// has not seen the counter yet.
    Opened {
        session: usize,
        len: usize,
        counter: u64,
    },
}

/// The bytes one thread opens: slot `s`'s part is `bytes[s]`, which starts at byte `base[s]`
/// of the slot (only the slot a batch is split in has a part starting past 0).
struct Part<'a> {
    bytes: [&'a mut [u8]; BATCH],
    base: [usize; BATCH],
}

impl Part<'_> {
    fn new() -> Self {
        Part {
            bytes: std::array::from_fn(|_| <&mut [u8]>::default()),
            base: [0; BATCH],
        }
    }
}

/// Authenticate and decrypt the sealed entries among `entries`, whose bytes are in `part`.
fn open_part(part: &mut Part<'_>, entries: &mut [Entry], sessions: &[Session], now: Instant) {
    for e in entries {
        let EntryState::Sealed { session } = e.state else {
            continue;
        };
        let start = e.offset - part.base[e.slot];
        let buf = &mut part.bytes[e.slot][start..start + e.len];
        e.state = match sessions[session].keypair.open(buf, now) {
            Ok((len, counter)) => EntryState::Opened {
                session,
                len,
                counter,
            },
            Err(_) => EntryState::Dropped(DropReason::Decrypt),
        };
    }
}

/// The source address and true length of a decrypted IP packet (which may
/// carry padding after it).
fn inner_source(ip: &[u8]) -> Option<(IpAddr, usize)> {
    match ip.first()? >> 4 {
        4 if ip.len() >= 20 => {
            let len = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            (20..=ip.len()).contains(&len).then(|| {
                (
                    IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
                    len,
                )
            })
        }
        6 if ip.len() >= 40 => {
            let len = 40 + u16::from_be_bytes([ip[4], ip[5]]) as usize;
            let src: [u8; 16] = ip[8..24].try_into().ok()?;
            (len <= ip.len()).then_some((IpAddr::V6(Ipv6Addr::from(src)), len))
        }
        _ => None,
    }
}

struct Receiver {
    shared: Arc<Shared>,
    /// This thread's copy of the current socket (refreshed when a rebind bumps the epoch).
    socket: CachedSocket,
    coalescer: Coalescer,
    offload: bool,
    /// Datagrams of one UDP flow merged into a USO super-datagram (when the TUN takes them).
    udp_coalescer: UdpCoalescer,
    uso: bool,
    /// The sessions the batch's transport messages belong to (almost always one), looked up
    /// once per batch rather than once per packet.
    sessions: Vec<Session>,
    /// The batch's datagrams, in arrival order, between the passes.
    entries: Vec<Entry>,
    limiter: RateLimiter,
    /// The local address the datagram being handled arrived on (pktinfo; None: unknown).
    local: Option<LocalAddr>,
}

/// Every slot takes the largest UDP payload: without GRO a single datagram can still be longer
/// than 2048 bytes (a peer with a large MTU, or jumbo frames), and a shorter slot would truncate
/// it into an authentication failure. 32 slots of 64 KiB: 2 MiB, allocated once.
fn slot_size(_socket: &UdpSocket) -> usize {
    MAX_UDP_PAYLOAD
}

pub(crate) fn run(shared: Arc<Shared>) {
    let socket = CachedSocket::new(&shared.udp);
    let mut batch = RecvBatch::new(BATCH, slot_size(socket.get()));
    let mut r = Receiver {
        shared: shared.clone(),
        socket,
        coalescer: Coalescer::new(),
        offload: shared.tun.offload(),
        udp_coalescer: UdpCoalescer::new(),
        uso: shared.tun.uso(),
        sessions: Vec::with_capacity(BATCH),
        entries: Vec::with_capacity(BATCH * MAX_GRO_SEGMENTS),
        limiter: RateLimiter::new(),
        local: None,
    };
    loop {
        // A rebind (wg set listen-port) swaps the socket and wakes us.
        if let Some(old) = r.socket.refresh(&shared.udp) {
            // What reached the old port before the swap is still good: take it first.
            r.receive_round(&mut batch, &old);
            drop(old);
            let size = slot_size(r.socket.get());
            if size != batch.slot_size() {
                batch = RecvBatch::new(BATCH, size);
            }
        }
        let ready = shared.udp_waker.wait(r.socket.get().as_raw_fd());
        if shared.stopping() {
            return;
        }
        if ready == Ready::Woken {
            continue;
        }
        let socket = r.socket.shared();
        r.receive_round(&mut batch, &socket);
    }
}

impl Receiver {
    /// Receive and handle what `socket` has queued, a bounded number of batches.
    fn receive_round(&mut self, batch: &mut RecvBatch, socket: &UdpSocket) {
        for _ in 0..64 {
            match batch.recv(socket) {
                Ok(0) => break,
                Ok(n) => {
                    let now = Instant::now();
                    self.classify(batch, n);
                    self.open_batch(batch, now);
                    self.handle_batch(batch, now);
                    self.flush_coalesced();
                    self.sessions.clear();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // ICMP errors surface here (ECONNREFUSED...): not fatal.
                    log::debug!("recvmmsg: {e}");
                    break;
                }
            }
        }
    }

    /// Pass 1: list the batch's datagrams and look up each transport message's session.
    fn classify(&mut self, batch: &mut RecvBatch, slots: usize) {
        self.entries.clear();
        for slot in 0..slots {
            let (src, data, seg) = batch.slot(slot);
            if src.is_none() {
                continue;
            }
            if data.is_empty() {
                // An empty datagram is a (malformed) message too.
                self.entries.push(Entry {
                    slot,
                    offset: 0,
                    len: 0,
                    state: EntryState::Control,
                });
                continue;
            }
            let mut offset = 0;
            while offset < data.len() {
                let len = seg.min(data.len() - offset);
                let state = self.classify_one(&data[offset..offset + len]);
                self.entries.push(Entry {
                    slot,
                    offset,
                    len,
                    state,
                });
                offset += len;
            }
        }
    }

    fn classify_one(&mut self, datagram: &[u8]) -> EntryState {
        if noise::message_type(datagram) != Some(MessageType::Transport) {
            return EntryState::Control;
        }
        let Some(index) = noise::receiver_index(datagram) else {
            return EntryState::Dropped(DropReason::Malformed);
        };
        if let Some(session) = self.sessions.iter().position(|s| s.index == index) {
            return EntryState::Sealed { session };
        }
        let Some(peer) = self.shared.index.get(index) else {
            return EntryState::Dropped(DropReason::UnknownIndex);
        };
        let Some(keypair) = peer.keypair_for_index(index) else {
            return EntryState::Dropped(DropReason::Decrypt);
        };
        self.sessions.push(Session {
            index,
            peer,
            keypair,
        });
        EntryState::Sealed {
            session: self.sessions.len() - 1,
        }
    }

    /// Pass 2: open the batch's transport messages, in two halves on two threads when there
    /// are enough of them and a helper is free.
    fn open_batch(&mut self, batch: &mut RecvBatch, now: Instant) {
        let sealed = self
            .entries
            .iter()
            .filter(|e| matches!(e.state, EntryState::Sealed { .. }))
            .count();
        if sealed == 0 {
            return;
        }
        let split = if sealed >= MIN_PACKETS_TO_SPLIT {
            self.entries.len() / 2
        } else {
            self.entries.len()
        };
        let (split_slot, split_offset) = match self.entries.get(split) {
            Some(e) => (e.slot, e.offset),
            None => (usize::MAX, 0),
        };
        let (mut first, mut second) = (Part::new(), Part::new());
        for (slot, bytes) in batch.filled_mut().enumerate() {
            if slot < split_slot {
                first.bytes[slot] = bytes;
            } else if slot == split_slot {
                let (head, tail) = bytes.split_at_mut(split_offset);
                first.bytes[slot] = head;
                second.bytes[slot] = tail;
                second.base[slot] = split_offset;
            } else {
                second.bytes[slot] = bytes;
            }
        }
        let sessions = &self.sessions[..];
        let (head, tail) = self.entries.split_at_mut(split);
        if tail.is_empty() {
            open_part(&mut first, head, sessions, now);
        } else {
            let tail_len = tail.len();
            let ((), (), on_helper) = fork(
                || open_part(&mut first, head, sessions, now),
                || open_part(&mut second, tail, sessions, now),
            );
            if on_helper {
                self.shared
                    .counters
                    .opened_on_helper
                    .fetch_add(tail_len as u64, Ordering::Relaxed);
            }
        }
    }

    /// Pass 3, in arrival order: replay window, AllowedIPs and delivery of the opened
    /// messages; handshake messages and cookie replies.
    fn handle_batch(&mut self, batch: &mut RecvBatch, now: Instant) {
        let sessions = std::mem::take(&mut self.sessions);
        for k in 0..self.entries.len() {
            let e = self.entries[k];
            self.local = batch.local(e.slot);
            let (src, data, _) = batch.slot(e.slot);
            let Some(src) = src else { continue };
            let buf = &mut data[e.offset..e.offset + e.len];
            match e.state {
                EntryState::Control => self.control_message(src, buf, now),
                EntryState::Dropped(reason) => self.shared.counters.discard(reason),
                // Pass 2 opens or drops every sealed entry.
                EntryState::Sealed { .. } => self.shared.counters.discard(DropReason::Decrypt),
                EntryState::Opened {
                    session,
                    len,
                    counter,
                } => self.transport(src, buf, &sessions[session], len, counter, now),
            }
        }
        self.sessions = sessions;
    }

    /// A datagram that is not a transport message.
    fn control_message(&mut self, src: SocketAddr, buf: &mut [u8], now: Instant) {
        let shared = self.shared.clone();
        match noise::message_type(buf) {
            Some(MessageType::Transport) => shared.counters.discard(DropReason::Malformed),
            Some(MessageType::Initiation) => {
                let Ok(msg) = <[u8; INITIATION_LEN]>::try_from(&buf[..]) else {
                    shared.counters.discard(DropReason::Malformed);
                    return;
                };
                if !shared.cookies.check_mac1(buf) {
                    shared.counters.discard(DropReason::Mac1);
                } else {
                    match self.admit(buf, src, now) {
                        Err(reason) => shared.counters.discard(reason),
                        Ok(proven) => {
                            let local = self.local;
                            let job = Job::Initiation { msg, src, local };
                            match shared.jobs.push_incoming_from(job, now, proven) {
                                Pushed::Queued => {}
                                // One message left the queue: this one, or (displaced) an
                                // unproven one from its address.
                                Pushed::DisplacedUnproven | Pushed::AddressFull | Pushed::Full => {
                                    shared.counters.discard(DropReason::QueueFull)
                                }
                            }
                        }
                    }
                }
            }
            Some(MessageType::Response) => {
                let Ok(msg) = <[u8; RESPONSE_LEN]>::try_from(&buf[..]) else {
                    shared.counters.discard(DropReason::Malformed);
                    return;
                };
                if !shared.cookies.check_mac1(buf) {
                    shared.counters.discard(DropReason::Mac1);
                } else if noise::receiver_index(buf)
                    .and_then(|i| shared.index.get(i))
                    .is_none()
                {
                    shared.counters.discard(DropReason::UnknownIndex);
                } else {
                    match self.admit(buf, src, now) {
                        Err(reason) => shared.counters.discard(reason),
                        Ok(proven) => {
                            let job = Job::Response {
                                msg,
                                src,
                                local: self.local,
                            };
                            if shared.jobs.push_incoming_from(job, now, proven) != Pushed::Queued {
                                shared.counters.discard(DropReason::QueueFull);
                            }
                        }
                    }
                }
            }
            Some(MessageType::CookieReply) => {
                match noise::receiver_index(buf).and_then(|i| shared.index.get(i)) {
                    Some(peer) => {
                        if let Err(e) = peer.consume_cookie_reply(buf, now) {
                            log::debug!("cookie reply from {src}: {e}");
                            shared.counters.discard(DropReason::Handshake);
                        }
                    }
                    None => shared.counters.discard(DropReason::UnknownIndex),
                }
            }
            None => shared.counters.discard(DropReason::Malformed),
        }
    }

    /// Whether a handshake message (mac1 already valid) may enter the
    /// worker's queue, and whether it carries a valid mac2 (its sender received
    /// our cookie at `src`). Under load it needs that mac2 (else it gets a
    /// cookie reply and costs no token operation), and its source must stay
    /// under the per-address rate.
    fn admit(&mut self, buf: &[u8], src: SocketAddr, now: Instant) -> Result<bool, DropReason> {
        let shared = &*self.shared;
        if !shared.jobs.under_load(now) {
            return Ok(shared.cookies.check_mac2(buf, src, now));
        }
        if !shared.cookies.check_mac2(buf, src, now) {
            if let Some(reply) = shared.cookies.create_cookie_reply(buf, src, now) {
                let socket = self.socket.get();
                let sent = pktinfo::send_from_or_any(self.local, |from| {
                    socket.send_to_from(&reply, src, from)
                });
                if sent.is_ok() {
                    shared
                        .counters
                        .cookie_replies_sent
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            return Err(DropReason::CookieRequired);
        }
        if !self.limiter.allow(src.ip(), now) {
            return Err(DropReason::RateLimited);
        }
        Ok(true)
    }

    /// A transport message that authenticated (`n` plaintext bytes at buf[16..]) and whose
    /// counter the replay window has not seen yet.
    fn transport(
        &mut self,
        src: SocketAddr,
        buf: &mut [u8],
        session: &Session,
        n: usize,
        counter: u64,
        now: Instant,
    ) {
        let shared = self.shared.clone();
        let (peer, keypair) = (&session.peer, &session.keypair);
        if !keypair.accept_counter(counter) {
            shared.counters.discard(DropReason::Decrypt);
            return;
        }
        let wire_len = buf.len();
        // The packet authenticated: it confirms the session, moves the endpoint and feeds the
        // timers whatever it carries, as the kernel's wg_packet_consume_data_done does before
        // it looks at the inner packet. Only then may the inner source be refused.
        let received = peer.receive_transport(keypair, src, wire_len, n == 0, now);
        peer.sticky_source().learn(src, self.local);
        if received.confirmed {
            shared
                .counters
                .sessions_confirmed
                .fetch_add(1, Ordering::Relaxed);
        }
        if received.rekey {
            if let Some(state) = shared.peer_state(&peer.public_key()) {
                shared.request_initiation(&state);
            }
        }
        if n == 0 {
            self.after_session_use(peer);
            return;
        }
        let inner = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + n];
        let Some((inner_src, len)) = inner_source(inner) else {
            shared.counters.discard(DropReason::InnerPacket);
            self.after_session_use(peer);
            return;
        };
        let routed = shared.peers.read().routes.lookup(inner_src).cloned();
        let Some(state) = routed.filter(|s| Arc::ptr_eq(&s.peer, peer)) else {
            shared.counters.discard(DropReason::AllowedIps);
            self.after_session_use(peer);
            return;
        };
        if state.has_staged.load(Ordering::Acquire) {
            shared.request_flush(&state);
        }
        shared.counters.rx_packets.fetch_add(1, Ordering::Relaxed);
        self.deliver(buf, len);
    }

    /// A session was just used to receive: if packets wait for it, send them.
    fn after_session_use(&self, peer: &Arc<Peer>) {
        if let Some(state) = self.shared.peer_state(&peer.public_key()) {
            if state.has_staged.load(Ordering::Acquire) {
                self.shared.request_flush(&state);
            }
        }
    }

    /// Write the packet at buf[16..16 + len] to the TUN, coalescing TCP (and UDP with USO).
    fn deliver(&mut self, buf: &mut [u8], len: usize) {
        let start = TRANSPORT_HEADER_LEN;
        if self.offload {
            match self.coalescer.offer(&buf[start..start + len]) {
                Offer::Merged => return,
                Offer::Flush => {
                    self.flush_tcp();
                    if self.coalescer.offer(&buf[start..start + len]) == Offer::Merged {
                        return;
                    }
                }
                Offer::Alone if self.uso => {
                    match self.udp_coalescer.offer(&buf[start..start + len]) {
                        Offer::Merged => return,
                        Offer::Flush => {
                            self.flush_udp();
                            if self.udp_coalescer.offer(&buf[start..start + len]) == Offer::Merged {
                                return;
                            }
                        }
                        Offer::Alone => self.flush_coalesced(),
                    }
                }
                Offer::Alone => self.flush_coalesced(),
            }
            // The transport header in front is spent: the virtio-net header goes there.
            VnetHdr::default().encode(&mut buf[start - VNET_HDR_LEN..start]);
            self.write_tun_range(buf, start - VNET_HDR_LEN, start + len);
        } else {
            self.write_tun_range(buf, start, start + len);
        }
    }

    fn write_tun_range(&self, buf: &[u8], from: usize, to: usize) {
        if let Err(e) = self.shared.tun.write(&buf[from..to]) {
            log::debug!("writing the TUN: {e}");
            self.shared.counters.discard(DropReason::SendError);
        }
    }

    /// Write what both coalescers hold.
    fn flush_coalesced(&mut self) {
        self.flush_tcp();
        self.flush_udp();
    }

    fn flush_tcp(&mut self) {
        if self.coalescer.is_empty() {
            return;
        }
        let pkt = self.coalescer.finish();
        if let Err(e) = self.shared.tun.write(pkt) {
            log::debug!("writing the TUN: {e}");
            self.shared.counters.discard(DropReason::SendError);
        }
    }

    fn flush_udp(&mut self) {
        if self.udp_coalescer.is_empty() {
            return;
        }
        let pkt = self.udp_coalescer.finish();
        if let Err(e) = self.shared.tun.write(pkt) {
            log::debug!("writing the TUN: {e}");
            self.shared.counters.discard(DropReason::SendError);
        }
    }
}
