//! The device's I/O layer in a network namespace: TUN offloads and UDP
//! batching (GSO out, GRO and recvmmsg in) against the real kernel.

mod device_support;

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::time::Duration;

use device_support::Netns;
use wg_pkcs11::device::tun::{Tun, VNET_HDR_LEN};
use wg_pkcs11::device::udp::{RecvBatch, UdpSocket};

#[test]
fn gso_send_arrives_as_separate_datagrams_and_gro_receive_splits_them() {
    let ns = Netns::new("wgio");
    ns.enter(|| {
        let rx = UdpSocket::bind(0, 0).expect("bind");
        let tx = UdpSocket::bind(0, 0).expect("bind");
        let to: SocketAddr = format!("127.0.0.1:{}", rx.port()).parse().unwrap();
        // 20 datagrams of 1000 bytes and a short one, in one GSO send.
        let mut buf = Vec::new();
        for i in 0..20u8 {
            buf.extend(std::iter::repeat_n(i, 1000));
        }
        buf.extend_from_slice(&[99; 123]);
        tx.send_segments(&buf, 1000, to).expect("GSO send");
        std::thread::sleep(Duration::from_millis(50));
        let mut batch = RecvBatch::new(8, 65535);
        let mut got: Vec<Vec<u8>> = Vec::new();
        for _ in 0..10 {
            let n = batch.recv(&rx).expect("recvmmsg");
            for i in 0..n {
                let (src, data, seg) = batch.slot(i);
                assert_eq!(src.unwrap().port(), tx.port());
                got.extend(data.chunks(seg).map(|c| c.to_vec()));
            }
        }
        assert_eq!(got.len(), 21, "every datagram arrives separately");
        for (i, d) in got.iter().take(20).enumerate() {
            assert_eq!(d, &vec![i as u8; 1000]);
        }
        assert_eq!(got[20], vec![99; 123]);
        // A plain socket on the other side sees ordinary datagrams too.
        let plain = StdUdp::bind("127.0.0.1:0").unwrap();
        tx.send_segments(&buf[..3000], 1000, plain.local_addr().unwrap())
            .unwrap();
        let mut b = [0u8; 2000];
        for _ in 0..3 {
            assert_eq!(plain.recv(&mut b).unwrap(), 1000);
        }
    });
}

#[test]
fn ipv6_and_v4_mapped_peers_share_the_socket() {
    let ns = Netns::new("wgio");
    ns.enter(|| {
        let rx = UdpSocket::bind(0, 0).expect("bind");
        let c6 = StdUdp::bind("[::1]:0").unwrap();
        c6.send_to(b"six", format!("[::1]:{}", rx.port())).unwrap();
        let c4 = StdUdp::bind("127.0.0.1:0").unwrap();
        c4.send_to(b"four", format!("127.0.0.1:{}", rx.port()))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut batch = RecvBatch::new(4, 2048);
        let n = batch.recv(&rx).unwrap();
        assert_eq!(n, 2);
        let mut seen = Vec::new();
        for i in 0..n {
            let (src, data, _) = batch.slot(i);
            seen.push((src.unwrap(), data.to_vec()));
        }
        assert!(seen.contains(&(c6.local_addr().unwrap(), b"six".to_vec())));
        // The v4 sender is reported as a plain IPv4 address, not v4-mapped.
        assert!(seen.contains(&(c4.local_addr().unwrap(), b"four".to_vec())));
        rx.send_to(b"back", c4.local_addr().unwrap()).unwrap();
        let mut b = [0u8; 16];
        assert_eq!(c4.recv(&mut b).unwrap(), 4);
    });
}

#[test]
fn tun_with_offload_answers_a_ping_written_to_it() {
    let ns = Netns::new("wgio");
    let name = "wgiotun0".to_string();
    let ns_name = ns.name.clone();
    let tun = ns.enter(move || Tun::create(&name, true).expect("create TUN"));
    assert!(
        tun.offload(),
        "this kernel supports IFF_VNET_HDR and TSO offloads"
    );
    let _ = ns_name;
    tun.set_mtu(1420).ok();
    ns.ip(&["addr", "add", "10.77.0.1/24", "dev", tun.name()]);
    ns.ip(&["link", "set", tun.name(), "up"]);
    // An ICMP echo request from 10.77.0.2 to our address, written with an empty virtio-net header.
    let mut pkt = vec![0u8; VNET_HDR_LEN];
    let mut ip = vec![
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 1, 0, 0, 10, 77, 0, 2, 10, 77, 0, 1, 8, 0, 0, 0, 0x12,
        0x34, 0, 1,
    ];
    let c = !fold(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let c = !fold(&ip[20..]);
    ip[22..24].copy_from_slice(&c.to_be_bytes());
    pkt.extend_from_slice(&ip);
    tun.write(&pkt).expect("write to TUN");
    let mut buf = vec![0u8; 70000];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match tun.read(&mut buf) {
            Ok(n) => {
                let p = &buf[VNET_HDR_LEN..n];
                // Ignore IPv6 router solicitations and the like.
                if p[0] >> 4 == 4 && p[9] == 1 && p[20] == 0 {
                    assert_eq!(&p[16..20], &[10, 77, 0, 2]);
                    assert_eq!(&p[24..26], &[0x12, 0x34]);
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no echo reply from the kernel"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("read TUN: {e}"),
        }
    }
}

fn fold(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}
