//! The receive path, on the UDP thread: recvmmsg with UDP GRO, then per
//! datagram: transport packets are decrypted in place, checked against the
//! sending peer's AllowedIPs, coalesced per TCP flow and written to the TUN;
//! handshake messages pass mac1 (and, under load, mac2 or get a cookie reply)
//! and go to the handshake worker's queue. This thread never runs a
//! static-key operation and never waits for the worker.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::counters::DropReason;
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
    /// The session of the previous transport packet: consecutive packets
    /// almost always share it, which saves the index-table lookup.
    last: Option<(u32, Arc<Peer>, Arc<Keypair>)>,
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
        last: None,
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
                    for i in 0..n {
                        self.local = batch.local(i);
                        let (src, data, seg) = batch.slot(i);
                        let Some(src) = src else { continue };
                        if data.is_empty() {
                            // An empty datagram is a (malformed) message too.
                            self.datagram(src, data, now);
                        }
                        for datagram in data.chunks_mut(seg) {
                            self.datagram(src, datagram, now);
                        }
                    }
                    self.flush_coalesced();
                    self.last = None;
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

    fn datagram(&mut self, src: SocketAddr, buf: &mut [u8], now: Instant) {
        let shared = self.shared.clone();
        match noise::message_type(buf) {
            Some(MessageType::Transport) => self.transport(src, buf, now),
            Some(MessageType::Initiation) => {
                let Ok(msg) = <[u8; INITIATION_LEN]>::try_from(&buf[..]) else {
                    shared.counters.discard(DropReason::Malformed);
                    return;
                };
                if !shared.cookies.check_mac1(buf) {
                    shared.counters.discard(DropReason::Mac1);
                } else if let Err(reason) = self.admit(buf, src, now) {
                    shared.counters.discard(reason);
                } else {
                    let local = self.local;
                    match shared
                        .jobs
                        .push_incoming(Job::Initiation { msg, src, local }, now)
                    {
                        Pushed::Queued => {}
                        Pushed::Replaced => shared.counters.discard(DropReason::Stale),
                        Pushed::Full => shared.counters.discard(DropReason::QueueFull),
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
                } else if let Err(reason) = self.admit(buf, src, now) {
                    shared.counters.discard(reason);
                } else if shared.jobs.push_incoming(
                    Job::Response {
                        msg,
                        src,
                        local: self.local,
                    },
                    now,
                ) == Pushed::Full
                {
                    shared.counters.discard(DropReason::QueueFull);
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
    /// worker's queue. Under load it needs a valid mac2 (else it gets a
    /// cookie reply and costs no token operation), and its source must stay
    /// under the per-address rate.
    fn admit(&mut self, buf: &[u8], src: SocketAddr, now: Instant) -> Result<(), DropReason> {
        let shared = &*self.shared;
        if !shared.jobs.under_load(now) {
            return Ok(());
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
        Ok(())
    }

    fn transport(&mut self, src: SocketAddr, buf: &mut [u8], now: Instant) {
        let shared = self.shared.clone();
        let Some(idx) = noise::receiver_index(buf) else {
            shared.counters.discard(DropReason::Malformed);
            return;
        };
        let (peer, keypair) = match &self.last {
            Some((i, p, k)) if *i == idx => (p.clone(), k.clone()),
            _ => {
                let Some(peer) = shared.index.get(idx) else {
                    shared.counters.discard(DropReason::UnknownIndex);
                    return;
                };
                let Some(keypair) = peer.keypair_for_index(idx) else {
                    shared.counters.discard(DropReason::Decrypt);
                    return;
                };
                self.last = Some((idx, peer.clone(), keypair.clone()));
                (peer, keypair)
            }
        };
        let wire_len = buf.len();
        let n = match keypair.decrypt(buf, now) {
            Ok(n) => n,
            Err(_) => {
                shared.counters.discard(DropReason::Decrypt);
                return;
            }
        };
        // The packet authenticated: it confirms the session, moves the endpoint and feeds the
        // timers whatever it carries, as the kernel's wg_packet_consume_data_done does before
        // it looks at the inner packet. Only then may the inner source be refused.
        let received = peer.receive_transport(&keypair, src, wire_len, n == 0, now);
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
            self.after_session_use(&peer);
            return;
        }
        let inner = &buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + n];
        let Some((inner_src, len)) = inner_source(inner) else {
            shared.counters.discard(DropReason::InnerPacket);
            self.after_session_use(&peer);
            return;
        };
        let routed = shared.peers.read().routes.lookup(inner_src).cloned();
        let Some(state) = routed.filter(|s| Arc::ptr_eq(&s.peer, &peer)) else {
            shared.counters.discard(DropReason::AllowedIps);
            self.after_session_use(&peer);
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
