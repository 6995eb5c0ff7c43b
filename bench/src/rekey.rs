//! A WireGuard peer driven in-process by boringtun's `Tunn`, which forces handshakes on its
//! schedule: every `--rekey-interval-ms` it sends a fresh initiation
//! (`format_handshake_initiation(force_resend = true)`) while both directions keep a steady packet
//! stream through the tunnel. The daemon under test is the responder: each initiation costs it one
//! static-key Diffie-Hellman (`es`), the operation the token performs.
//!
//! It has no TUN device: it builds the inner IPv4/UDP packets of its stream itself, and reads the
//! inner packets of the daemon's stream out of `decapsulate`.
//!
//! Prints the handshake completion times (initiation sent to response received, as the peer sees
//! it) and the gap statistics of the stream from the daemon (`rx_` prefix).

use crate::args::Options;
use crate::stream::{
    enlarge_receive_buffer, shared_clock_ns, socket_drops, GapMeter, Pacer, PAYLOAD_LEN,
};
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use mock_instant::MockClock;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

const MESSAGE_HANDSHAKE_RESPONSE: u8 = 2;
const INNER_SOURCE_PORT: u16 = 40000;

struct Peer {
    tunn: Tunn,
    socket: UdpSocket,
    /// boringtun's clock is a mock in this workspace: it moves only when we move it.
    clock_synced_at: Instant,
    out: Vec<u8>,
}

impl Peer {
    fn sync_clock(&mut self) {
        let now = Instant::now();
        MockClock::advance(now - self.clock_synced_at);
        self.clock_synced_at = now;
    }

    fn initiate(&mut self) -> Result<(), String> {
        self.sync_clock();
        match self.tunn.format_handshake_initiation(&mut self.out, true) {
            TunnResult::WriteToNetwork(packet) => self
                .socket
                .send(packet)
                .map(|_| ())
                .map_err(|e| format!("send initiation: {e}")),
            TunnResult::Err(e) => Err(format!("format initiation: {e:?}")),
            _ => Err("boringtun produced no initiation".into()),
        }
    }

    /// Encrypts one inner packet; false when there is no session to send it with.
    fn send_inner(&mut self, inner: &[u8]) -> bool {
        self.sync_clock();
        match self.tunn.encapsulate(inner, &mut self.out) {
            TunnResult::WriteToNetwork(packet) if packet[0] == 4 => {
                self.socket.send(packet).is_ok()
            }
            TunnResult::WriteToNetwork(packet) => {
                // No session: boringtun queued the packet and started a handshake.
                let _ = self.socket.send(packet);
                false
            }
            _ => false,
        }
    }

    /// Handles one datagram from the daemon, feeding any inner stream packet to `meter`; for a
    /// handshake response, returns whether boringtun accepted it.
    fn receive(&mut self, datagram: &[u8], meter: &mut GapMeter) -> Option<bool> {
        self.sync_clock();
        let is_response = datagram.first() == Some(&MESSAGE_HANDSHAKE_RESPONSE);
        let mut accepted = None;
        let mut input: &[u8] = datagram;
        loop {
            let result = self.tunn.decapsulate(None, input, &mut self.out);
            accepted.get_or_insert(!matches!(result, TunnResult::Err(_)));
            match result {
                TunnResult::WriteToNetwork(packet) => {
                    let _ = self.socket.send(packet);
                    // boringtun wants to be called again with an empty datagram until Done.
                    input = &[];
                }
                TunnResult::WriteToTunnelV4(packet, _) => {
                    if let Some(payload) = inner_udp_payload(packet) {
                        meter.arrived(payload);
                    }
                    break;
                }
                _ => break,
            }
        }
        is_response.then_some(accepted == Some(true))
    }
}

pub fn run(options: &Options) -> Result<(), String> {
    let bind: SocketAddr = options.required("bind")?;
    let endpoint: SocketAddr = options.required("endpoint")?;
    let private = options.key("private")?;
    let peer_public = options.key("peer-public")?;
    let inner_src: Ipv4Addr = options.required("inner-src")?;
    let inner_dst: Ipv4Addr = options.required("inner-dst")?;
    let dst_port: u16 = options.required("dst-port")?;
    let rekeys: usize = options.optional("rekeys", 20)?;
    let rekey_interval = Duration::from_millis(options.optional("rekey-interval-ms", 300)?);
    let stream_interval = Duration::from_micros(options.optional("interval-us", 1000)?);
    let settle = Duration::from_millis(options.optional("settle-ms", 1000)?);

    let socket = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    enlarge_receive_buffer(&socket);
    socket
        .connect(endpoint)
        .map_err(|e| format!("connect {endpoint}: {e}"))?;
    let secret = StaticSecret::from(private);
    // Tunn's own limiter would refuse our responses after ten handshakes (it is reset only by
    // update_timers, which this driver does not call so that no timer fires a handshake of its own).
    let no_limit = Arc::new(RateLimiter::new(&PublicKey::from(&secret), u64::MAX));
    let tunn = Tunn::new(
        secret,
        PublicKey::from(peer_public),
        None,
        None,
        rand_core::RngCore::next_u32(&mut rand_core::OsRng) >> 8,
        Some(no_limit),
    );
    let mut peer = Peer {
        tunn,
        socket,
        clock_synced_at: Instant::now(),
        out: vec![0u8; 65536],
    };
    let mut buffer = vec![0u8; 65536];
    let mut meter = GapMeter::default();

    // The first handshake, retried every second for up to ten.
    let started = Instant::now();
    let mut initial_ms = None;
    let mut last_try = Instant::now();
    peer.initiate()?;
    while initial_ms.is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            return Err("no handshake response from the daemon within 10 s".into());
        }
        if last_try.elapsed() > Duration::from_secs(1) {
            peer.initiate()?;
            last_try = Instant::now();
        }
        if let Some(n) = recv_within(&peer.socket, &mut buffer, Duration::from_millis(50))? {
            let datagram = buffer[..n].to_vec();
            if peer.receive(&datagram, &mut meter) == Some(true) {
                initial_ms = Some(last_try.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    println!("handshake_initial_ms={:.3}", initial_ms.unwrap());
    println!("ready=1");

    let mut pacer = Pacer::new(stream_interval);
    let phase_start = Instant::now();
    let first_rekey = phase_start + settle;
    let end = first_rekey + rekey_interval * rekeys as u32 + settle;
    let mut next_rekey = first_rekey;
    let mut rekeys_sent = 0usize;
    // When the initiation in flight was sent: (for its duration, in ns of the shared clock for the log).
    let mut pending: Option<(Instant, u64)> = None;
    let mut windows: Vec<(u64, u64)> = Vec::new();
    let mut handshake_ms: Vec<f64> = Vec::new();
    let mut overlapped = 0usize;
    let mut refused = 0usize;
    let mut sequence = 0u64;
    let mut not_sent = 0u64;
    let mut inner = build_inner_packet(inner_src, inner_dst, dst_port);

    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if rekeys_sent < rekeys && now >= next_rekey {
            if pending.is_some() {
                overlapped += 1;
            }
            peer.initiate()?;
            pending = Some((Instant::now(), shared_clock_ns()));
            rekeys_sent += 1;
            next_rekey += rekey_interval;
        }
        if pacer.due(now) {
            let payload_at = inner.len() - PAYLOAD_LEN;
            inner[payload_at..].copy_from_slice(&sequence.to_be_bytes());
            sequence += 1;
            if !peer.send_inner(&inner) {
                not_sent += 1;
            }
        }
        let mut wait = pacer.until_next(Instant::now());
        if rekeys_sent < rekeys {
            wait = wait.min(next_rekey.saturating_duration_since(Instant::now()));
        }
        if let Some(n) = recv_within(&peer.socket, &mut buffer, wait)? {
            let datagram = buffer[..n].to_vec();
            match peer.receive(&datagram, &mut meter) {
                Some(true) => {
                    if let Some((sent_at, sent_ns)) = pending.take() {
                        handshake_ms.push(sent_at.elapsed().as_secs_f64() * 1e3);
                        windows.push((sent_ns, shared_clock_ns()));
                    }
                }
                Some(false) => refused += 1,
                None => {}
            }
        }
    }

    handshake_ms.sort_by(|a, b| a.total_cmp(b));
    println!("rekeys_sent={rekeys_sent}");
    println!("rekeys_completed={}", handshake_ms.len());
    println!("rekeys_overlapped={overlapped}");
    println!("rekeys_refused={refused}");
    if !handshake_ms.is_empty() {
        println!("handshake_ms_min={:.3}", handshake_ms[0]);
        println!(
            "handshake_ms_median={:.3}",
            handshake_ms[handshake_ms.len() / 2]
        );
        println!(
            "handshake_ms_max={:.3}",
            handshake_ms[handshake_ms.len() - 1]
        );
    }
    for (sent, done) in &windows {
        println!("handshake_at={sent},{done}");
    }
    println!("stream_sent={sequence}");
    println!("stream_not_sent={not_sent}");
    meter.print("rx_");
    if let Some(drops) = socket_drops(&peer.socket) {
        println!("rx_socket_drops={drops}");
    }
    Ok(())
}

/// Waits up to `wait` for one datagram (at least 50 µs, so the loop never spins).
fn recv_within(
    socket: &UdpSocket,
    buffer: &mut [u8],
    wait: Duration,
) -> Result<Option<usize>, String> {
    socket
        .set_read_timeout(Some(wait.max(Duration::from_micros(50))))
        .map_err(|e| e.to_string())?;
    match socket.recv(buffer) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        // ICMP port unreachable from a daemon not listening yet surfaces here; not fatal.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(None),
        Err(e) => Err(format!("recv: {e}")),
    }
}

/// An IPv4/UDP packet with an 8-byte payload (the sequence number, filled in per send). The UDP
/// checksum is left 0 (allowed over IPv4); the IPv4 header checksum must be right or the
/// receiving kernel drops the packet.
fn build_inner_packet(src: Ipv4Addr, dst: Ipv4Addr, dst_port: u16) -> Vec<u8> {
    let total = 20 + 8 + PAYLOAD_LEN;
    let mut packet = vec![0u8; total];
    packet[0] = 0x45;
    packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    packet[6] = 0x40; // don't fragment
    packet[8] = 64; // TTL
    packet[9] = 17; // UDP
    packet[12..16].copy_from_slice(&src.octets());
    packet[16..20].copy_from_slice(&dst.octets());
    let checksum = ipv4_header_checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet[20..22].copy_from_slice(&INNER_SOURCE_PORT.to_be_bytes());
    packet[22..24].copy_from_slice(&dst_port.to_be_bytes());
    packet[24..26].copy_from_slice(&((8 + PAYLOAD_LEN) as u16).to_be_bytes());
    packet
}

fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|word| u32::from(u16::from_be_bytes([word[0], word[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn inner_udp_payload(packet: &[u8]) -> Option<&[u8]> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    if packet.len() < header_len + 8 || packet[9] != 17 {
        return None;
    }
    Some(&packet[header_len + 8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_packet_checksum_verifies_to_zero() {
        let packet = build_inner_packet(
            Ipv4Addr::new(10, 201, 0, 2),
            Ipv4Addr::new(10, 201, 0, 1),
            5555,
        );
        // Summing a header that includes its checksum gives 0xffff, i.e. a complement of 0.
        assert_eq!(ipv4_header_checksum(&packet[..20]), 0);
        assert_eq!(inner_udp_payload(&packet).unwrap().len(), PAYLOAD_LEN);
    }
}
