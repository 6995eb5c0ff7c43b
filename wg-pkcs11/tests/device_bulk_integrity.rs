//! Bulk integrity through the tunnel with the offloads on: 1 GiB of pseudo-random data each way
//! at once over TCP (and a quarter of it over IPv6) between a wg-pkcs11 device and wireguard-go
//! (TUN TSO super-packets split on our send side, UDP GSO on the wire, TCP segments coalesced
//! before our TUN write on the receive side), and UDP datagrams at full rate between two
//! wg-pkcs11 devices. The receiver hashes (SHA-256) what arrived, the sender what it sent, and
//! the hashes must agree; the receiver also regenerates the stream from its seed to say where the
//! first wrong byte is.
//!
//! Why it matters: a coalesced packet written to the TUN carries VIRTIO_NET_HDR_F_NEEDS_CSUM, so
//! the kernel computes the TCP checksum over whatever bytes we hand it; a bug that corrupts data
//! while splitting or coalescing would pass every checksum. Only an end-to-end comparison sees it.
//! The devices run with a crypto helper, so super-packets are sealed and batches opened in two
//! halves on two threads (device/crypto_pool.rs) and the hashes check that too.
//! Needs root and wireguard-go. `BULK_MIB=N` changes the amount (default 1024 per direction).

mod device_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use device_support::*;
use ring::digest::{Context, SHA256};
use wg_pkcs11::device::{Device, DeviceConfig, DropReason};
use wg_pkcs11::key::soft::SoftKey;
use wg_pkcs11::key::StaticKey;

/// A transfer that makes no progress for this long has stalled (a protocol deadline, not a
/// performance bound: a healthy tunnel moves megabytes per second even on a loaded machine).
const STALL: Duration = Duration::from_secs(60);

/// xoshiro256** (Blackman and Vigna): fast, seedable, so the receiver can regenerate the stream.
struct Stream {
    s: [u64; 4],
}

impl Stream {
    fn new(seed: u64) -> Stream {
        // splitmix64 to spread the seed over the state, as the authors recommend.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e3779b97f4a7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
            z ^ (z >> 31)
        };
        Stream {
            s: [next(), next(), next(), next()],
        }
    }

    fn next(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// The next `buf.len()` bytes (a multiple of 8).
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
    }
}

const CHUNK: usize = 64 * 1024;

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Send `total` bytes of stream `seed`; the SHA-256 of what was sent.
fn send(mut sock: TcpStream, seed: u64, total: u64) -> Result<String, String> {
    sock.set_write_timeout(Some(STALL)).unwrap();
    let mut stream = Stream::new(seed);
    let mut hash = Context::new(&SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut sent = 0u64;
    while sent < total {
        let n = CHUNK.min((total - sent) as usize);
        stream.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        sock.write_all(&buf[..n])
            .map_err(|e| format!("sending after {sent} bytes: {e}"))?;
        sent += n as u64;
    }
    sock.shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    // Wait for the receiver to close: all data is then through.
    let mut rest = [0u8; 1];
    let _ = sock.read(&mut rest);
    Ok(hex(hash.finish().as_ref()))
}

/// What the receiver saw.
struct Received {
    bytes: u64,
    sha256: String,
    /// Offset of the first byte that differs from the regenerated stream.
    first_wrong: Option<u64>,
    wrong_bytes: u64,
}

fn receive(mut sock: TcpStream, seed: u64) -> Result<Received, String> {
    sock.set_read_timeout(Some(STALL)).unwrap();
    let mut expected = Stream::new(seed);
    let mut want = vec![0u8; CHUNK];
    let (mut want_at, mut want_len) = (0usize, 0usize);
    let mut hash = Context::new(&SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut got = Received {
        bytes: 0,
        sha256: String::new(),
        first_wrong: None,
        wrong_bytes: 0,
    };
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("receiving after {} bytes: {e}", got.bytes)),
        };
        hash.update(&buf[..n]);
        let mut done = 0;
        while done < n {
            if want_at == want_len {
                expected.fill(&mut want);
                (want_at, want_len) = (0, CHUNK);
            }
            let take = (n - done).min(want_len - want_at);
            let (have, expect) = (&buf[done..done + take], &want[want_at..want_at + take]);
            if have != expect {
                for (i, (h, e)) in have.iter().zip(expect).enumerate() {
                    if h != e {
                        got.wrong_bytes += 1;
                        got.first_wrong.get_or_insert(got.bytes + (done + i) as u64);
                    }
                }
            }
            want_at += take;
            done += take;
        }
        got.bytes += n as u64;
    }
    got.sha256 = hex(hash.finish().as_ref());
    Ok(got)
}

/// Listener and connection made on threads inside the namespaces, so the sockets live there.
fn connect(server: &Netns, client: &Netns, server_addr: &str, port: u16) -> (TcpStream, TcpStream) {
    let bind: SocketAddr = format!("{server_addr}:{port}").parse().unwrap();
    let listener = server.enter(move || TcpListener::bind(bind).expect("bind in the namespace"));
    let target = bind;
    let client_sock = client.enter(move || {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            match TcpStream::connect_timeout(&target, Duration::from_secs(3)) {
                Ok(s) => return s,
                Err(e) if Instant::now() > end => panic!("connecting to {target}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    let (server_sock, _) = listener.accept().expect("accept");
    (client_sock, server_sock)
}

/// Both directions at once: the data of each rides with the other's ACKs interleaved, which is
/// what the coalescer must sort out. Returns the seconds it took.
fn both_ways(pair: &Pair, a_inner: &str, b_inner: &str, bytes: u64) -> f64 {
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("stream seeds {seed:#x} (A -> B) and {:#x} (B -> A)", !seed);
    let port = 20000 + (std::process::id() % 20000) as u16;
    let (a_to_b_send, a_to_b_recv) = connect(&pair.b, &pair.a, b_inner, port);
    let (b_to_a_send, b_to_a_recv) = connect(&pair.a, &pair.b, a_inner, port + 1);
    let started = Instant::now();
    let threads = [
        (
            "A -> B",
            std::thread::spawn(move || send(a_to_b_send, seed, bytes)),
            std::thread::spawn(move || receive(a_to_b_recv, seed)),
        ),
        (
            "B -> A",
            std::thread::spawn(move || send(b_to_a_send, !seed, bytes)),
            std::thread::spawn(move || receive(b_to_a_recv, !seed)),
        ),
    ];
    let mut failures = Vec::new();
    for (dir, sender, receiver) in threads {
        let sent = sender.join().expect("sender thread");
        let got = receiver.join().expect("receiver thread");
        match (sent, got) {
            (Ok(sent_hash), Ok(got)) => {
                println!(
                    "{dir}: {} bytes, sha256 sent {sent_hash} received {}",
                    got.bytes, got.sha256
                );
                if got.bytes != bytes || got.sha256 != sent_hash || got.wrong_bytes != 0 {
                    failures.push(format!(
                        "{dir}: {} of {bytes} bytes arrived, sha256 sent {sent_hash} \
                         received {}; {} bytes differ from the stream sent, the first at \
                         offset {:?}",
                        got.bytes, got.sha256, got.wrong_bytes, got.first_wrong
                    ));
                }
            }
            (s, g) => failures.push(format!(
                "{dir}: sender {:?}, receiver {:?}",
                s.err(),
                g.err().or(Some("ok".into()))
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "data through the tunnel changed:\n{}",
        failures.join("\n")
    );
    started.elapsed().as_secs_f64()
}

fn mib_per_direction(default: u64) -> u64 {
    std::env::var("BULK_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn device(
    pair: &Pair,
    on_a: bool,
    key: SoftKey,
    port: u16,
    peer_key: [u8; 32],
    peer_ep: SocketAddr,
) -> Device {
    let (ns, me, them, me6, them6) = if on_a {
        (&pair.a, "10.14.0.1", "10.14.0.2", "fd14::1", "fd14::2")
    } else {
        (&pair.b, "10.14.0.2", "10.14.0.1", "fd14::2", "fd14::1")
    };
    let mut c = DeviceConfig::new(&unique("wgi"), Arc::new(key));
    c.listen_port = port;
    // One crypto helper whatever the core count (automatic gives none on 2 cores): every
    // transfer here also checks the halves sealed and opened on two threads.
    c.crypto_helpers = Some(1);
    c.peers
        .push(peer(peer_key, Some(peer_ep), &[(them, 32), (them6, 128)]));
    let d = start_device(ns, c, &format!("{me}/24"), &format!("{me6}/64"));
    assert!(
        d.offload(),
        "the TUN refused the offloads: this test must run with TSO/GRO on"
    );
    d
}

/// A wg-pkcs11 device at each end of `pair`, each the other's peer.
fn two_devices(pair: &Pair) -> (Device, Device) {
    let (ka, kb) = (SoftKey::generate(), SoftKey::generate());
    let (pa, pb) = (ka.public_key(), kb.public_key());
    let (port_a, port_b) = ports();
    let a_ep: SocketAddr = format!("{}:{port_a}", pair.a_addr).parse().unwrap();
    let b_ep: SocketAddr = format!("{}:{port_b}", pair.b_addr).parse().unwrap();
    (
        device(pair, true, ka, port_a, pb, b_ep),
        device(pair, false, kb, port_b, pa, a_ep),
    )
}

fn ports() -> (u16, u16) {
    let a = 30000 + (std::process::id() % 10000) as u16 * 2;
    (a, a + 1)
}

/// Our device in A, wireguard-go (unmodified) in B, each the other's peer.
fn ours_and_wireguard_go(pair: &Pair) -> (Device, WireguardGo) {
    let (ka, kb) = (SoftKey::generate(), SoftKey::generate());
    let (pa, pb) = (ka.public_key(), kb.public_key());
    let (port_a, port_b) = ports();
    let a_ep: SocketAddr = format!("{}:{port_a}", pair.a_addr).parse().unwrap();
    let b_ep: SocketAddr = format!("{}:{port_b}", pair.b_addr).parse().unwrap();
    let a = device(pair, true, ka, port_a, pb, b_ep);
    let go = WireguardGo::start(
        &pair.b,
        &kb.private_bytes(),
        port_b,
        &pa,
        Some(SocketAddrLike(a_ep.to_string())),
        "10.14.0.1/32,fd14::1/128",
        "10.14.0.2/24",
        "fd14::2/64",
    );
    (a, go)
}

/// 1 GiB each way at once over TCP, then a quarter of it over IPv6 inside (TSO6 and the v6
/// coalescer), between our device and wireguard-go: A -> B checks our send path (TSO
/// super-packets split, sealed, GSO on the wire), B -> A our receive path (opened, coalesced
/// before the TUN write), each judged by an implementation that is not ours.
#[test]
fn one_gib_each_way_between_wg_pkcs11_and_wireguard_go_arrives_intact() {
    let _heavy = heavy_lock();
    let pair = Pair::new();
    let (a, _go) = ours_and_wireguard_go(&pair);
    assert!(ping_until(&pair.a, "10.14.0.2", 10), "tunnel up");
    let bytes = mib_per_direction(1024) << 20;
    let secs = both_ways(&pair, "10.14.0.1", "10.14.0.2", bytes);
    let c = a.counters();
    println!(
        "IPv4: {} MiB each way in {secs:.1} s ({:.0} Mbit/s both ways together); wg-pkcs11 tx {} \
         rx {} packets",
        bytes >> 20,
        2.0 * bytes as f64 * 8.0 / secs / 1e6,
        c.tx_packets,
        c.rx_packets
    );
    let secs6 = both_ways(&pair, "[fd14::1]", "[fd14::2]", bytes / 4);
    println!("IPv6: {} MiB each way in {secs6:.1} s", bytes >> 22);
    let c2 = a.counters();
    assert!(
        c2.tx_packets > c.tx_packets && c2.rx_packets > c.rx_packets,
        "the IPv6 transfer went through the tunnel"
    );
    // The AEAD ran on our crypto helper too (device/crypto_pool.rs), both ways, and the data
    // above arrived intact.
    println!(
        "{:.0}% of sealed and {:.0}% of opened packets on the helper",
        100.0 * c2.sealed_on_helper as f64 / c2.tx_packets.max(1) as f64,
        100.0 * c2.opened_on_helper as f64 / c2.rx_packets.max(1) as f64,
    );
    assert!(
        c2.sealed_on_helper > 0 && c2.opened_on_helper > 0,
        "no packet was sealed or opened on the helper: {c2:?}"
    );
    assert_eq!(
        c2.dropped(DropReason::Decrypt),
        0,
        "transport messages from wireguard-go did not authenticate"
    );
}

/// Datagram `seq` of a UDP stream: its length (every 50th shorter, which ends a coalesced run)
/// and its bytes (the sequence number, then bytes only it has).
fn datagram(seed: u64, seq: u64, buf: &mut [u8]) -> usize {
    let len = if seq % 50 == 49 { 704 } else { 1392 };
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    Stream::new(seed ^ seq.wrapping_mul(0x9e3779b97f4a7c15)).fill(&mut buf[8..len]);
    len
}

/// Send the stream in groups of up to 8 datagrams per send with UDP_SEGMENT of the full size:
/// a group ends early after a short datagram (only the last segment of a GSO send may be short).
fn send_gso(tx: &std::net::UdpSocket, seed: u64, count: u64) {
    use std::os::fd::AsRawFd;
    const UDP_SEGMENT: libc::c_int = 103;
    let size: libc::c_int = 1392;
    // SAFETY: setsockopt with an int option value that lives across the call.
    let r = unsafe {
        libc::setsockopt(
            tx.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    assert_eq!(r, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
    let mut buf = vec![0u8; 8 * 1392];
    let mut seq = 0;
    while seq < count {
        let mut len = 0;
        for _ in 0..8 {
            if seq >= count {
                break;
            }
            let n = datagram(seed, seq, &mut buf[len..]);
            len += n;
            seq += 1;
            if n < 1392 {
                break;
            }
        }
        let _ = tx.send(&buf[..len]);
    }
}

/// What arrived of a UDP stream: datagrams, those whose bytes or length were wrong.
struct UdpReceived {
    datagrams: u64,
    wrong: u64,
    first_wrong: Option<u64>,
}

fn udp_receive(
    sock: std::net::UdpSocket,
    seed: u64,
    sender_done: Arc<std::sync::atomic::AtomicBool>,
) -> UdpReceived {
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = UdpReceived {
        datagrams: 0,
        wrong: 0,
        first_wrong: None,
    };
    let (mut buf, mut want) = (vec![0u8; 2048], vec![0u8; 2048]);
    let mut idle_since_done = 0;
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                got.datagrams += 1;
                let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                let len = datagram(seed, seq, &mut want);
                if n != len || buf[..n] != want[..len] {
                    got.wrong += 1;
                    got.first_wrong.get_or_insert(seq);
                }
            }
            Err(_) if sender_done.load(std::sync::atomic::Ordering::Acquire) => {
                idle_since_done += 1;
                if idle_since_done > 2 {
                    return got;
                }
            }
            Err(_) => {}
        }
    }
}

/// The packet count `ip -s` gives for `ifname` in `direction` ("RX" or "TX").
fn link_packets(ns: &Netns, ifname: &str, direction: &str) -> u64 {
    let out = ns.ip(&["-s", "-o", "link", "show", "dev", ifname]);
    // "... RX: bytes packets errors ... \    123 456 0 ..." on one line with -o.
    let after = out
        .split(&format!("{direction}:"))
        .nth(1)
        .unwrap_or_else(|| panic!("ip -s shows no {direction} for {ifname}: {out}"));
    let numbers: Vec<u64> = after
        .split(|c: char| c == '\\' || c.is_whitespace())
        .filter_map(|w| w.parse().ok())
        .collect();
    numbers[1]
}

/// Packets the kernel counted into the TUN named `ifname` (each write, coalesced or not, is one).
fn tun_rx_packets(ns: &Netns, ifname: &str) -> u64 {
    link_packets(ns, ifname, "RX")
}

/// Packets the kernel counted out of `ns`'s veth: a GSO send is one, however many datagrams.
fn veth_tx_packets(ns: &Netns) -> u64 {
    let veth = ns.ip(&["-o", "link", "show", "type", "veth"]);
    // "5: wgda123@if4: <...>": the name before '@'.
    let name = veth
        .split(": ")
        .nth(1)
        .and_then(|n| n.split('@').next())
        .expect("the pair's veth")
        .to_string();
    link_packets(ns, &name, "TX")
}

fn kernel_has_uso() -> bool {
    // TUN_F_USO4/USO6 came with Linux 6.2.
    let release = must("uname", &["-r"]);
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 2)
}

/// UDP at full rate through two wg-pkcs11 devices, both ways at once: loss is allowed (a full
/// TUN queue drops), a changed, truncated or merged datagram is not. Ours at both ends on
/// purpose: a GSO send from A cut at the wrong places shows only as transport messages that do
/// not authenticate at B, which our B counts (Decrypt) and wireguard-go would drop silently,
/// indistinguishable from the loss allowed at full rate. With USO the receiving
/// device coalesces datagrams before its TUN write; the kernel must cut them apart again at the
/// same boundaries.
#[test]
fn udp_datagrams_arrive_intact_through_coalescing_both_ways() {
    let _heavy = heavy_lock();
    let pair = Pair::new();
    let (a, b) = two_devices(&pair);
    if kernel_has_uso() {
        assert!(
            a.uso() && b.uso(),
            "Linux 6.2+ offers USO on the TUN: the devices must use it"
        );
    }
    assert!(ping_until(&pair.a, "10.14.0.2", 10), "tunnel up");
    let count: u64 = mib_per_direction(1024) * 100; // 100k datagrams (140 MB) by default
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("UDP seeds {seed:#x} (A -> B) and {:#x} (B -> A)", !seed);
    let port = 20000 + (std::process::id() % 20000) as u16;
    // Read before any datagram is sent: every write the transfer causes is counted.
    let before = (
        tun_rx_packets(&pair.b, b.name()),
        tun_rx_packets(&pair.a, a.name()),
    );
    // Datagrams each device decrypted and handed on to its TUN (some may still be dropped by the
    // receiving socket afterwards, so what arrives is no measure of what was written).
    let delivered_before = (b.counters().rx_packets, a.counters().rx_packets);
    // A -> B goes out of the socket one datagram per send: A reads them from its TUN one by
    // one, and queues them up for one GSO send while its TUN has more (device/send.rs).
    let a_wire_before = veth_tx_packets(&pair.a);
    let mut runs = Vec::new();
    for (from, to, to_addr, s) in [
        (&pair.a, &pair.b, "10.14.0.2", seed),
        (&pair.b, &pair.a, "10.14.0.1", !seed),
    ] {
        let bind: SocketAddr = format!("{to_addr}:{port}").parse().unwrap();
        let rx = to.enter(move || std::net::UdpSocket::bind(bind).unwrap());
        let tx = from.enter(move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            s.connect(bind).unwrap();
            s
        });
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done_rx = done.clone();
        let receiver = std::thread::spawn(move || udp_receive(rx, s, done_rx));
        // B -> A is sent with UDP_SEGMENT (GSO): several datagrams per send, which reach the
        // sending device as one USO super-datagram from its TUN to be split.
        let gso = to_addr == "10.14.0.1";
        let sender = std::thread::spawn(move || {
            if gso {
                send_gso(&tx, s, count);
            } else {
                let mut buf = vec![0u8; 2048];
                for seq in 0..count {
                    let len = datagram(s, seq, &mut buf);
                    let _ = tx.send(&buf[..len]);
                }
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        runs.push((sender, receiver));
    }
    let mut results = Vec::new();
    for (sender, receiver) in runs {
        sender.join().unwrap();
        results.push(receiver.join().unwrap());
    }
    let writes = (
        tun_rx_packets(&pair.b, b.name()) - before.0,
        tun_rx_packets(&pair.a, a.name()) - before.1,
    );
    let delivered = (
        b.counters().rx_packets - delivered_before.0,
        a.counters().rx_packets - delivered_before.1,
    );
    let a_wire = veth_tx_packets(&pair.a) - a_wire_before;
    // Loss is allowed, a message that does not authenticate is not: a GSO send whose segments
    // are not all the same size (but the last) is cut at the wrong places on the wire.
    for (end, d) in [("A", &a), ("B", &b)] {
        assert_eq!(
            d.counters().dropped(DropReason::Decrypt),
            0,
            "{end} received transport messages that did not authenticate"
        );
    }
    println!(
        "A -> B: {} datagrams reached B's device in {a_wire} sends on A's wire",
        delivered.0
    );
    assert!(
        a_wire < delivered.0,
        "A sent every single datagram on its own ({a_wire} sends for {} datagrams): no GSO \
         batching of single packets",
        delivered.0
    );
    for (((dir, got), tun_writes), handed_on) in ["A -> B", "B -> A"]
        .iter()
        .zip(&results)
        .zip([writes.0, writes.1])
        .zip([delivered.0, delivered.1])
    {
        println!(
            "{dir}: {} of {count} datagrams arrived; the receiving device wrote {handed_on} \
             datagrams to its TUN in {tun_writes} writes; {} wrong",
            got.datagrams, got.wrong
        );
        assert_eq!(
            got.wrong, 0,
            "{dir}: {} datagrams arrived changed, the first with sequence number {:?}",
            got.wrong, got.first_wrong
        );
        assert!(got.datagrams > 0, "{dir}: nothing arrived");
        if a.uso() {
            // Coalescing takes the datagrams of one recvmmsg batch: at full rate many per write.
            assert!(
                tun_writes * 2 < handed_on,
                "{dir}: {tun_writes} TUN writes for {handed_on} datagrams: (almost) nothing was \
                 coalesced"
            );
        }
    }
}
