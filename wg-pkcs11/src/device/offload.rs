//! TUN offloads in userspace: splitting TSO super-packets read from the TUN
//! into MTU-sized packets (the send path), and coalescing consecutive TCP
//! segments of one flow back into a super-packet written to the TUN (the
//! receive path, "GRO"). Both cut system calls and the kernel's per-packet
//! work by an order of magnitude, which is where userspace WireGuard spends
//! its time (wireguard-go's tun/offload_linux.go does the same).

use std::fmt;

use super::tun::VNET_HDR_LEN;
use super::udp_offload::{segment_uso, uso_headers, GSO_UDP_L4};
pub use super::vnet::{checksum_add, checksum_fold, Offer, VnetHdr};
use super::vnet::{ipv4_header_checksum, pseudo_header_sum, F_NEEDS_CSUM};

const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_ECN: u8 = 0x80;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;

/// Why a packet from the TUN could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    Truncated,
    UnsupportedGso(u8),
    BadHeaders,
    TooManySegments,
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffloadError::Truncated => write!(f, "packet shorter than its headers"),
            OffloadError::UnsupportedGso(t) => write!(f, "unsupported GSO type {t}"),
            OffloadError::BadHeaders => write!(f, "virtio-net header does not match the packet"),
            OffloadError::TooManySegments => write!(f, "more segments than the output holds"),
        }
    }
}

/// The IP header length and the transport protocol of an IP packet.
fn ip_header(pkt: &[u8]) -> Option<(usize, u8)> {
    match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 => {
            let ihl = (pkt[0] & 0x0f) as usize * 4;
            (ihl >= 20 && pkt.len() >= ihl).then_some((ihl, pkt[9]))
        }
        6 if pkt.len() >= 40 => Some((40, pkt[6])),
        _ => None,
    }
}

/// What `segment` produced: `count` packets, each at `k * stride + head` in
/// the output; all but the last are `full_len` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub count: usize,
    pub full_len: usize,
    pub last_len: usize,
}

impl Segments {
    pub fn len_of(&self, k: usize) -> usize {
        if k + 1 == self.count {
            self.last_len
        } else {
            self.full_len
        }
    }
}

/// Whether this TUN read (vnet header first) is one packet rather than a TSO / USO
/// super-packet that `segment` would split.
pub fn is_single_packet(pkt: &[u8]) -> bool {
    VnetHdr::decode(pkt).is_some_and(|h| h.gso_type & !GSO_ECN == GSO_NONE)
}

/// The size of the largest packet `segment` will produce from this TUN read
/// (vnet header included in `pkt`), so the caller can choose a stride.
pub fn max_segment_len(pkt: &[u8]) -> Result<usize, OffloadError> {
    let hdr = VnetHdr::decode(pkt).ok_or(OffloadError::Truncated)?;
    let ip = &pkt[VNET_HDR_LEN..];
    if hdr.gso_type & !GSO_ECN == GSO_NONE {
        return Ok(ip.len());
    }
    if hdr.gso_type == GSO_UDP_L4 {
        let iphl = uso_headers(ip, &hdr).ok_or(OffloadError::BadHeaders)?;
        return Ok((iphl + 8 + hdr.gso_size as usize).min(ip.len()));
    }
    let (_, hdr_len) = tcp_headers(ip, &hdr)?;
    Ok((hdr_len + hdr.gso_size as usize).min(ip.len()))
}

/// For a TSO packet: (IP header length, all headers' length), checked.
fn tcp_headers(ip: &[u8], hdr: &VnetHdr) -> Result<(usize, usize), OffloadError> {
    let (iphl, proto) = ip_header(ip).ok_or(OffloadError::BadHeaders)?;
    let want = match hdr.gso_type & !GSO_ECN {
        GSO_TCPV4 => 4,
        GSO_TCPV6 => 6,
        t => return Err(OffloadError::UnsupportedGso(t)),
    };
    if ip[0] >> 4 != want || proto != 6 || hdr.csum_start as usize != iphl || hdr.gso_size == 0 {
        return Err(OffloadError::BadHeaders);
    }
    if ip.len() < iphl + 20 {
        return Err(OffloadError::Truncated);
    }
    // The kernel's hdr_len has been wrong in some versions; the TCP data
    // offset is the truth.
    let doff = (ip[iphl + 12] >> 4) as usize * 4;
    if doff < 20 || ip.len() < iphl + doff {
        return Err(OffloadError::BadHeaders);
    }
    Ok((iphl, iphl + doff))
}

/// Split one packet read from an offloading TUN (`pkt` starts with the
/// virtio-net header) into wire-sized IP packets with correct checksums,
/// packet `k` written at `out[k * stride + head..]`.
pub fn segment(
    pkt: &[u8],
    out: &mut [u8],
    head: usize,
    stride: usize,
) -> Result<Segments, OffloadError> {
    let hdr = VnetHdr::decode(pkt).ok_or(OffloadError::Truncated)?;
    let ip = &pkt[VNET_HDR_LEN..];
    if hdr.gso_type & !GSO_ECN == GSO_NONE {
        if head + ip.len() > out.len() {
            return Err(OffloadError::TooManySegments);
        }
        let dst = &mut out[head..head + ip.len()];
        dst.copy_from_slice(ip);
        if hdr.flags & F_NEEDS_CSUM != 0 {
            complete_checksum(dst, &hdr)?;
        }
        return Ok(Segments {
            count: 1,
            full_len: ip.len(),
            last_len: ip.len(),
        });
    }
    if hdr.gso_type == GSO_UDP_L4 {
        uso_headers(ip, &hdr).ok_or(OffloadError::BadHeaders)?;
        let (count, full_len, last_len) =
            segment_uso(ip, &hdr, out, head, stride).ok_or(OffloadError::TooManySegments)?;
        return Ok(Segments {
            count,
            full_len,
            last_len,
        });
    }
    let (iphl, hlen) = tcp_headers(ip, &hdr)?;
    let v4 = ip[0] >> 4 == 4;
    let mss = hdr.gso_size as usize;
    let payload = &ip[hlen..];
    let count = payload.len().div_ceil(mss).max(1);
    if (count - 1) * stride + head + hlen + mss.min(payload.len()) > out.len()
        || stride < hlen + mss.min(payload.len())
    {
        return Err(OffloadError::TooManySegments);
    }
    let seq0 = u32::from_be_bytes([ip[iphl + 4], ip[iphl + 5], ip[iphl + 6], ip[iphl + 7]]);
    let id0 = u16::from_be_bytes([ip[4], ip[5]]);
    let flags0 = ip[iphl + 13];
    let mut last_len = 0;
    for k in 0..count {
        let start = k * mss;
        let end = (start + mss).min(payload.len());
        let seg_len = hlen + end - start;
        let base = k * stride + head;
        let p = &mut out[base..base + seg_len];
        p[..hlen].copy_from_slice(&ip[..hlen]);
        p[hlen..].copy_from_slice(&payload[start..end]);
        if v4 {
            p[2..4].copy_from_slice(&(seg_len as u16).to_be_bytes());
            p[4..6].copy_from_slice(&id0.wrapping_add(k as u16).to_be_bytes());
            ipv4_header_checksum(p, iphl);
        } else {
            p[4..6].copy_from_slice(&((seg_len - 40) as u16).to_be_bytes());
        }
        let tcp = iphl;
        p[tcp + 4..tcp + 8].copy_from_slice(&seq0.wrapping_add(start as u32).to_be_bytes());
        let mut flags = flags0;
        if k + 1 != count {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if k != 0 {
            flags &= !TCP_CWR;
        }
        p[tcp + 13] = flags;
        p[tcp + 16] = 0;
        p[tcp + 17] = 0;
        let sum = checksum_add(&p[tcp..], pseudo_header_sum(p, 6, seg_len - iphl));
        let c = !checksum_fold(sum);
        p[tcp + 16..tcp + 18].copy_from_slice(&c.to_be_bytes());
        last_len = seg_len;
    }
    Ok(Segments {
        count,
        full_len: hlen + mss.min(payload.len()),
        last_len,
    })
}

/// Finish a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM): the field at
/// csum_start + csum_offset holds the pseudo-header sum; sum from csum_start.
fn complete_checksum(p: &mut [u8], hdr: &VnetHdr) -> Result<(), OffloadError> {
    let start = hdr.csum_start as usize;
    let field = start + hdr.csum_offset as usize;
    if field + 2 > p.len() || start > p.len() {
        return Err(OffloadError::BadHeaders);
    }
    let c = !checksum_fold(checksum_add(&p[start..], 0));
    // UDP sends a computed zero as all ones; TCP would never produce 0 here either way.
    let c = if c == 0 { 0xffff } else { c };
    p[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Coalesces consecutive TCP segments of one flow into a super-packet for an
/// offloading TUN. Packets that cannot join are handed back to be written alone.
pub struct Coalescer {
    /// vnet header + IP + TCP + payloads of the packet being built.
    buf: Box<[u8]>,
    len: usize,
    segments: usize,
    gso_size: usize,
    hlen: usize,
    iphl: usize,
    next_seq: u32,
    /// The last segment was shorter than gso_size (or pushed): nothing more may follow.
    closed: bool,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl Coalescer {
    pub fn new() -> Coalescer {
        Coalescer {
            buf: vec![0u8; VNET_HDR_LEN + 65535].into_boxed_slice(),
            len: 0,
            segments: 0,
            gso_size: 0,
            hlen: 0,
            iphl: 0,
            next_seq: 0,
            closed: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segments == 0
    }

    /// Offer one decrypted IP packet (with a valid checksum).
    pub fn offer(&mut self, pkt: &[u8]) -> Offer {
        let Some((iphl, proto)) = ip_header(pkt) else {
            return Offer::Alone;
        };
        if proto != 6 || pkt.len() < iphl + 20 {
            return Offer::Alone;
        }
        let v4 = pkt[0] >> 4 == 4;
        if v4 && (iphl != 20 || u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff != 0) {
            return Offer::Alone; // options or fragments
        }
        if v4 && u16::from_be_bytes([pkt[2], pkt[3]]) as usize != pkt.len() {
            return Offer::Alone;
        }
        if !v4 && u16::from_be_bytes([pkt[4], pkt[5]]) as usize + 40 != pkt.len() {
            return Offer::Alone;
        }
        let tcp = &pkt[iphl..];
        let doff = (tcp[12] >> 4) as usize * 4;
        let flags = tcp[13];
        if doff < 20
            || pkt.len() < iphl + doff
            || flags & !(TCP_ACK | TCP_PSH) != 0
            || flags & TCP_ACK == 0
        {
            return Offer::Alone;
        }
        let hlen = iphl + doff;
        let plen = pkt.len() - hlen;
        if plen == 0 {
            return Offer::Alone; // pure ACKs are not coalesced (the kernel needs each)
        }
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        if self.segments == 0 {
            self.start(pkt, iphl, hlen, plen, seq, flags);
            return Offer::Merged;
        }
        let cur = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + self.hlen];
        let same_flow = hlen == self.hlen
            && if v4 {
                cur[0] == pkt[0]
                    && cur[1] == pkt[1]
                    && cur[8] == pkt[8]
                    && cur[9] == pkt[9]
                    && cur[12..20] == pkt[12..20]
            } else {
                cur[0..4] == pkt[0..4] && cur[6..8] == pkt[6..8] && cur[8..40] == pkt[8..40]
            }
            && cur[iphl..iphl + 4] == tcp[..4];
        if !same_flow {
            return Offer::Flush;
        }
        // Same ack, window and options; the next byte in sequence; same size.
        let fits = !self.closed
            && seq == self.next_seq
            && cur[iphl + 8..iphl + 12] == tcp[8..12]
            && cur[iphl + 14..iphl + 16] == tcp[14..16]
            && cur[iphl + 20..hlen] == tcp[20..doff]
            && plen <= self.gso_size
            && self.len + plen <= self.buf.len()
            && self.segments < 64;
        if !fits {
            return Offer::Flush;
        }
        self.buf[self.len..self.len + plen].copy_from_slice(&pkt[hlen..]);
        self.len += plen;
        self.segments += 1;
        self.next_seq = seq.wrapping_add(plen as u32);
        if plen < self.gso_size || flags & TCP_PSH != 0 {
            self.closed = true;
            self.buf[VNET_HDR_LEN + iphl + 13] |= flags & TCP_PSH;
        }
        Offer::Merged
    }

    fn start(&mut self, pkt: &[u8], iphl: usize, hlen: usize, plen: usize, seq: u32, flags: u8) {
        self.buf[VNET_HDR_LEN..VNET_HDR_LEN + pkt.len()].copy_from_slice(pkt);
        self.len = VNET_HDR_LEN + pkt.len();
        self.segments = 1;
        self.gso_size = plen;
        self.hlen = hlen;
        self.iphl = iphl;
        self.next_seq = seq.wrapping_add(plen as u32);
        self.closed = flags & TCP_PSH != 0;
    }

    /// The packet to write to the TUN (vnet header first), and reset.
    /// A single segment goes out as a plain packet with an empty header.
    pub fn finish(&mut self) -> &[u8] {
        let len = self.len;
        if self.segments == 0 {
            return &[];
        }
        let segments = self.segments;
        self.segments = 0;
        if segments == 1 {
            VnetHdr::default().encode(&mut self.buf[..VNET_HDR_LEN]);
            return &self.buf[..len];
        }
        let iphl = self.iphl;
        let ip_len = len - VNET_HDR_LEN;
        let v4 = self.buf[VNET_HDR_LEN] >> 4 == 4;
        let ip = &mut self.buf[VNET_HDR_LEN..len];
        if v4 {
            ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            ipv4_header_checksum(ip, iphl);
        } else {
            ip[4..6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
        }
        // NEEDS_CSUM: the field carries the pseudo-header sum, the kernel adds the rest.
        let pseudo = checksum_fold(pseudo_header_sum(ip, 6, ip_len - iphl));
        ip[iphl + 16..iphl + 18].copy_from_slice(&pseudo.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if v4 { GSO_TCPV4 } else { GSO_TCPV6 },
            hdr_len: self.hlen as u16,
            gso_size: self.gso_size as u16,
            csum_start: iphl as u16,
            csum_offset: 16,
        };
        hdr.encode(&mut self.buf[..VNET_HDR_LEN]);
        &self.buf[..len]
    }
}

#[cfg(test)]
mod tests;
