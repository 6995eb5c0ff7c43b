//! The send path, on the TUN thread: read a (super-)packet from the TUN,
//! route it to a peer by destination (AllowedIPs), split it into wire-sized
//! packets directly into the send buffer, encrypt each in place, and hand
//! the run to the kernel as one UDP GSO send. Single packets (UDP, ACKs: the
//! TUN gives them one per read) for the same peer queue up behind each other
//! in the send buffer for as long as the TUN has more to read, and leave
//! together in one GSO send too. Packets for a peer without a session wait in
//! its staged queue while the handshake worker works.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::counters::DropReason;
use super::crypto_pool::{fork, MIN_PACKETS_TO_SPLIT};
use super::offload::{is_single_packet, max_segment_len, segment, Segments};
use super::pktinfo;
use super::socket_slot::CachedSocket;
use super::tun::{MAX_SUPER_PACKET, VNET_HDR_LEN};
use super::udp::{MAX_GSO_BYTES, MAX_GSO_SEGMENTS};
use super::waker::Ready;
use super::{PeerState, Shared, MAX_STAGED_PACKETS};
use crate::keypair::Keypair;
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
    /// Sealed single packets at the start of `out`, waiting for more to the same peer.
    pending: Option<PendingRun>,
}

/// Single packets sealed for one peer, one session and one endpoint, `stride` apart at the
/// start of the send buffer: one GSO send once the TUN has nothing more to read right away.
struct PendingRun {
    state: Arc<PeerState>,
    keypair: Arc<Keypair>,
    endpoint: SocketAddr,
    stride: usize,
    count: usize,
    bytes: usize,
    /// Every message so far is `stride` long, so another may follow (GSO segments are all
    /// the same size but the last, which may be shorter: a smaller packet joins as the last).
    open: bool,
}

impl PendingRun {
    fn takes(
        &self,
        state: &Arc<PeerState>,
        keypair: &Arc<Keypair>,
        endpoint: SocketAddr,
        stride: usize,
    ) -> bool {
        self.open
            && stride <= self.stride
            && self.count < MAX_GSO_SEGMENTS
            && self.bytes + self.stride <= MAX_GSO_BYTES
            && self.endpoint == endpoint
            && Arc::ptr_eq(&self.state, state)
            && Arc::ptr_eq(&self.keypair, keypair)
    }
}

pub(crate) fn run(shared: Arc<Shared>) {
    let mut s = Sender {
        socket: CachedSocket::new(&shared.udp),
        shared: shared.clone(),
        read_buf: vec![0u8; VNET_HDR_LEN + MAX_SUPER_PACKET].into_boxed_slice(),
        out: vec![0u8; OUT_BUFFER].into_boxed_slice(),
        pending: None,
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
        let tun = if ready != Ready::Woken {
            s.read_round()
        } else {
            TunState::Alive
        };
        s.flush_pending();
        if tun == TunState::Gone {
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

/// Seal the `segs.count` segments that `segment` placed in `out` at `stride`, with the counters
/// from `first_counter` on, in two halves on two threads when a helper is free (see
/// crypto_pool). Returns the length of the whole run (every message `stride` long but the
/// last), or None if a message came out another length.
fn seal_segments(
    keypair: &Keypair,
    out: &mut [u8],
    segs: Segments,
    stride: usize,
    first_counter: u64,
    sealed_on_helper: &AtomicU64,
) -> Option<usize> {
    let count = segs.count;
    if count < MIN_PACKETS_TO_SPLIT {
        return seal_run(keypair, out, segs, 0..count, stride, first_counter);
    }
    let split = count / 2;
    let (head, tail) = out.split_at_mut(split * stride);
    let (sealed_head, sealed_tail, on_helper) = fork(
        || seal_run(keypair, head, segs, 0..split, stride, first_counter),
        || seal_run(keypair, tail, segs, split..count, stride, first_counter),
    );
    if on_helper {
        sealed_on_helper.fetch_add((count - split) as u64, Ordering::Relaxed);
    }
    sealed_head?;
    Some(split * stride + sealed_tail?)
}

/// Seal segments `range` of a run, placed in `buf` from the range's first segment on. Returns
/// the length of the sealed part (None if a message other than the run's last came out
/// shorter than `stride`).
fn seal_run(
    keypair: &Keypair,
    buf: &mut [u8],
    segs: Segments,
    range: std::ops::Range<usize>,
    stride: usize,
    first_counter: u64,
) -> Option<usize> {
    let mut total = 0;
    for (i, k) in range.clone().enumerate() {
        let end = ((i + 1) * stride).min(buf.len());
        let slot = &mut buf[i * stride..end];
        let wire = keypair
            .seal(slot, segs.len_of(k), first_counter + k as u64)
            .ok()?;
        if wire != stride && k + 1 != segs.count {
            return None;
        }
        total = i * stride + wire;
    }
    Some(total)
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

    /// Encrypt one TUN read (vnet header first) for `state`'s peer and send it, or queue it
    /// behind the pending run when it is a single packet that can join one; stage it if there
    /// is no session yet.
    fn send_packet(&mut self, state: &Arc<PeerState>, pkt: &[u8], now: Instant) {
        let shared = self.shared.clone();
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
        let mut stride = TRANSPORT_HEADER_LEN + pad16(max).min(mtu) + 16;
        let single = is_single_packet(pkt);
        match &self.pending {
            Some(run) if single && run.takes(state, &keypair, endpoint, stride) => {
                // Sealed in a slot of the run's size, its padding stops at its own length.
                stride = run.stride;
            }
            _ => self.flush_pending(),
        }
        let start = self.pending.as_ref().map_or(0, |run| run.bytes);
        let out = &mut self.out[start..];
        let segs = match segment(pkt, out, TRANSPORT_HEADER_LEN, stride) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("TUN packet dropped: {e}");
                shared.counters.discard(DropReason::Offload);
                return;
            }
        };
        let first_counter = match keypair.reserve_counters(segs.count as u64, now) {
            Ok(c) => c,
            Err(e) => {
                // The key is exhausted or expired: keep the packet for the next session.
                log::debug!("encrypt: {e}");
                self.stage(state, pkt);
                return;
            }
        };
        let Some(total) = seal_segments(
            &keypair,
            out,
            segs,
            stride,
            first_counter,
            &shared.counters.sealed_on_helper,
        ) else {
            // Cannot happen: equal plaintexts pad to equal lengths, and the buffer holds them.
            shared
                .counters
                .discard_n(DropReason::Offload, segs.count as u64);
            return;
        };
        shared
            .counters
            .tx_packets
            .fetch_add(segs.count as u64, Ordering::Relaxed);
        if state.peer.sent_transport(&keypair, total, false, now) {
            shared.request_initiation(state);
        }
        let run = self.pending.get_or_insert_with(|| PendingRun {
            state: state.clone(),
            keypair: keypair.clone(),
            endpoint,
            stride,
            count: 0,
            bytes: 0,
            open: true,
        });
        run.count += segs.count;
        run.bytes += total;
        run.open = single && total == stride;
        if !single {
            self.flush_pending();
        }
    }

    /// Send the pending run, if any, as one GSO send (several if the kernel wants it smaller).
    fn flush_pending(&mut self) {
        let Some(run) = self.pending.take() else {
            return;
        };
        let shared = &*self.shared;
        let socket = self.socket.get();
        let wire = &self.out[..run.bytes];
        if let Err(e) =
            pktinfo::send_with_sticky_source(run.state.peer.sticky_source(), run.endpoint, |from| {
                socket.send_segments_from(wire, run.stride, run.endpoint, from)
            })
        {
            log::debug!("sending to {}: {e}", run.endpoint);
            shared
                .counters
                .discard_n(DropReason::SendError, run.count as u64);
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
        self.flush_pending();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keypair::tests::pair as keypairs;

    const SEGS: Segments = Segments {
        count: 21,
        full_len: 1400,
        last_len: 333,
    };
    const STRIDE: usize = TRANSPORT_HEADER_LEN + 1408 + 16;

    /// `segment`'s output: plaintext k at k * STRIDE + 16, every byte saying which segment.
    fn segmented() -> Vec<u8> {
        let mut out = vec![0u8; SEGS.count * STRIDE];
        for k in 0..SEGS.count {
            let at = k * STRIDE + TRANSPORT_HEADER_LEN;
            out[at..at + SEGS.len_of(k)].fill(k as u8 + 1);
        }
        out
    }

    /// Every message of `run` (sealed from counter `first` on) opens with `receiver`, carries
    /// its counter in wire order and its segment's bytes.
    fn assert_opens_in_order(run: &[u8], total: usize, first: u64, receiver: &Keypair) {
        let now = Instant::now();
        for k in 0..SEGS.count {
            let end = (k * STRIDE + STRIDE).min(total);
            let mut msg = run[k * STRIDE..end].to_vec();
            let counter = u64::from_le_bytes(msg[8..16].try_into().unwrap());
            assert_eq!(counter, first + k as u64);
            let n = receiver.decrypt(&mut msg, now).unwrap();
            assert!(msg[16..16 + SEGS.len_of(k)]
                .iter()
                .all(|&b| b == k as u8 + 1));
            assert!(n >= SEGS.len_of(k));
        }
    }

    /// The run sealed in two halves, the second on another thread at the same time, is byte for
    /// byte the run sealed on one thread: the same counters in wire order, and every message
    /// opens. The second thread is a plain thread that is always there, so the test does not
    /// depend on a rayon helper stealing the half (which a loaded machine may never do); that
    /// `fork` hands a half to a helper is crypto_pool's own test.
    #[test]
    fn a_run_sealed_in_halves_on_two_threads_is_the_run_sealed_serially() {
        let now = Instant::now();
        let (serial_key, _) = keypairs(now);
        let mut serial = segmented();
        let total = seal_segments(
            &serial_key,
            &mut serial,
            SEGS,
            STRIDE,
            0,
            &AtomicU64::new(0),
        );
        assert_eq!(total, Some(20 * STRIDE + TRANSPORT_HEADER_LEN + 336 + 16));
        let total = total.unwrap();

        let (sender, receiver) = keypairs(now);
        let first = sender.reserve_counters(SEGS.count as u64, now).unwrap();
        let split = SEGS.count / 2;
        let mut halves = segmented();
        let (head, tail) = halves.split_at_mut(split * STRIDE);
        let both_started = std::sync::Barrier::new(2);
        let (sealed_head, sealed_tail) = std::thread::scope(|scope| {
            let other = scope.spawn(|| {
                both_started.wait();
                seal_run(&sender, tail, SEGS, split..SEGS.count, STRIDE, first)
            });
            both_started.wait();
            let sealed_head = seal_run(&sender, head, SEGS, 0..split, STRIDE, first);
            (sealed_head, other.join().unwrap())
        });
        assert_eq!(sealed_head, Some(split * STRIDE));
        assert_eq!(split * STRIDE + sealed_tail.unwrap(), total);
        assert_eq!(halves, serial, "the halves differ from the serial run");
        assert_opens_in_order(&halves, total, first, &receiver);
    }

    /// On a pool with helpers, whichever thread seals the second half: the run is the serial
    /// run, and a half sealed on a helper is counted whole (the tail's 11 messages) or not at
    /// all.
    #[test]
    fn a_run_sealed_on_a_pool_is_the_run_sealed_serially_and_counted_by_halves() {
        let now = Instant::now();
        let (serial_key, _) = keypairs(now);
        let mut serial = segmented();
        let total = seal_segments(
            &serial_key,
            &mut serial,
            SEGS,
            STRIDE,
            0,
            &AtomicU64::new(0),
        );
        let pool = rayon_core::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let (sender, receiver) = keypairs(now);
        let on_helper = AtomicU64::new(0);
        for round in 0..20u64 {
            let mut parallel = segmented();
            let first = sender.reserve_counters(SEGS.count as u64, now).unwrap();
            assert_eq!(first, round * SEGS.count as u64);
            let before = on_helper.load(Ordering::Relaxed);
            let (wg_total, parallel) = pool.install(|| {
                let t = seal_segments(&sender, &mut parallel, SEGS, STRIDE, first, &on_helper);
                (t, parallel)
            });
            assert_eq!(wg_total, total);
            if round == 0 {
                assert_eq!(
                    parallel, serial,
                    "the pool's run differs from the serial run"
                );
            }
            assert_opens_in_order(&parallel, total.unwrap(), first, &receiver);
            let counted = on_helper.load(Ordering::Relaxed) - before;
            assert!(
                counted == 0 || counted == 11,
                "{counted} counted on a helper"
            );
        }
    }
}
