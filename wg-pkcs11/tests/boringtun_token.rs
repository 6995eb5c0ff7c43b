//! The protocol core with its static key in the virtual SE050, reached through the real
//! libpkcs11_se050.so (cryptoki, C_DeriveKey), against boringtun's `Tunn`: handshakes in both
//! roles with exactly one token operation per handshake (plus `ss` once per peer), and a data path
//! that keeps flowing while the handshake worker waits on a slow token.
//!
//! Needs the module built first (`cargo build -p pkcs11-se050`): the test fails, loudly, without it.

mod boringtun_support;
mod virtual_se050_module;

/// The latency of this binary's virtual chip (`virtual_se050_module` configures it before main).
fn virtual_se050_latency_ms() -> u64 {
    TOKEN_LATENCY_MS
}

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::x25519;
use boringtun_support::*;
use mock_instant::MockClock;
use virtual_se050_module::virtual_se050_module;
use wg_pkcs11::key::token::{genkey, TokenKey};
use wg_pkcs11::key::StaticKey;
use wg_pkcs11::uri::Pkcs11Uri;

/// Every token operation of the simulated chip takes this long (a real SE050: tens of ms).
const TOKEN_LATENCY_MS: u64 = 50;

/// The module of this build, on a virtual SE050 private to this test process whose every operation
/// takes TOKEN_LATENCY_MS (every test here shares it).
fn se050_module() -> PathBuf {
    virtual_se050_module(TOKEN_LATENCY_MS)
}

/// A fresh X25519 key generated in the token under `label`, opened by URI.
fn token_key(label: &str) -> Arc<TokenKey> {
    let uri = Pkcs11Uri::parse(&format!(
        "pkcs11:token=SE050;object={label}?module-path={}",
        se050_module().display()
    ))
    .unwrap();
    let public = genkey(&uri).unwrap();
    let key = TokenKey::open(&uri).unwrap();
    assert_eq!(key.public_key(), public);
    Arc::new(key)
}

/// The tests share one virtual chip, which serves one operation at a time: run them one after
/// the other so their timings are their own.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static CHIP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CHIP.lock().unwrap_or_else(|e| e.into_inner())
}

fn setup_with_token(label: &str, psk: Option<[u8; 32]>) -> (Ours, Theirs, Instant) {
    let now = Instant::now();
    let secret = x25519::StaticSecret::random_from_rng(rand_core::OsRng);
    let ours = Ours::with_key(
        token_key(label),
        x25519::PublicKey::from(&secret).to_bytes(),
        psk,
        now,
    );
    let theirs = Theirs::connect(secret, ours.id.public_key(), psk, None);
    (ours, theirs, now)
}

#[test]
fn token_key_handshakes_in_both_roles_with_one_token_operation_each() {
    let _chip = one_at_a_time();
    let (ours, mut theirs, t0) = setup_with_token("wg-interop-roles", Some([7; 32]));
    ours.peer.precompute_static_static(&ours.id).unwrap();
    assert_eq!(ours.dh_count(), 1, "ss, once for this peer");

    let started = Instant::now();
    handshake_we_initiate(&ours, &mut theirs, t0);
    let initiator_time = started.elapsed();
    assert_eq!(ours.dh_count(), 2, "initiator: se only");
    exchange_data(&ours, &mut theirs, t0, "token initiator");

    MockClock::advance(Duration::from_secs(6));
    let t1 = t0 + Duration::from_secs(6);
    theirs.timers();
    let started = Instant::now();
    handshake_they_initiate(&ours, &mut theirs, t1);
    let responder_time = started.elapsed();
    assert_eq!(ours.dh_count(), 3, "responder: es only");
    exchange_data(&ours, &mut theirs, t1, "token responder");

    // Each handshake waited for its token operation (the counts above say: exactly one).
    // Upper bounds are the benchmark's business: this shared machine's load makes them noise.
    let latency = Duration::from_millis(TOKEN_LATENCY_MS);
    for (role, took) in [("initiator", initiator_time), ("responder", responder_time)] {
        eprintln!("handshake as {role}, token at {TOKEN_LATENCY_MS} ms per operation: {took:?}");
        assert!(took >= latency, "{role}: {took:?}");
    }
}

#[test]
fn the_data_path_keeps_flowing_while_the_token_works_on_a_rekey() {
    let _chip = one_at_a_time();
    let (ours, mut theirs, t0) = setup_with_token("wg-interop-stall", None);
    handshake_we_initiate(&ours, &mut theirs, t0);
    exchange_data(&ours, &mut theirs, t0, "before rekey");
    let first = ours.peer.current_keypair(t0).unwrap().local_index();

    // A rekey: the initiation needs no token operation (ss is cached); the response does (se).
    let t1 = t0 + Duration::from_secs(6);
    MockClock::advance(Duration::from_secs(6));
    theirs.timers();
    let init = ours
        .peer
        .create_initiation(&ours.id, &ours.table, false, t1)
        .unwrap();
    let resp = single_network(theirs.receive(ours.addr.ip(), &init));

    let mut longest_gap = Duration::ZERO;
    let mut round_trips = 0;
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let started = Instant::now();
            ours.peer
                .consume_response(&ours.id, &ours.table, &resp, ours.peer_addr, t1)
                .unwrap();
            started.elapsed()
        });
        // Meanwhile the packet path carries data both ways on the current session.
        let v4 = ipv4_packet([10, 0, 0, 1], [10, 0, 0, 2], &[0x5a; 1000]);
        let back = ipv4_packet([10, 0, 0, 2], [10, 0, 0, 1], &[0xa5; 1000]);
        while !worker.is_finished() {
            let started = Instant::now();
            let msg = ours
                .send(&v4, t1)
                .expect("the current session stays usable");
            assert!(matches!(
                theirs.receive(ours.addr.ip(), &msg).as_slice(),
                [BtOut::Tunnel(..)]
            ));
            let BtOut::Network(msg) = theirs.send(&back) else {
                panic!("boringtun has no session")
            };
            assert_eq!(
                ours.receive(&msg, ours.peer_addr, t1),
                Outcome::Packet(back.clone())
            );
            longest_gap = longest_gap.max(started.elapsed());
            round_trips += 1;
        }
        let token_time = worker.join().unwrap();
        eprintln!(
            "rekey: the token worked {token_time:?}; meanwhile {round_trips} round trips, the longest {longest_gap:?}"
        );
        assert!(token_time >= Duration::from_millis(TOKEN_LATENCY_MS));
    });
    // Had the packet path waited for the token, the loop would have made one round trip.
    // (The strict version of this, independent of timing, is in boringtun_interop.rs.)
    assert!(
        round_trips >= 3,
        "the data path stalled: {round_trips} round trips"
    );

    // The new session takes over; the old one was the only one in use until then.
    let keepalive = ours.keepalive(t1).unwrap();
    assert_eq!(
        theirs.receive(ours.addr.ip(), &keepalive),
        vec![BtOut::Done]
    );
    assert_ne!(ours.peer.current_keypair(t1).unwrap().local_index(), first);
    exchange_data(&ours, &mut theirs, t1, "after rekey");
    assert_eq!(ours.dh_count(), 3, "ss + se + se");
}
