//! The send path, on the TUN thread: read a (super-)packet from the TUN,
//! route it to a peer by destination (AllowedIPs), split it into wire-sized
//! packets directly into the send buffer, encrypt each in place, and hand
//! the run to the kernel as one UDP GSO send. Packets for a peer without a
//! session wait in its staged queue while the handshake worker works.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::counters::DropReason;
use super::offload::{max_segment_len, segment};
use super::pktinfo;
use super::socket_slot::CachedSocket;
use super::tun::{MAX_SUPER_PACKET, VNET_HDR_LEN};
use super::waker::Ready;
use super::{PeerState, Shared, MAX_STAGED_PACKETS};
use crate::noise::TRANSPORT_HEADER_LEN;

/// Room for one super-packet split into small segments, each with its
/// transport header, padding and tag.
const OUT_BUFFER: usize = 256 * 1024;
/// Reads per wake-up before looking at the stop flag and staged queues again.
const READS_PER_ROUND: usize = 64;

/// The destination address of an IP packet.
pub(crate) fn destination(ip: &[u8]) -> Option<IpAddr> {
    match ip.first()? >> 4 {
        4 if ip.len() >= 20 => Some(IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]))),
        6 if ip.len() >= 40 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(&ip[24..40]).ok()?,
        ))),
        _ => None,
    }
}

fn pad16(n: usize) -> usize {
    n.div_ceil(16) * 16
}

struct Sender {
    shared: Arc<Shared>,
    /// This thread's copy of the current socket (refreshed when a rebind bumps the epoch).
    socket: CachedSocket,
    read_buf: Box<[u8]>,
    out: Box<[u8]>,
}

pub(crate) fn run(shared: Arc<Shared>) {
    let mut s = Sender {
        socket: CachedSocket::new(&shared.udp),
        shared: shared.clone(),
        read_buf: vec![0u8; VNET_HDR_LEN + MAX_SUPER_PACKET].into_boxed_slice(),
        out: vec![0u8; OUT_BUFFER].into_boxed_slice(),
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&shared.tun);
    loop {
        let ready = shared.tun_waker.wait(fd);
        if shared.stopping() {
            return;
        }
        // A rebind (wg set listen-port) swaps the socket and wakes us.
        s.socket.refresh(&shared.udp);
        if ready != Ready::Readable {
            s.flush_staged();
        }
        if ready != Ready::Woken && s.read_round() == TunState::Gone {
            // Nothing will ever be readable again: stop polling a dead descriptor.
            return;
        }
    }
}

/// Whether the TUN is still there after a read round.
#[derive(PartialEq, Eq)]
enum TunState {
    Alive,
    Gone,
}

/// The errors a TUN read gives once its interface was deleted: EBADFD ("File descriptor in bad
/// state") from tun_chr_read_iter when the tun_struct is detached; EIO / ENXIO from older kernels.
fn interface_deleted(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD) | Some(libc::EIO) | Some(libc::ENXIO) | Some(libc::ENODEV)
    )
}

impl Sender {
    fn read_round(&mut self) -> TunState {
        let offload = self.shared.tun.offload();
        for _ in 0..READS_PER_ROUND {
            // Without offload the kernel gives bare IP packets: read them after
            // an empty virtio-net header so one code path serves both.
            let r = if offload {
                self.shared.tun.read(&mut self.read_buf)
            } else {
                self.read_buf[..VNET_HDR_LEN].fill(0);
                self.shared
                    .tun
                    .read(&mut self.read_buf[VNET_HDR_LEN..])
                    .map(|n| n + VNET_HDR_LEN)
            };
            let n = match r {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return TunState::Alive,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if interface_deleted(&e) => {
                    log::info!(
                        "{}: the interface was deleted ({e})",
                        self.shared.tun.name()
                    );
                    self.shared.tun_gone.store(true, Ordering::Release);
                    return TunState::Gone;
                }
                Err(e) => {
                    log::warn!("reading the TUN: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    return TunState::Alive;
                }
            };
            if n <= VNET_HDR_LEN {
                continue;
            }
            let now = Instant::now();
            let Some(dst) = destination(&self.read_buf[VNET_HDR_LEN..n]) else {
                self.shared.counters.discard(DropReason::InnerPacket);
                continue;
            };
            let state = self.shared.peers.read().routes.lookup(dst).cloned();
            let Some(state) = state else {
                self.shared.counters.discard(DropReason::NoRoute);
                continue;
            };
            let pkt = std::mem::take(&mut self.read_buf);
            self.send_packet(&state, &pkt[..n], now);
            self.read_buf = pkt;
        }
        TunState::Alive
    }

    /// Encrypt and send one TUN read (vnet header first) to `state`'s peer,
    /// or stage it if there is no session yet.
    fn send_packet(&mut self, state: &Arc<PeerState>, pkt: &[u8], now: Instant) {
        let shared = &*self.shared;
        let Some(keypair) = state.peer.current_keypair(now) else {
            self.stage(state, pkt);
            return;
        };
        let Some(endpoint) = state.peer.endpoint() else {
            shared.counters.discard(DropReason::NoEndpoint);
            return;
        };
        let max = match max_segment_len(pkt) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("TUN packet dropped: {e}");
                shared.counters.discard(DropReason::Offload);
                return;
            }
        };
        // Padding stops at the MTU, as in the kernel's calculate_skb_padding(): a 1420-byte
        // packet on a 1420 MTU stays 1420 bytes, which over an IPv6 underlay is exactly 1500.
        let mtu = shared.mtu.load(Ordering::Relaxed).max(max);
        let stride = TRANSPORT_HEADER_LEN + pad16(max).min(mtu) + 16;
        let segs = match segment(pkt, &mut self.out, TRANSPORT_HEADER_LEN, stride) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("TUN packet dropped: {e}");
                shared.counters.discard(DropReason::Offload);
                return;
            }
        };
        let mut total = 0;
        for k in 0..segs.count {
            let end = ((k + 1) * stride).min(self.out.len());
            let slot = &mut self.out[k * stride..end];
            match keypair.encrypt(slot, segs.len_of(k), now) {
                Ok(wire) if wire == stride || k + 1 == segs.count => total = k * stride + wire,
                Ok(_) => {
                    // Cannot happen: equal plaintexts pad to equal lengths.
                    shared
                        .counters
                        .discard_n(DropReason::Offload, segs.count as u64);
                    return;
                }
                Err(e) => {
                    // The key is exhausted or expired: keep the packet for the next session.
                    log::debug!("encrypt: {e}");
                    self.stage(state, pkt);
                    return;
                }
            }
        }
        let socket = self.socket.get();
        let wire = &self.out[..total];
        if let Err(e) =
            pktinfo::send_with_sticky_source(state.peer.sticky_source(), endpoint, |from| {
                socket.send_segments_from(wire, stride, endpoint, from)
            })
        {
            log::debug!("sending to {endpoint}: {e}");
            shared
                .counters
                .discard_n(DropReason::SendError, segs.count as u64);
        }
        shared
            .counters
            .tx_packets
            .fetch_add(segs.count as u64, Ordering::Relaxed);
        if state.peer.sent_transport(&keypair, total, false, now) {
            shared.request_initiation(state);
        }
    }

    fn stage(&self, state: &Arc<PeerState>, pkt: &[u8]) {
        {
            let mut staged = state.staged.lock();
            if staged.len() >= MAX_STAGED_PACKETS {
                staged.pop_front();
                self.shared.counters.discard(DropReason::StagedOverflow);
            }
            staged.push_back(pkt.to_vec());
        }
        state.has_staged.store(true, Ordering::Release);
        self.shared.request_initiation(state);
    }

    /// Send what waited for a session that is now up, or a keepalive when
    /// nothing did (the initiator confirms a new session to the responder).
    fn flush_staged(&mut self) {
        let pending: Vec<Arc<PeerState>> = self
            .shared
            .peers
            .read()
            .by_key
            .values()
            .filter(|s| s.flush_pending.swap(false, Ordering::AcqRel))
            .cloned()
            .collect();
        for state in pending {
            let now = Instant::now();
            if state.peer.current_keypair(now).is_none() {
                continue;
            }
            let packets: Vec<Vec<u8>> = {
                let mut staged = state.staged.lock();
                state.has_staged.store(false, Ordering::Release);
                staged.drain(..).collect()
            };
            if packets.is_empty() {
                super::timers::send_keepalive(&self.shared, &state, now);
            }
            for p in packets {
                self.send_packet(&state, &p, now);
            }
        }
    }
}
