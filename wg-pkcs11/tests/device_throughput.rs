//! Throughput through the tunnel, single-stream TCP (iperf3), wg-pkcs11 on
//! both ends against wireguard-go on both ends and the mix, in one run,
//! alternating round by round. Not a pass/fail test: run it by hand with
//! `cargo test --release -p wg-pkcs11 --test device_throughput -- --ignored --nocapture`.

mod device_support;

use std::net::SocketAddr;
use std::sync::Arc;

use device_support::*;
use wg_pkcs11::device::{Device, DeviceConfig, PeerConfig};
use wg_pkcs11::key::soft::SoftKey;
use wg_pkcs11::key::StaticKey;

/// One end of the tunnel, kept alive for the round (dropped: stopped).
#[allow(dead_code)]
enum Side {
    Ours(Device),
    Go(WireguardGo),
}

#[allow(clippy::too_many_arguments)]
fn side(
    ns: &Netns,
    ours: bool,
    key: &SoftKey,
    port: u16,
    peer_key: [u8; 32],
    peer_ep: SocketAddr,
    me: &str,
    them: &str,
) -> Side {
    if ours {
        let mut c = DeviceConfig::new(
            &unique("wgt"),
            Arc::new(SoftKey::from_bytes(*key.private_bytes())),
        );
        c.listen_port = port;
        c.peers.push(peer(peer_key, Some(peer_ep), &[(them, 32)]));
        Side::Ours(start_device(
            ns,
            c,
            &format!("{me}/24"),
            &format!("fd10::{}/64", &me[me.len() - 1..]),
        ))
    } else {
        Side::Go(WireguardGo::start(
            ns,
            &key.private_bytes(),
            port,
            &peer_key,
            Some(SocketAddrLike(peer_ep.to_string())),
            &format!("{them}/32"),
            &format!("{me}/24"),
            &format!("fd10::{}/64", &me[me.len() - 1..]),
        ))
    }
}

fn round(pair: &Pair, a_ours: bool, b_ours: bool, secs: u32) -> f64 {
    let (ka, kb) = (SoftKey::generate(), SoftKey::generate());
    let (pa, pb) = (ka.public_key(), kb.public_key());
    let a_ep: SocketAddr = format!("{}:51820", pair.a_addr).parse().unwrap();
    let b_ep: SocketAddr = format!("{}:51821", pair.b_addr).parse().unwrap();
    let _a = side(
        &pair.a,
        a_ours,
        &ka,
        51820,
        pb,
        b_ep,
        "10.10.0.1",
        "10.10.0.2",
    );
    let _b = side(
        &pair.b,
        b_ours,
        &kb,
        51821,
        pa,
        a_ep,
        "10.10.0.2",
        "10.10.0.1",
    );
    assert!(ping_until(&pair.a, "10.10.0.2", 10), "tunnel up");
    let mbps = iperf3_tcp(&pair.b, &pair.a, "10.10.0.2", secs);
    for (name, s) in [("A", &_a), ("B", &_b)] {
        if let Side::Ours(d) = s {
            let c = d.counters();
            let drops: Vec<_> = c.drops.iter().filter(|(_, n)| *n > 0).collect();
            println!(
                "  {name}: offload {} rx {} tx {} drops {drops:?}",
                d.offload(),
                c.rx_packets,
                c.tx_packets
            );
        }
    }
    mbps
}

#[test]
#[ignore = "a benchmark: run by hand with --release --ignored --nocapture"]
fn single_stream_tcp_against_wireguard_go() {
    let pair = Pair::new();
    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let secs: u32 = std::env::var("SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut results: Vec<(&str, Vec<f64>)> = vec![
        ("wg-pkcs11 <-> wg-pkcs11", vec![]),
        ("wireguard-go <-> wireguard-go", vec![]),
        ("wg-pkcs11 -> wireguard-go", vec![]),
    ];
    for _ in 0..rounds {
        for (i, (a, b)) in [(true, true), (false, false), (true, false)]
            .into_iter()
            .enumerate()
        {
            // ONLY=ours: just wg-pkcs11 on both ends (for profiling).
            if std::env::var("ONLY").is_ok_and(|v| v == "ours") && i != 0 {
                continue;
            }
            let mbps = round(&pair, a, b, secs);
            println!("{}: {mbps:.0} Mbit/s", results[i].0);
            results[i].1.push(mbps);
        }
    }
    for (name, v) in &mut results {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("median {name}: {:.0} Mbit/s", v[v.len() / 2]);
    }
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Resident memory of a device: idle with one peer, and per additional peer.
#[test]
#[ignore = "a benchmark: run by hand with --release --ignored --nocapture"]
fn resident_memory_idle_and_per_peer() {
    let ns = Netns::new("wgmem");
    let base = rss_kib();
    let mut c = DeviceConfig::new(&unique("wgm"), Arc::new(SoftKey::generate()));
    c.peers.push(peer(
        SoftKey::generate().public_key(),
        None,
        &[("10.12.0.2", 32)],
    ));
    let dev = start_device(&ns, c, "10.12.0.1/16", "fd12::1/64");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let one = rss_kib();
    for i in 0..1000u32 {
        let ip = format!("10.12.{}.{}", 1 + i / 250, 1 + i % 250);
        dev.set_peer(&PeerConfig {
            public_key: SoftKey::generate().public_key(),
            preshared_key: None,
            // Loopback inside the test's own namespace: nothing is sent (no traffic, no keepalive).
            endpoint: Some(format!("127.0.0.1:{}", 1000 + i).parse().unwrap()),
            allowed_ips: vec![(ip.parse().unwrap(), 32)],
            persistent_keepalive: 0,
        });
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let many = rss_kib();
    println!(
        "device with 1 peer: +{} KiB over the test process; 1000 more peers: +{} KiB ({:.2} KiB per peer)",
        one - base,
        many - one,
        (many - one) as f64 / 1000.0
    );
    dev.stop();
}
