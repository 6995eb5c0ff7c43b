//! Transport keys die with their session: a memory scan of this process (which runs the device)
//! finds a session's keys while it is in use, and zero times once the session is retired by
//! later handshakes or its peer is removed. The test plays the peer itself with the protocol
//! core (it holds the peer's static key), so it knows the transport keys as derived; it keeps
//! them only XOR-masked, so the scan never finds the test's own copy. Also reports how often the
//! preshared key and the static-static DH are found. Needs root (a network namespace).

mod device_support;

use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use device_support::*;
use wg_pkcs11::cookie::CookieState;
use wg_pkcs11::device::{Device, DeviceConfig, PeerConfig};
use wg_pkcs11::key::soft::SoftKey;
use wg_pkcs11::key::StaticKey;
use wg_pkcs11::keypair::Keypair;
use wg_pkcs11::noise::handshake::{consume_response, create_initiation};
use wg_pkcs11::noise::{Identity, Timestamp, INITIATION_LEN};

const MASK: u8 = 0xa5;

fn masked(secret: &[u8; 32]) -> [u8; 32] {
    secret.map(|b| b ^ MASK)
}

/// How many times the secret whose masked form is `needle` occurs in this process's writable
/// memory (every rw mapping of /proc/self/maps, read through /proc/self/mem). The read buffer
/// is wiped after each chunk, so a region read earlier does not show up again in it.
fn occurrences(needle: &[u8; 32]) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut mem = std::fs::File::open("/proc/self/mem").unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut found = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with("rw") || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let (a, b) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        // Never read the buffer's own memory into itself (an overlapping copy repeats what was
        // read before it): scan around it.
        let (b0, b1) = (buf.as_ptr() as u64, buf.as_ptr() as u64 + buf.len() as u64);
        let mut pieces = vec![(start, end)];
        if b0 < end && b1 > start {
            pieces = vec![(start, b0.max(start)), (b1.min(end), end)];
        }
        for (start, end) in pieces {
            let mut at = start;
            while at < end {
                let len = ((end - at) as usize).min(buf.len());
                if mem.seek(SeekFrom::Start(at)).is_err() {
                    break;
                }
                let n = match mem.read(&mut buf[..len]) {
                    Ok(n) if n > 0 => n,
                    _ => break,
                };
                let here = buf[..n]
                    .windows(32)
                    .filter(|w| w.iter().zip(needle).all(|(x, m)| *x == *m ^ MASK))
                    .count();
                if here > 0 && std::env::var_os("WIPE_SCAN_DEBUG").is_some() {
                    eprintln!("  {here} in {line}");
                }
                found += here;
                buf[..n].fill(0);
                at += n as u64;
            }
        }
    }
    found
}

/// The transport keys of one session, masked.
struct SessionNeedles {
    send: [u8; 32],
    receive: [u8; 32],
}

impl SessionNeedles {
    fn count(&self) -> (usize, usize) {
        (occurrences(&self.send), occurrences(&self.receive))
    }
}

/// One handshake with the device as its peer, confirmed by a keepalive; returns the session's
/// keys masked. Runs on its own thread, whose stack is scrubbed before it ends.
fn handshake(
    peer_key: &Arc<SoftKey>,
    device_pub: [u8; 32],
    psk: &Arc<zeroize::Zeroizing<[u8; 32]>>,
    socket: &Arc<UdpSocket>,
    to: SocketAddr,
) -> SessionNeedles {
    let (peer_key, psk, socket) = (peer_key.clone(), psk.clone(), socket.clone());
    std::thread::spawn(move || {
        let marker = 0u8;
        if std::env::var_os("WIPE_SCAN_DEBUG").is_some() {
            eprintln!("handshake thread stack near {:p}", &marker);
        }
        let needles = play_the_peer(&peer_key, device_pub, &psk, &socket, to);
        // Every unmasked copy of the keys the peer's side made is in the frames below this one
        // (a debug build moves them through its return slots without wiping them), none in
        // this frame: glibc keeps a finished thread's stack for the next thread, unwiped.
        wg_pkcs11::secret_mem::scrub_stack();
        needles
    })
    .join()
    .unwrap()
}

#[test]
fn transport_keys_are_wiped_when_retired_and_when_the_peer_is_removed() {
    let marker = 0u8;
    if std::env::var_os("WIPE_SCAN_DEBUG").is_some() {
        eprintln!("test thread stack near {:p}", &marker);
    }
    let ns = Netns::new("wgkw");
    let device_key = Arc::new(SoftKey::generate());
    let device_pub = device_key.public_key();
    let peer_key = Arc::new(SoftKey::generate());
    let psk = Arc::new(zeroize::Zeroizing::new(rand_bytes()));
    let psk_needle = masked(&psk);
    let ss_needle = masked(&peer_key.diffie_hellman(&device_pub).unwrap());
    let port = 36000 + (std::process::id() % 10000) as u16;
    let mut config = DeviceConfig::new(&unique("wgkw"), device_key);
    config.listen_port = port;
    config.peers.push(PeerConfig {
        public_key: peer_key.public_key(),
        preshared_key: Some(**psk),
        endpoint: None,
        allowed_ips: vec![("10.16.0.3".parse().unwrap(), 32)],
        persistent_keepalive: 0,
    });
    let device: Device = start_device(&ns, config, "10.16.0.1/24", "fd16::1/64");
    let socket = Arc::new(ns.enter(|| UdpSocket::bind("127.0.0.1:0").unwrap()));
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let confirmed = |n: u64| wait_for(5, || device.counters().sessions_confirmed >= n);

    let first = handshake(&peer_key, device_pub, &psk, &socket, to);
    assert!(confirmed(1), "the device confirmed the first session");
    // The device seals with the session too (an echo request towards the peer).
    let _ = ns.exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", "10.16.0.3"]);
    let live = first.count();
    eprintln!(
        "first session in use: send key found {} times, receive key {}",
        live.0, live.1
    );
    assert!(
        live.0 >= 1 && live.1 >= 1,
        "the scan finds a live session's keys (else it proves nothing): {live:?}"
    );
    let (psk_live, ss_live) = (occurrences(&psk_needle), occurrences(&ss_needle));
    eprintln!("peer configured: preshared key found {psk_live} times, static-static DH {ss_live}");

    // Two more handshakes: the first session goes previous, then out.
    std::thread::sleep(Duration::from_millis(50));
    let second = handshake(&peer_key, device_pub, &psk, &socket, to);
    assert!(confirmed(2));
    std::thread::sleep(Duration::from_millis(50));
    let third = handshake(&peer_key, device_pub, &psk, &socket, to);
    assert!(confirmed(3));
    let _ = ns.exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", "10.16.0.3"]);
    let retired = first.count();
    eprintln!("first session retired: found {retired:?}");
    assert_eq!(retired, (0, 0), "a retired session's keys are wiped");
    assert!(third.count().0 >= 1, "the current session is still found");

    assert!(device.remove_peer(&peer_key.public_key()));
    // The test's own copy of the preshared key goes too (Zeroizing), so what is left is the
    // device's.
    drop(psk);
    let (second_left, third_left) = (second.count(), third.count());
    let (psk_left, ss_left) = (occurrences(&psk_needle), occurrences(&ss_needle));
    eprintln!(
        "peer removed: sessions found {second_left:?} {third_left:?}; preshared key {psk_left}, \
         static-static DH {ss_left}"
    );
    assert_eq!(
        second_left,
        (0, 0),
        "the removed peer's previous session is wiped"
    );
    assert_eq!(
        third_left,
        (0, 0),
        "the removed peer's current session is wiped"
    );
    device.stop();
}

/// The peer's side of one handshake (see `handshake`), on the calling thread.
#[inline(never)]
fn play_the_peer(
    peer_key: &Arc<SoftKey>,
    device_pub: [u8; 32],
    psk: &zeroize::Zeroizing<[u8; 32]>,
    socket: &UdpSocket,
    to: SocketAddr,
) -> SessionNeedles {
    let ss = peer_key.diffie_hellman(&device_pub).unwrap();
    let mut msg = [0u8; INITIATION_LEN];
    let pending = create_initiation(
        &peer_key.public_key(),
        &device_pub,
        &ss,
        0x1234_5678,
        Timestamp::now(),
        &mut msg,
    )
    .unwrap();
    CookieState::new(&device_pub).add_macs(&mut msg, Instant::now());
    socket.send_to(&msg, to).unwrap();
    let mut buf = [0u8; 2048];
    let n = loop {
        let (n, _) = socket.recv_from(&mut buf).expect("the device answers");
        if n == 92 && buf[0] == 2 {
            break n;
        }
    };
    let id = Identity::new(peer_key.clone());
    let keys = consume_response(&id, &pending, psk, &buf[..n]).unwrap();
    let needles = SessionNeedles {
        send: masked(&keys.send),
        receive: masked(&keys.receive),
    };
    // Confirm the session (the device is the responder) with a keepalive.
    let keypair = Keypair::new(&keys, Instant::now());
    let mut ka = [0u8; 32];
    let len = keypair.encrypt(&mut ka, 0, Instant::now()).unwrap();
    socket.send_to(&ka[..len], to).unwrap();
    needles
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b
}
