//! Unit tests of `offload.rs`: TSO super-packets split into valid segments, segments coalesced
//! back, what stays alone, malformed headers refused, random input.

use super::*;

/// A TCP/IPv4 packet with correct checksums.
fn tcp4(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40 + payload.len()];
    p[0] = 0x45;
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[4..6].copy_from_slice(&7u16.to_be_bytes());
    p[6] = 0x40;
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 0, 0, 1]);
    p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    p[20..22].copy_from_slice(&1234u16.to_be_bytes());
    p[22..24].copy_from_slice(&80u16.to_be_bytes());
    p[24..28].copy_from_slice(&seq.to_be_bytes());
    p[28..32].copy_from_slice(&99u32.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = flags;
    p[34..36].copy_from_slice(&512u16.to_be_bytes());
    p[40..].copy_from_slice(payload);
    ipv4_header_checksum(&mut p, 20);
    let len = p.len();
    let c = !checksum_fold(checksum_add(&p[20..], pseudo_header_sum(&p, 6, len - 20)));
    p[36..38].copy_from_slice(&c.to_be_bytes());
    p
}

fn valid(p: &[u8]) -> bool {
    checksum_fold(checksum_add(&p[..20], 0)) == 0xffff
        && checksum_fold(checksum_add(
            &p[20..],
            pseudo_header_sum(p, 6, p.len() - 20),
        )) == 0xffff
}

#[test]
fn checksum_matches_rfc1071_example() {
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(checksum_fold(checksum_add(&data, 0)), 0xddf2);
    assert_eq!(checksum_fold(checksum_add(&data[..7], 0)), 0xddf2 - 0xf7);
}

#[test]
fn tso_packet_splits_into_valid_segments() {
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let big = tcp4(1000, TCP_ACK | TCP_PSH, &payload);
    let mut pkt = vec![0u8; VNET_HDR_LEN];
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        hdr_len: 40,
        gso_size: 1400,
        csum_start: 20,
        csum_offset: 16,
    }
    .encode(&mut pkt);
    pkt.extend_from_slice(&big);
    assert_eq!(max_segment_len(&pkt), Ok(1440));
    let mut out = vec![0u8; 3 * 1500];
    let s = segment(&pkt, &mut out, 16, 1500).unwrap();
    assert_eq!(
        s,
        Segments {
            count: 3,
            full_len: 1440,
            last_len: 40 + 200
        }
    );
    let mut joined = Vec::new();
    for k in 0..3 {
        let p = &out[k * 1500 + 16..k * 1500 + 16 + s.len_of(k)];
        assert!(valid(p), "segment {k} checksums");
        assert_eq!(
            u32::from_be_bytes(p[24..28].try_into().unwrap()),
            1000 + 1400 * k as u32
        );
        assert_eq!(p[33] & TCP_PSH != 0, k == 2, "PSH only on the last");
        joined.extend_from_slice(&p[40..]);
    }
    assert_eq!(joined, payload);
}

#[test]
fn segments_coalesce_back_and_reject_gaps() {
    let mut c = Coalescer::new();
    let a = tcp4(1, TCP_ACK, &[1; 100]);
    let b = tcp4(101, TCP_ACK, &[2; 100]);
    let gap = tcp4(500, TCP_ACK, &[3; 100]);
    assert_eq!(c.offer(&a), Offer::Merged);
    assert_eq!(c.offer(&b), Offer::Merged);
    assert_eq!(c.offer(&gap), Offer::Flush);
    let out = c.finish().to_vec();
    let hdr = VnetHdr::decode(&out).unwrap();
    assert_eq!(
        (hdr.gso_type, hdr.gso_size, hdr.hdr_len),
        (GSO_TCPV4, 100, 40)
    );
    assert_eq!(out.len(), VNET_HDR_LEN + 240);
    // Re-segmenting what we built gives the original packets back.
    let mut seg = vec![0u8; 2 * 200];
    let s = segment(&out, &mut seg, 0, 200).unwrap();
    assert_eq!(s.count, 2);
    assert_eq!(&seg[..140], &a[..]);
    // The second gets the next IP ID (and so its header checksum); the rest is the same.
    let second = &seg[200..340];
    assert!(valid(second));
    assert_eq!(
        (&second[..4], &second[6..10], &second[12..]),
        (&b[..4], &b[6..10], &b[12..])
    );
    assert!(c.is_empty());
    assert_eq!(c.offer(&gap), Offer::Merged);
    let single = c.finish();
    assert_eq!(VnetHdr::decode(single).unwrap(), VnetHdr::default());
    assert_eq!(&single[VNET_HDR_LEN..], &gap[..]);
}

#[test]
fn non_tcp_and_syn_stay_alone() {
    let mut c = Coalescer::new();
    let mut udp = tcp4(1, TCP_ACK, &[0; 10]);
    udp[9] = 17;
    assert_eq!(c.offer(&udp), Offer::Alone);
    assert_eq!(c.offer(&tcp4(1, 0x02, &[])), Offer::Alone);
    assert_eq!(c.offer(&[0x45, 0]), Offer::Alone);
    assert_eq!(c.offer(&[]), Offer::Alone);
}

#[test]
fn malformed_tso_headers_are_refused() {
    let big = tcp4(1, TCP_ACK, &[0; 2000]);
    let mut pkt = vec![0u8; VNET_HDR_LEN];
    VnetHdr {
        flags: 1,
        gso_type: GSO_TCPV6,
        hdr_len: 40,
        gso_size: 1000,
        csum_start: 20,
        csum_offset: 16,
    }
    .encode(&mut pkt);
    pkt.extend_from_slice(&big);
    let mut out = vec![0u8; 4000];
    assert_eq!(
        segment(&pkt, &mut out, 0, 2000),
        Err(OffloadError::BadHeaders)
    );
    assert_eq!(
        segment(&pkt[..5], &mut out, 0, 2000),
        Err(OffloadError::Truncated)
    );
}

/// Random and half-valid input must never panic: the TUN side is local
/// but the coalescer sees decrypted packets from peers.
#[test]
fn random_input_never_panics() {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let base = tcp4(5, TCP_ACK, &[7; 300]);
    let mut out = vec![0u8; 8192];
    let mut c = Coalescer::new();
    for round in 0..20000 {
        let len = (next() % 400) as usize;
        let mut p: Vec<u8> = if round % 2 == 0 {
            (0..len).map(|_| next() as u8).collect()
        } else {
            let mut p = base.clone();
            p.truncate(len.min(p.len()));
            for _ in 0..3 {
                if !p.is_empty() {
                    let i = (next() as usize) % p.len();
                    p[i] = next() as u8;
                }
            }
            p
        };
        let _ = c.offer(&p);
        if round % 7 == 0 {
            let _ = c.finish();
        }
        // As a TUN read: a random or plausible virtio-net header in front.
        let mut h = vec![0u8; VNET_HDR_LEN];
        if round % 3 == 0 {
            VnetHdr {
                flags: 1,
                gso_type: GSO_TCPV4,
                hdr_len: 40,
                gso_size: (next() % 1500) as u16,
                csum_start: 20,
                csum_offset: 16,
            }
            .encode(&mut h);
        } else {
            for b in h.iter_mut() {
                *b = next() as u8;
            }
        }
        h.append(&mut p);
        let stride = 16 + (next() % 1600) as usize;
        let _ = max_segment_len(&h);
        let _ = segment(&h, &mut out, 16, stride);
    }
}
