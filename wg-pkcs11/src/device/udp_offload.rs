//! UDP segmentation offload (USO) on the TUN, the UDP counterpart of the TCP offloads in
//! `offload.rs`: with TUN_F_USO4/USO6 (Linux 6.2 and later) the kernel takes one "super-datagram"
//! (VIRTIO_NET_HDR_GSO_UDP_L4) standing for a run of same-size datagrams of one flow, and may hand
//! us such packets when a local program sends with UDP_SEGMENT.
//!
//! Why: without it every decrypted UDP datagram costs one write(2) to the TUN. The profile of a
//! full-rate UDP stream (bench/README.md) shows those writes as the receive path's largest cost
//! after the AEAD; coalescing a batch from one recvmmsg into one write removes most of them, as
//! current wireguard-go does.
//!
//! Coalescing keeps every datagram's bytes and boundaries: the kernel splits the super-datagram
//! at `gso_size` again before any socket sees it, so the receiving program reads the datagrams
//! the peer sent, in order. As with the TCP coalescer, the datagrams' own checksums are not
//! verified: the AEAD has authenticated every byte (the kernel's WireGuard marks decrypted packets
//! CHECKSUM_UNNECESSARY for the same reason), and the kernel writes fresh ones when it splits.

use super::tun::VNET_HDR_LEN;
use super::vnet::{
    checksum_add, checksum_fold, ipv4_header_checksum, pseudo_header_sum, Offer, VnetHdr,
    F_NEEDS_CSUM,
};

/// IANA protocol number of UDP (IPv4 protocol, IPv6 next header, the pseudo-header).
const IPPROTO_UDP: u8 = 17;

/// VIRTIO_NET_HDR_GSO_UDP_L4 (include/uapi/linux/virtio_net.h).
pub const GSO_UDP_L4: u8 = 5;
const UDP_HLEN: usize = 8;
/// The kernel's UDP_MAX_SEGMENTS on older kernels (newer allow 128).
const MAX_SEGMENTS: usize = 64;

/// The IP header length of a UDP packet fit for coalescing: IPv4 without options or
/// fragmentation, or IPv6 whose next header is UDP; its lengths consistent with `pkt`.
fn udp_ip_header(pkt: &[u8]) -> Option<usize> {
    let iphl = match pkt.first()? >> 4 {
        4 if pkt.len() >= 20 + UDP_HLEN => {
            let ok = pkt[0] == 0x45
                && pkt[9] == IPPROTO_UDP
                && u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff == 0
                && u16::from_be_bytes([pkt[2], pkt[3]]) as usize == pkt.len();
            ok.then_some(20)?
        }
        6 if pkt.len() >= 40 + UDP_HLEN => {
            let ok = pkt[6] == IPPROTO_UDP
                && u16::from_be_bytes([pkt[4], pkt[5]]) as usize + 40 == pkt.len();
            ok.then_some(40)?
        }
        _ => return None,
    };
    let udp_len = u16::from_be_bytes([pkt[iphl + 4], pkt[iphl + 5]]) as usize;
    (udp_len == pkt.len() - iphl).then_some(iphl)
}

/// Coalesces consecutive datagrams of one UDP flow (same addresses, ports, TOS/traffic class and
/// TTL/hop limit; every payload `gso_size` bytes except a shorter last one) into one
/// VIRTIO_NET_HDR_GSO_UDP_L4 packet for a TUN with USO.
pub struct UdpCoalescer {
    /// vnet header + IP + UDP header + payloads of the packet being built.
    buf: Box<[u8]>,
    len: usize,
    segments: usize,
    gso_size: usize,
    iphl: usize,
    /// A shorter datagram ended the run: nothing more may follow it.
    closed: bool,
}

impl Default for UdpCoalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl UdpCoalescer {
    pub fn new() -> UdpCoalescer {
        UdpCoalescer {
            buf: vec![0u8; VNET_HDR_LEN + 65535].into_boxed_slice(),
            len: 0,
            segments: 0,
            gso_size: 0,
            iphl: 0,
            closed: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segments == 0
    }

    /// Offer one decrypted IP packet.
    pub fn offer(&mut self, pkt: &[u8]) -> Offer {
        let Some(iphl) = udp_ip_header(pkt) else {
            return Offer::Alone;
        };
        let plen = pkt.len() - iphl - UDP_HLEN;
        if plen == 0 {
            return Offer::Alone;
        }
        if self.segments == 0 {
            self.buf[VNET_HDR_LEN..VNET_HDR_LEN + pkt.len()].copy_from_slice(pkt);
            self.len = VNET_HDR_LEN + pkt.len();
            self.segments = 1;
            self.gso_size = plen;
            self.iphl = iphl;
            self.closed = false;
            return Offer::Merged;
        }
        let cur = &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + self.iphl + UDP_HLEN];
        let same_flow = iphl == self.iphl
            && if iphl == 20 {
                // version/IHL, TOS, flags (DF), TTL, protocol, addresses
                cur[0..2] == pkt[0..2]
                    && cur[6] & 0x40 == pkt[6] & 0x40
                    && cur[8..10] == pkt[8..10]
                    && cur[12..20] == pkt[12..20]
            } else {
                // version, traffic class, flow label, next header, hop limit, addresses
                cur[0..4] == pkt[0..4] && cur[6..40] == pkt[6..40]
            }
            && cur[iphl..iphl + 4] == pkt[iphl..iphl + 4];
        let fits = same_flow
            && !self.closed
            && plen <= self.gso_size
            && self.len + plen <= self.buf.len()
            && self.segments < MAX_SEGMENTS;
        if !fits {
            return Offer::Flush;
        }
        self.buf[self.len..self.len + plen].copy_from_slice(&pkt[iphl + UDP_HLEN..]);
        self.len += plen;
        self.segments += 1;
        if plen < self.gso_size {
            self.closed = true;
        }
        Offer::Merged
    }

    /// The packet to write to the TUN (vnet header first), and reset. A single datagram goes
    /// out as it came, with an empty header.
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
        let ip = &mut self.buf[VNET_HDR_LEN..len];
        if iphl == 20 {
            ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            ipv4_header_checksum(ip, 20);
        } else {
            ip[4..6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
        }
        let l4_len = ip_len - iphl;
        ip[iphl + 4..iphl + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        // NEEDS_CSUM: the field carries the pseudo-header sum, the kernel adds the rest to each
        // datagram it cuts out.
        let pseudo = checksum_fold(pseudo_header_sum(ip, IPPROTO_UDP, l4_len));
        ip[iphl + 6..iphl + 8].copy_from_slice(&pseudo.to_be_bytes());
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: (iphl + UDP_HLEN) as u16,
            gso_size: self.gso_size as u16,
            csum_start: iphl as u16,
            csum_offset: 6,
        }
        .encode(&mut self.buf[..VNET_HDR_LEN]);
        &self.buf[..len]
    }
}

/// The IP header length of a USO super-datagram read from the TUN, checked against its
/// virtio-net header.
pub fn uso_headers(ip: &[u8], hdr: &VnetHdr) -> Option<usize> {
    let iphl = match ip.first()? >> 4 {
        4 if ip.len() >= 20 && ip[0] == 0x45 && ip[9] == IPPROTO_UDP => 20,
        6 if ip.len() >= 40 && ip[6] == IPPROTO_UDP => 40,
        _ => return None,
    };
    (ip.len() >= iphl + UDP_HLEN && hdr.csum_start as usize == iphl && hdr.gso_size > 0)
        .then_some(iphl)
}

/// Split a USO super-datagram (IP + UDP header + payload) into datagrams of `gso_size` bytes of
/// payload (the last shorter), each a complete IP packet with its checksums, packet `k` written
/// at `out[k * stride + head..]`. Returns (count, full length, last length), or None when the
/// output cannot hold them.
pub fn segment_uso(
    ip: &[u8],
    hdr: &VnetHdr,
    out: &mut [u8],
    head: usize,
    stride: usize,
) -> Option<(usize, usize, usize)> {
    let iphl = uso_headers(ip, hdr)?;
    let hlen = iphl + UDP_HLEN;
    let mss = hdr.gso_size as usize;
    let payload = &ip[hlen..];
    let count = payload.len().div_ceil(mss).max(1);
    if stride < hlen + mss.min(payload.len())
        || (count - 1) * stride + head + hlen + mss.min(payload.len()) > out.len()
    {
        return None;
    }
    let id0 = u16::from_be_bytes([ip[4], ip[5]]);
    let mut last_len = 0;
    for k in 0..count {
        let start = k * mss;
        let end = (start + mss).min(payload.len());
        let seg_len = hlen + end - start;
        let base = k * stride + head;
        let p = &mut out[base..base + seg_len];
        p[..hlen].copy_from_slice(&ip[..hlen]);
        p[hlen..].copy_from_slice(&payload[start..end]);
        if iphl == 20 {
            p[2..4].copy_from_slice(&(seg_len as u16).to_be_bytes());
            p[4..6].copy_from_slice(&id0.wrapping_add(k as u16).to_be_bytes());
            ipv4_header_checksum(p, 20);
        } else {
            p[4..6].copy_from_slice(&((seg_len - 40) as u16).to_be_bytes());
        }
        let l4_len = seg_len - iphl;
        p[iphl + 4..iphl + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        p[iphl + 6] = 0;
        p[iphl + 7] = 0;
        let c = !checksum_fold(checksum_add(
            &p[iphl..],
            pseudo_header_sum(p, IPPROTO_UDP, l4_len),
        ));
        // A computed zero goes out as all ones (zero means "no checksum" in IPv4, and is
        // invalid in IPv6).
        let c = if c == 0 { 0xffff } else { c };
        p[iphl + 6..iphl + 8].copy_from_slice(&c.to_be_bytes());
        last_len = seg_len;
    }
    Some((count, hlen + mss.min(payload.len()), last_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP/IPv4 or IPv6 packet with correct checksums.
    fn udp(v6: bool, ttl: u8, payload: &[u8]) -> Vec<u8> {
        let iphl = if v6 { 40 } else { 20 };
        let mut p = vec![0u8; iphl + UDP_HLEN + payload.len()];
        let len = p.len();
        if v6 {
            p[0] = 0x60;
            p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            p[6] = 17;
            p[7] = ttl;
            p[8..24].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            p[24..40].copy_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        } else {
            p[0] = 0x45;
            p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            p[6] = 0x40;
            p[8] = ttl;
            p[9] = 17;
            p[12..16].copy_from_slice(&[10, 0, 0, 1]);
            p[16..20].copy_from_slice(&[10, 0, 0, 2]);
            ipv4_header_checksum(&mut p, 20);
        }
        p[iphl..iphl + 2].copy_from_slice(&4000u16.to_be_bytes());
        p[iphl + 2..iphl + 4].copy_from_slice(&5000u16.to_be_bytes());
        p[iphl + 4..iphl + 6].copy_from_slice(&((len - iphl) as u16).to_be_bytes());
        p[iphl + UDP_HLEN..].copy_from_slice(payload);
        let c = !checksum_fold(checksum_add(
            &p[iphl..],
            pseudo_header_sum(&p, IPPROTO_UDP, len - iphl),
        ));
        p[iphl + 6..iphl + 8].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn udp_checksum_ok(p: &[u8]) -> bool {
        let iphl = if p[0] >> 4 == 4 { 20 } else { 40 };
        checksum_fold(checksum_add(
            &p[iphl..],
            pseudo_header_sum(p, IPPROTO_UDP, p.len() - iphl),
        )) == 0xffff
    }

    /// Coalesce datagrams, then split the result as the kernel would (segment_uso does what
    /// __udp_gso_segment does): every datagram comes back byte for byte, boundaries included.
    #[test]
    fn coalesced_datagrams_split_back_into_the_same_datagrams() {
        for v6 in [false, true] {
            let sent: Vec<Vec<u8>> = (0..5u8)
                .map(|i| udp(v6, 64, &vec![i; if i == 4 { 300 } else { 1000 }]))
                .collect();
            let mut c = UdpCoalescer::new();
            for p in &sent {
                assert_eq!(c.offer(p), Offer::Merged);
            }
            // After the shorter one nothing may join.
            assert_eq!(c.offer(&sent[0]), Offer::Flush);
            let out = c.finish().to_vec();
            let hdr = VnetHdr::decode(&out).unwrap();
            let iphl = if v6 { 40 } else { 20 };
            assert_eq!(
                (
                    hdr.gso_type,
                    hdr.gso_size,
                    hdr.hdr_len,
                    hdr.csum_start,
                    hdr.csum_offset
                ),
                (GSO_UDP_L4, 1000, (iphl + 8) as u16, iphl as u16, 6)
            );
            assert_eq!(hdr.flags, F_NEEDS_CSUM);
            let ip = &out[VNET_HDR_LEN..];
            assert_eq!(ip.len(), iphl + 8 + 4300);
            // The kernel adds the data to the pseudo-header sum in the checksum field: finish
            // the super-datagram's checksum that way, then split it as USO from the TUN.
            let mut seg = vec![0u8; 5 * 1100];
            let (count, full, last) = segment_uso(ip, &hdr, &mut seg, 0, 1100).unwrap();
            assert_eq!((count, full, last), (5, iphl + 8 + 1000, iphl + 8 + 300));
            for (k, want) in sent.iter().enumerate() {
                let got = &seg[k * 1100..k * 1100 + want.len()];
                assert!(udp_checksum_ok(got), "datagram {k} checksum (v6 {v6})");
                if v6 {
                    assert_eq!(got, &want[..], "datagram {k}");
                } else {
                    // Only the IPv4 ID (and so its header checksum) may differ.
                    assert_eq!(
                        (&got[..4], &got[6..10], &got[12..]),
                        (&want[..4], &want[6..10], &want[12..])
                    );
                }
            }
            assert!(c.is_empty());
        }
    }

    #[test]
    fn other_flows_sizes_and_headers_are_not_merged() {
        let mut c = UdpCoalescer::new();
        let a = udp(false, 64, &[1; 500]);
        assert_eq!(c.offer(&a), Offer::Merged);
        assert_eq!(c.offer(&udp(false, 63, &[1; 500])), Offer::Flush, "TTL");
        assert_eq!(c.offer(&udp(true, 64, &[1; 500])), Offer::Flush, "family");
        assert_eq!(c.offer(&udp(false, 64, &[1; 600])), Offer::Flush, "longer");
        let mut other_port = a.clone();
        other_port[21] ^= 1;
        assert_eq!(c.offer(&other_port), Offer::Flush, "port");
        let mut fragment = a.clone();
        fragment[6] |= 0x20;
        assert_eq!(c.offer(&fragment), Offer::Alone, "fragment");
        let mut bad_len = a.clone();
        bad_len[25] ^= 1;
        assert_eq!(c.offer(&bad_len), Offer::Alone, "UDP length");
        assert_eq!(c.offer(&udp(false, 64, &[])), Offer::Alone, "empty");
        let single = c.finish().to_vec();
        assert_eq!(VnetHdr::decode(&single).unwrap(), VnetHdr::default());
        assert_eq!(&single[VNET_HDR_LEN..], &a[..]);
    }

    #[test]
    fn sixty_four_datagrams_at_most() {
        let mut c = UdpCoalescer::new();
        let p = udp(false, 64, &[9; 100]);
        for _ in 0..MAX_SEGMENTS {
            assert_eq!(c.offer(&p), Offer::Merged);
        }
        assert_eq!(c.offer(&p), Offer::Flush);
    }

    #[test]
    fn random_input_never_panics() {
        let mut x: u64 = 0x2545f4914f6cdd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base = udp(false, 64, &[3; 200]);
        let mut c = UdpCoalescer::new();
        let mut out = vec![0u8; 8192];
        for round in 0..20000 {
            let mut p = base.clone();
            p.truncate((next() % 260) as usize);
            for _ in 0..2 {
                if !p.is_empty() {
                    let i = (next() as usize) % p.len();
                    p[i] = next() as u8;
                }
            }
            let _ = c.offer(&p);
            if round % 5 == 0 {
                let _ = c.finish();
            }
            let hdr = VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_UDP_L4,
                hdr_len: 28,
                gso_size: (next() % 300) as u16,
                csum_start: 20,
                csum_offset: 6,
            };
            let _ = segment_uso(&p, &hdr, &mut out, 16, 16 + (next() % 400) as usize);
        }
    }
}
