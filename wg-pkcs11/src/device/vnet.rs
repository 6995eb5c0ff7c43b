//! The virtio-net side of the TUN offloads, shared by the TCP ones (`offload.rs`) and the UDP
//! ones (`udp_offload.rs`): the header in front of every packet on an IFF_VNET_HDR TUN, the
//! Internet checksums both write, and what a coalescer did with an offered packet.

use super::tun::VNET_HDR_LEN;

/// VIRTIO_NET_HDR_F_NEEDS_CSUM: the receiver completes the checksum at csum_start/csum_offset.
pub(crate) const F_NEEDS_CSUM: u8 = 1;

/// `struct virtio_net_hdr` (little-endian fields, as on x86 and ARM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn decode(b: &[u8]) -> Option<VnetHdr> {
        if b.len() < VNET_HDR_LEN {
            return None;
        }
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    pub fn encode(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }
}

/// One's-complement sum of `data` added to `initial` (not folded, not inverted).
pub fn checksum_add(data: &[u8], initial: u64) -> u64 {
    let mut sum = initial;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, carry) = sum.overflowing_add(v);
        sum = s + carry as u64;
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        sum += u16::from_be_bytes([rest[i], rest[i + 1]]) as u64;
        i += 2;
    }
    if i < rest.len() {
        sum += (rest[i] as u64) << 8;
    }
    sum
}

/// Fold a sum to 16 bits (still not inverted).
pub fn checksum_fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The pseudo-header sum for TCP/UDP over IPv4 or IPv6 (`ip` is the IP header).
pub(crate) fn pseudo_header_sum(ip: &[u8], proto: u8, l4_len: usize) -> u64 {
    let addrs = if ip[0] >> 4 == 4 {
        &ip[12..20]
    } else {
        &ip[8..40]
    };
    checksum_add(addrs, proto as u64 + l4_len as u64)
}

pub(crate) fn ipv4_header_checksum(ip: &mut [u8], ihl: usize) {
    ip[10] = 0;
    ip[11] = 0;
    let c = !checksum_fold(checksum_add(&ip[..ihl], 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The outcome of offering a packet to the coalescer.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// Appended to the packet being built.
    Merged,
    /// Not mergeable: flush what is built (if anything), then offer again or write alone.
    Flush,
    /// Not a candidate at all (not TCP, options, flags): write it alone.
    Alone,
}
