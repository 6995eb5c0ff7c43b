//! Hostile and broken input to a running device, sent from a raw UDP socket
//! in the other namespace: every malformed message type is dropped, counted
//! under its reason and never answered, the daemon keeps running; and a
//! flood of initiations with a valid mac1 is answered with cookie replies
//! while the token is spent only a bounded number of times. Needs root.

mod device_support;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use device_support::*;
use wg_pkcs11::cookie::CookieState;
use wg_pkcs11::device::{Device, DeviceConfig, DropReason, PeerConfig};
use wg_pkcs11::key::soft::SoftKey;
use wg_pkcs11::key::StaticKey;
use wg_pkcs11::noise::{Identity, IndexTable};
use wg_pkcs11::peer::Peer;

struct Setup {
    pair: Pair,
    a: Device,
    a_ep: SocketAddr,
    a_pub: [u8; 32],
    /// A second identity B also runs in-process (the "attacker" knows it for the
    /// handshake-level cases), configured on A as a peer with 10.9.0.3.
    raw_key: Arc<SoftKey>,
    _b: Device,
}

fn setup(a_key: Arc<dyn StaticKey>) -> Setup {
    let pair = Pair::new();
    let b_key: Arc<dyn StaticKey> = Arc::new(SoftKey::generate());
    let raw_key = Arc::new(SoftKey::generate());
    let a_pub = a_key.public_key();
    let port = 43000 + (std::process::id() % 10000) as u16;
    let a_ep: SocketAddr = format!("{}:{port}", pair.a_addr).parse().unwrap();
    let mut ca = DeviceConfig::new(&unique("wga"), a_key);
    ca.listen_port = port;
    for (k, ip) in [
        (b_key.public_key(), "10.9.0.2"),
        (raw_key.public_key(), "10.9.0.3"),
    ] {
        ca.peers.push(PeerConfig {
            public_key: k,
            preshared_key: None,
            endpoint: None,
            allowed_ips: vec![(ip.parse::<IpAddr>().unwrap(), 32)],
            persistent_keepalive: 0,
        });
    }
    let mut cb = DeviceConfig::new(&unique("wgb"), b_key);
    cb.peers.push(PeerConfig {
        public_key: a_pub,
        preshared_key: None,
        endpoint: Some(a_ep),
        allowed_ips: vec![("10.9.0.0".parse().unwrap(), 24)],
        persistent_keepalive: 0,
    });
    let a = start_device(&pair.a, ca, "10.9.0.1/24", "fd09::1/64");
    let b = start_device(&pair.b, cb, "10.9.0.2/24", "fd09::2/64");
    Setup {
        pair,
        a,
        a_ep,
        a_pub,
        raw_key,
        _b: b,
    }
}

fn raw_socket(ns: &Netns) -> UdpSocket {
    let s = ns.enter(|| UdpSocket::bind("0.0.0.0:0").unwrap());
    s.set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    s
}

fn assert_no_reply(s: &UdpSocket, what: &str) {
    let mut b = [0u8; 2048];
    match s.recv_from(&mut b) {
        Ok((n, from)) => panic!("{what}: got a {n}-byte reply from {from}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{what}: {e}"
        ),
    }
}

/// Sends `msg` to A, expects no answer and exactly one more drop for `reason`.
fn send_and_expect_one_drop(
    s: &Setup,
    sock: &UdpSocket,
    msg: &[u8],
    what: &str,
    reason: DropReason,
) {
    let before = s.a.counters();
    sock.send_to(msg, s.a_ep).unwrap();
    assert_no_reply(sock, what);
    assert_eq!(s.a.counters().dropped(reason), before.dropped(reason) + 1);
}

fn header(t: u8, len: usize) -> Vec<u8> {
    let mut m: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    if len >= 4 {
        m[..4].copy_from_slice(&[t, 0, 0, 0]);
    }
    m
}

#[test]
fn malformed_packets_of_every_type_are_dropped_counted_and_unanswered() {
    let s = setup(Arc::new(SoftKey::generate()));
    assert!(ping_until(&s.pair.b, "10.9.0.1", 10));
    let sock = raw_socket(&s.pair.b);
    let mut bad_reserved = header(1, 148);
    bad_reserved[2] = 1;
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("empty datagram", vec![], DropReason::Malformed),
        ("one byte", vec![1], DropReason::Malformed),
        ("unknown type 0", header(0, 148), DropReason::Malformed),
        ("unknown type 5", header(5, 64), DropReason::Malformed),
        (
            "initiation one byte short",
            header(1, 147),
            DropReason::Malformed,
        ),
        (
            "initiation one byte long",
            header(1, 149),
            DropReason::Malformed,
        ),
        (
            "initiation with reserved bytes set",
            bad_reserved,
            DropReason::Malformed,
        ),
        (
            "initiation with a bad mac1",
            header(1, 148),
            DropReason::Mac1,
        ),
        ("response short", header(2, 91), DropReason::Malformed),
        ("response with a bad mac1", header(2, 92), DropReason::Mac1),
        ("cookie reply short", header(3, 63), DropReason::Malformed),
        (
            "cookie reply for an unknown index",
            header(3, 64),
            DropReason::UnknownIndex,
        ),
        (
            "transport shorter than a keepalive",
            header(4, 31),
            DropReason::Malformed,
        ),
        (
            "transport for an unknown index",
            header(4, 32),
            DropReason::UnknownIndex,
        ),
        (
            "big transport for an unknown index",
            header(4, 1500),
            DropReason::UnknownIndex,
        ),
    ];
    for (what, msg, reason) in cases {
        let before = s.a.counters();
        sock.send_to(&msg, s.a_ep).unwrap();
        assert_no_reply(&sock, what);
        // (On a loaded machine the UDP thread may be a little behind.)
        wait_for(2, || {
            s.a.counters().dropped_total() > before.dropped_total()
        });
        let after = s.a.counters();
        assert_eq!(
            after.dropped(reason),
            before.dropped(reason) + 1,
            "{what}: {after:?}"
        );
        assert_eq!(
            after.dropped_total(),
            before.dropped_total() + 1,
            "{what}: counted once"
        );
        assert_eq!(
            after.token_operations, before.token_operations,
            "{what}: no token operation"
        );
    }

    // Handshake-level garbage with a valid mac1 (mac1 needs only A's public key).
    let now = Instant::now();
    let mut cookie = CookieState::new(&s.a_pub);
    let mut init = header(1, 148);
    cookie.add_macs(&mut init, now);
    let before = s.a.counters();
    sock.send_to(&init, s.a_ep).unwrap();
    assert_no_reply(&sock, "initiation with a valid mac1 and garbage inside");
    assert!(wait_for(2, || s
        .a
        .counters()
        .dropped(DropReason::Handshake)
        == before.dropped(DropReason::Handshake) + 1));
    assert_eq!(s.a.counters().responses_sent, before.responses_sent);
    assert_eq!(
        s.a.counters().token_operations,
        before.token_operations + 1,
        "garbage with a valid mac1 costs the responder's one DH"
    );

    // The same garbage again costs the DH again: only an initiation that authenticated is
    // remembered as consumed, since a copy of a genuine initiation's ephemeral with garbage
    // after it must not make the genuine one a "replay" (issue 20; what garbage may cost is
    // bounded by the queue's waste budget, which demands cookies).
    let before = s.a.counters();
    sock.send_to(&init, s.a_ep).unwrap();
    assert_no_reply(&sock, "the same garbage again");
    assert!(wait_for(2, || s
        .a
        .counters()
        .dropped(DropReason::Handshake)
        == before.dropped(DropReason::Handshake) + 1));
    assert_eq!(
        s.a.counters().dropped(DropReason::Replayed),
        before.dropped(DropReason::Replayed)
    );
    // Garbage with a small-order ephemeral key is refused before the token is asked, counted,
    // never answered.
    let mut low = header(1, 148);
    low[8..40].fill(0);
    low[8] = 1; // u = 1: order 1
    cookie.add_macs(&mut low, Instant::now());
    send_and_expect_one_drop(&s, &sock, &low, "low-order ephemeral", DropReason::LowOrder);
    // Replayed and LowOrder are counted only by the checks made before the token (one that
    // reached the token would end as a Handshake drop).

    // A real handshake with a peer A knows, run in-process with the core,
    // to reach the transport checks behind a valid receiver index.
    let id = Identity::new(s.raw_key.clone());
    let table = IndexTable::new();
    let peer = Peer::new(s.a_pub, None, Some(s.a_ep), 0, now);
    let msg = peer
        .create_initiation(&id, &table, false, Instant::now())
        .unwrap();
    sock.send_to(&msg, s.a_ep).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("A answers a valid initiation");
    peer.consume_response(&id, &table, &buf[..n], from, Instant::now())
        .expect("valid response");
    let keypair = peer.current_keypair(Instant::now()).unwrap();
    // Replaying the initiation A answered costs no token operation and gets no answer (this
    // socket receives nothing). Refused before the token: only the consumed-initiation cache,
    // which the worker checks before the static key, counts Replayed (a replay refused after
    // the DH, by its timestamp, counts as Handshake). Device-wide counts (responses sent, token
    // operations) are not compared: the A-B tunnel may handshake meanwhile, as it did once
    // under a loaded machine (a response to B counted between the two readings).
    send_and_expect_one_drop(&s, &sock, &msg, "replayed initiation", DropReason::Replayed);
    let raw_pub = s.raw_key.public_key();
    let here = sock.local_addr().unwrap().port();
    let endpoint_port = || s.a.peer_info(&raw_pub).unwrap().endpoint.unwrap().port();
    assert_eq!(
        endpoint_port(),
        here,
        "A learned the endpoint from the initiation"
    );
    // A transport packet with the right index and a forged tag.
    let mut forged = header(4, 64);
    forged[4..8].copy_from_slice(&keypair.remote_index().to_le_bytes());
    send_and_expect_one_drop(&s, &sock, &forged, "forged transport", DropReason::Decrypt);
    // A valid packet whose inner source is outside the peer's allowed IPs (10.9.0.3/32).
    let inner = ipv4_udp([10, 9, 0, 99], [10, 9, 0, 1]);
    let mut pkt = vec![0u8; 16 + inner.len() + 32];
    pkt[16..16 + inner.len()].copy_from_slice(&inner);
    let len = keypair
        .encrypt(&mut pkt, inner.len(), Instant::now())
        .unwrap();
    let confirmed = s.a.counters().sessions_confirmed;
    send_and_expect_one_drop(
        &s,
        &sock,
        &pkt[..len],
        "spoofed inner source",
        DropReason::AllowedIps,
    );
    // It authenticated: as in the kernel it still confirms A's responder session (and feeds
    // the timers) before the inner source is refused.
    assert_eq!(s.a.counters().sessions_confirmed, confirmed + 1);
    assert!(s.a.peer_info(&raw_pub).unwrap().last_handshake.is_some());
    // A valid packet that is not IP inside.
    let mut pkt = vec![0u8; 16 + 20 + 32];
    pkt[16..36].copy_from_slice(&[0x99; 20]);
    let len = keypair.encrypt(&mut pkt, 20, Instant::now()).unwrap();
    send_and_expect_one_drop(
        &s,
        &sock,
        &pkt[..len],
        "not IP inside",
        DropReason::InnerPacket,
    );
    // Replaying that same packet: the replay window drops it.
    send_and_expect_one_drop(
        &s,
        &sock,
        &pkt[..len],
        "replayed transport",
        DropReason::Decrypt,
    );

    // Roaming follows authenticated packets only: from another port, a replayed and a forged
    // packet reach A's receive path and move nothing; a fresh valid one moves the endpoint.
    let elsewhere = raw_socket(&s.pair.b);
    let there = elsewhere.local_addr().unwrap().port();
    assert_ne!(there, here);
    send_and_expect_one_drop(
        &s,
        &elsewhere,
        &pkt[..len],
        "replay from elsewhere",
        DropReason::Decrypt,
    );
    let mut tampered = pkt[..len].to_vec();
    tampered[20] ^= 1;
    send_and_expect_one_drop(
        &s,
        &elsewhere,
        &tampered,
        "forged from elsewhere",
        DropReason::Decrypt,
    );
    assert_eq!(
        endpoint_port(),
        here,
        "unauthenticated packets do not move the endpoint"
    );
    let mut fresh = vec![0u8; 16 + 20 + 32];
    fresh[16..36].copy_from_slice(&[0x99; 20]);
    let flen = keypair.encrypt(&mut fresh, 20, Instant::now()).unwrap();
    send_and_expect_one_drop(
        &s,
        &elsewhere,
        &fresh[..flen],
        "valid from elsewhere",
        DropReason::InnerPacket,
    );
    assert_eq!(
        endpoint_port(),
        there,
        "an authenticated packet moves the endpoint"
    );

    // A peer configured with the interface's own public key is ignored, as the kernel does.
    let peers = s.a.peer_keys().len();
    s.a.set_peer(&PeerConfig {
        public_key: s.a_pub,
        preshared_key: None,
        endpoint: Some(s.a_ep),
        allowed_ips: vec![("10.9.0.77".parse::<IpAddr>().unwrap(), 32)],
        persistent_keepalive: 0,
    });
    assert_eq!(s.a.peer_keys().len(), peers);
    assert!(s.a.peer_info(&s.a_pub).is_none());

    // The daemon is alive and the legitimate tunnel works.
    assert!(ping(&s.pair.b, "10.9.0.1", 2));
    assert_eq!(s.a.counters().loop_restarts, 0, "no packet loop panicked");
}

/// A UDP/IPv4 packet (checksums not needed: it is dropped before the TUN).
fn ipv4_udp(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[24..26].copy_from_slice(&8u16.to_be_bytes());
    p
}

/// A device whose key takes 50 ms per operation, with the tunnel up and settled.
fn setup_with_slow_token() -> (Setup, Arc<SlowKey>) {
    let slow: Arc<SlowKey> = Arc::new(SlowKey::new(Duration::from_millis(50)));
    let s = setup(slow.clone());
    assert!(ping_until(&s.pair.b, "10.9.0.1", 10));
    settled(20, &[&s.a], &[&slow]);
    (s, slow)
}

/// A flood initiation: garbage inside under sender index `index`, with a valid mac1 (and a
/// valid mac2 once `cookie` holds a cookie), sent to `to`.
fn send_flood_initiation(sock: &UdpSocket, to: SocketAddr, cookie: &mut CookieState, index: u32) {
    let mut init = header(1, 148);
    init[8..12].copy_from_slice(&index.to_le_bytes());
    cookie.add_macs(&mut init, Instant::now());
    sock.send_to(&init, to).unwrap();
}

/// Initiations with a valid mac1 at full speed against a 50 ms token: the
/// device answers with cookie replies once its queue is deep, spends the
/// token only a bounded number of times, and the legitimate tunnel keeps going.
#[test]
fn initiation_flood_gets_cookies_and_bounded_token_use() {
    let (s, slow) = setup_with_slow_token();
    let before = s.a.counters();
    let calls_before = slow.calls.load(std::sync::atomic::Ordering::Relaxed);
    let mut ping = s
        .pair
        .b
        .command("ping")
        .args(["-c", "100", "-i", "0.02", "-q", "10.9.0.1"])
        .spawn()
        .unwrap();
    let sock = raw_socket(&s.pair.b);
    sock.set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut cookie = CookieState::new(&s.a_pub);
    let mut replies = 0;
    let mut b = [0u8; 256];
    for i in 0..1000u32 {
        send_flood_initiation(&sock, s.a_ep, &mut cookie, i);
        while let Ok((n, _)) = sock.recv_from(&mut b) {
            assert_eq!(n, 64, "only cookie replies");
            assert_eq!(b[0], 3);
            replies += 1;
        }
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while let Ok((n, _)) = sock.recv_from(&mut b) {
        assert_eq!((n, b[0]), (64, 3));
        replies += 1;
    }
    assert!(
        ping.wait().unwrap().success(),
        "the legitimate tunnel keeps working during the flood"
    );
    // Let the queue drain: nothing more happens.
    let (after, calls) = settled(60, &[&s.a], &[&slow]);
    let (after, calls) = (after[0].clone(), calls[0] - calls_before);
    // Each flood message got a cookie reply, or was replaced in the queue by the next one from
    // the same source (Stale: it never reached the token), or reached the worker.
    let stale = after.dropped(DropReason::Stale) - before.dropped(DropReason::Stale);
    let queued = after.dropped(DropReason::Handshake) - before.dropped(DropReason::Handshake);
    assert!(
        replies >= 800 && (950..=1000).contains(&(replies as u64 + stale + queued)),
        "cookie replies received: {replies}, stale {stale}, queued {queued} ({after:?})"
    );
    assert_eq!(
        after.cookie_replies_sent - before.cookie_replies_sent,
        replies as u64
    );
    // Every flood initiation that reached the worker cost one token operation
    // (and was then rejected); the rest never touched the token.
    assert_eq!(
        calls, queued,
        "token operations = initiations that reached the worker"
    );
    assert!(
        calls <= 70,
        "token operations bounded by the queue, not the flood: {calls}"
    );
    assert_eq!(
        after.responses_sent, before.responses_sent,
        "no response to garbage"
    );
}

/// An attacker that owns its address (it answers cookies, so its mac2 is
/// valid) is still held to 20 handshake messages per second under load.
#[test]
fn cookie_holding_flooder_is_rate_limited() {
    use std::sync::atomic::Ordering::Relaxed;
    let (s, slow) = setup_with_slow_token();
    let sock = raw_socket(&s.pair.b);
    let mut cookie = CookieState::new(&s.a_pub);
    // Make A busy (more than 20 a second: from one source they replace each other in the
    // queue, so it is the rate that puts A under load), then get a cookie for our address.
    let mut got_cookie = false;
    let mut b = [0u8; 256];
    for i in 100..130u32 {
        send_flood_initiation(&sock, s.a_ep, &mut cookie, i);
    }
    // Drain the cookie replies to that burst.
    while sock.recv_from(&mut b).is_ok() {}
    for i in 0..50u32 {
        send_flood_initiation(&sock, s.a_ep, &mut cookie, i);
        if let Ok((64, _)) = sock.recv_from(&mut b) {
            // The reply answers the message just sent (same mac1).
            cookie
                .consume_cookie_reply(&b[..64], Instant::now())
                .expect("valid cookie reply");
            got_cookie = true;
            break;
        }
    }
    assert!(got_cookie, "A demanded a cookie under load");
    let before = s.a.counters();
    let calls0 = slow.calls.load(Relaxed);
    let start = Instant::now();
    for i in 0..400u32 {
        send_flood_initiation(&sock, s.a_ep, &mut cookie, 1000 + i);
        std::thread::sleep(Duration::from_micros(500));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (after, calls) = settled(60, &[&s.a], &[&slow]);
    let (after, calls) = (after[0].clone(), calls[0] - calls0);
    let limited = after.dropped(DropReason::RateLimited) - before.dropped(DropReason::RateLimited);
    assert!(limited >= 300, "rate-limited: {limited} ({after:?})");
    // Burst of 5 plus 20 per second (plus what was already queued).
    let bound = 5 + (20.0 * elapsed).ceil() as u64 + 3;
    assert!(
        calls <= bound,
        "token operations {calls} > {bound} in {elapsed:.2} s"
    );
    assert!(
        ping(&s.pair.b, "10.9.0.1", 2),
        "the legitimate tunnel is unaffected"
    );
}
