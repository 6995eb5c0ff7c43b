//! The device layer end to end: driver -> lock -> T=1 -> virtual chip -> applet.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use x25519_dalek::{PublicKey, StaticSecret};

use super::*;
use crate::apdu::{tlv, CommandApdu};
use crate::applet::protocol::{CLA_IOT, CURVE_X25519, INS_WRITE, TAG_1, TAG_2, TAG_3};
use crate::applet::ObjectId;
use crate::virtual_se050::{Direction, FaultHandle, Processed};

fn id(value: u32) -> ObjectId {
    ObjectId::new(value).unwrap()
}

fn virtual_transport(dir: &tempfile::TempDir) -> Transport {
    Transport::Virtual {
        state: dir.path().join("se050.state"),
        latency: Duration::ZERO,
    }
}

#[test]
fn byte_order_through_the_full_stack_matches_x25519_dalek() {
    let dir = tempfile::tempdir().unwrap();
    let mut se = open(&virtual_transport(&dir)).unwrap();
    se.generate_x25519(id(0x10)).unwrap();
    let chip_public = se.read_x25519_public(id(0x10)).unwrap();
    for _ in 0..3 {
        let peer = StaticSecret::random_from_rng(rand_core::OsRng);
        let expected = peer.diffie_hellman(&PublicKey::from(chip_public));
        let secret = se
            .ecdh_x25519(id(0x10), PublicKey::from(&peer).as_bytes())
            .unwrap();
        assert_eq!(*secret, *expected.as_bytes());
    }
}

#[test]
fn rfc7748_vector_through_the_full_stack() {
    // RFC 7748 section 6.1; the private key is imported with a raw WriteECKey
    // (chip order, i.e. reversed), sent through the locked T=1 link.
    use crate::applet::rfc7748::{ALICE_PRIVATE, ALICE_PUBLIC, BOB_PUBLIC, SHARED};
    let dir = tempfile::tempdir().unwrap();
    let mut se = open(&virtual_transport(&dir)).unwrap();
    let mut chip_private = ALICE_PRIVATE;
    chip_private.reverse();
    let mut data = Vec::new();
    tlv::push(&mut data, TAG_1, &0x20u32.to_be_bytes());
    tlv::push(&mut data, TAG_2, &[CURVE_X25519]);
    tlv::push(&mut data, TAG_3, &chip_private);
    let apdu = CommandApdu::new(CLA_IOT, INS_WRITE, 0x61, 0x00, data, None).encode();
    let response = se.transport_mut().transceive(&apdu).unwrap();
    assert_eq!(*response, [0x90, 0x00]);
    assert_eq!(se.read_x25519_public(id(0x20)).unwrap(), ALICE_PUBLIC);
    assert_eq!(*se.ecdh_x25519(id(0x20), &BOB_PUBLIC).unwrap(), SHARED);
}

#[test]
fn long_files_cross_the_link_chained_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let mut se = open(&virtual_transport(&dir)).unwrap();
    let content: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 251) as u8).collect();
    se.write_binary(id(0x100), &content).unwrap();
    assert_eq!(se.read_binary(id(0x100)).unwrap(), content);
}

#[test]
fn two_openers_of_one_state_file_see_one_chip() {
    let dir = tempfile::tempdir().unwrap();
    let transport = virtual_transport(&dir);
    let mut a = open(&transport).unwrap();
    let mut b = open(&transport).unwrap();
    a.generate_x25519(id(0x30)).unwrap();
    let public = b.read_x25519_public(id(0x30)).unwrap();
    assert_eq!(public, a.read_x25519_public(id(0x30)).unwrap());
    let peer = StaticSecret::random_from_rng(rand_core::OsRng);
    let peer_public = PublicKey::from(&peer);
    let expected = *peer.diffie_hellman(&PublicKey::from(public)).as_bytes();
    // Both at once, from two threads: the lock serialises them; no frame is mixed up.
    let worker = std::thread::spawn(move || {
        for _ in 0..20 {
            let s = b.ecdh_x25519(id(0x30), peer_public.as_bytes()).unwrap();
            assert_eq!(*s, expected);
        }
    });
    for _ in 0..20 {
        let s = a.ecdh_x25519(id(0x30), peer_public.as_bytes()).unwrap();
        assert_eq!(*s, expected);
    }
    worker.join().unwrap();
    let counters = VirtualApplet::open(&dir.path().join("se050.state"), Duration::ZERO)
        .unwrap()
        .counters();
    assert_eq!((counters.keygen, counters.ecdh), (1, 40));
}

#[test]
fn slow_operations_go_through_wtx() {
    let dir = tempfile::tempdir().unwrap();
    let options = VirtualOptions {
        bwt: Duration::from_millis(5),
        ..VirtualOptions::default()
    };
    // 300 ms of work against a 5 ms BWT: the host polls within it however slowly it runs (an
    // unoptimised build under qemu-user polled once in 30 ms, got a NACK, and next found the
    // chip done, with no WTX).
    let transport = open_virtual_with_options(
        &dir.path().join("se050.state"),
        Duration::from_millis(300),
        options,
    )
    .unwrap();
    let mut se = Se050::select(transport).unwrap();
    let started = Instant::now();
    se.generate_x25519(id(0x40)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    let stats = se.transport_mut().inner().bus().stats();
    // At least one: how many depends on how promptly the host polled.
    assert!(stats.wtx_requests >= 1, "{stats:?}");
}

#[test]
fn ecdh_under_bus_faults_is_right_or_a_clear_error_and_never_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("se050.state");
    let faults = FaultHandle::new(42);
    let options = VirtualOptions {
        // Storms are counted in polls: a BWT well above the poll interval keeps a
        // 5-poll storm inside the reply window even on a loaded machine.
        bwt: Duration::from_millis(20),
        faults: faults.clone(),
        ..VirtualOptions::default()
    };
    let transport = open_virtual_with_options(&state, Duration::from_millis(1), options).unwrap();
    let mut se = Se050::select(Reselecting::new(transport)).unwrap();
    se.generate_x25519(id(0x50)).unwrap();
    let public = se.read_x25519_public(id(0x50)).unwrap();
    let mut ok = 0;
    let mut calls = 0u64;
    for round in 0..40u32 {
        match round % 5 {
            0 => faults.corrupt_next_frames(Direction::SeToHost, 2),
            1 => faults.corrupt_next_frames(Direction::HostToSe, 2),
            2 => faults.drop_next_frames(Direction::SeToHost, 1),
            3 => faults.nack_next_polls(5),
            _ => faults.reset_mid_apdu(),
        }
        let peer = StaticSecret::random_from_rng(rand_core::OsRng);
        let expected = peer.diffie_hellman(&PublicKey::from(public));
        calls += 1;
        match se.ecdh_x25519(id(0x50), PublicKey::from(&peer).as_bytes()) {
            Ok(secret) => {
                assert_eq!(*secret, *expected.as_bytes(), "round {round}: wrong secret");
                ok += 1;
            }
            Err(e) => {
                // Only the injected resets may cost an answer.
                assert_eq!(round % 5, 4, "round {round}: {e}");
            }
        }
        faults.clear();
    }
    eprintln!("ECDH under faults: {ok} of 40 right, the rest clear errors");
    assert!(
        ok >= 32,
        "only {ok} of 40 ECDHs survived recoverable faults"
    );
    let counters = VirtualApplet::open(&state, Duration::ZERO)
        .unwrap()
        .counters();
    assert!(
        counters.ecdh <= calls,
        "{} ECDHs for {calls} calls",
        counters.ecdh
    );
    assert!(
        counters.ecdh >= ok,
        "{} ECDHs for {ok} answers",
        counters.ecdh
    );
}

/// Counts how often two exchanges were inside the chip at the same time.
struct OverlapDetector {
    inside: Arc<AtomicBool>,
    overlaps: Arc<AtomicU32>,
}

impl ApduHandler for OverlapDetector {
    fn process(&mut self, command: &[u8]) -> Processed {
        if self.inside.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(1));
        self.inside.store(false, Ordering::SeqCst);
        let mut response = command.to_vec();
        response.extend_from_slice(&[0x90, 0x00]);
        Processed {
            response: response.into(),
            busy: Duration::ZERO,
        }
    }
}

/// Two transports, one chip's "inside", 40 exchanges each from two threads.
fn count_overlaps(locked: bool) -> u32 {
    let dir = tempfile::tempdir().unwrap();
    let lock_path = dir.path().join("chip.lock");
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicU32::new(0));
    let mut threads = vec![];
    for t in 0..2u8 {
        let detector = OverlapDetector {
            inside: inside.clone(),
            overlaps: overlaps.clone(),
        };
        let mut transport: Box<dyn ApduTransport> = if locked {
            Box::new(
                open_virtual_with(Box::new(detector), &lock_path, VirtualOptions::default())
                    .unwrap(),
            )
        } else {
            let chip = VirtualSe050::new(Box::new(detector), VirtualOptions::default());
            Box::new(T1Link::open(chip, Delay, T1Options::default()).unwrap())
        };
        threads.push(std::thread::spawn(move || {
            for i in 0..40u8 {
                let cmd = [0x80, t, i, 0x00];
                let mut expected = cmd.to_vec();
                expected.extend_from_slice(&[0x90, 0x00]);
                assert_eq!(*transport.transceive(&cmd).unwrap(), expected);
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    overlaps.load(Ordering::SeqCst)
}

#[test]
fn locked_transports_on_one_lock_file_serialise() {
    assert_eq!(count_overlaps(true), 0);
    // Without the lock the same load does overlap: the detector works.
    assert!(count_overlaps(false) > 0);
}

#[test]
fn missing_i2c_bus_is_a_clear_error() {
    let transport = Transport::I2c {
        device: PathBuf::from("/dev/i2c-no-such-bus"),
        address: 0x48,
    };
    let err = open(&transport).err().expect("no such bus");
    let text = err.to_string();
    assert!(matches!(err, DeviceError::Bus(_)), "{text}");
    assert!(text.contains("/dev/i2c-no-such-bus"), "{text}");
}

#[test]
fn state_lock_is_the_one_the_store_documents() {
    let state = Path::new("/var/lib/se050/state");
    assert_eq!(
        lock::state_lock_path(state),
        crate::virtual_se050::store::lock_path(state)
    );
}

#[test]
fn the_applet_is_selected_again_after_a_chip_reset() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("se050.state");
    let transport = open_virtual(&state, Duration::ZERO).unwrap();
    let mut se = Se050::select(Reselecting::new(transport)).unwrap();
    se.generate_x25519(id(0x60)).unwrap();
    let public = se.read_x25519_public(id(0x60)).unwrap();
    // A soft reset deselects the applet, as on the real chip.
    se.transport_mut()
        .inner_mut()
        .inner_mut()
        .soft_reset()
        .unwrap();
    assert_eq!(se.read_x25519_public(id(0x60)).unwrap(), public);

    // Without the wrapper the chip refuses (6D00): the reselection is what recovers.
    let transport = open_virtual(&state, Duration::ZERO).unwrap();
    let mut bare = Se050::select(transport).unwrap();
    bare.transport_mut().inner_mut().soft_reset().unwrap();
    let err = bare.read_x25519_public(id(0x60)).unwrap_err();
    assert!(err.to_string().contains("6D00"), "{err}");
}

#[test]
fn an_exchange_costs_no_sleep() {
    // Lock, RESYNCH, APDU, unlock: with a chip that answers at once nothing on the
    // way polls or sleeps (MPOT polling starts only after a NACK).
    let dir = tempfile::tempdir().unwrap();
    let transport = open_virtual(&dir.path().join("se050.state"), Duration::ZERO).unwrap();
    let mut se = Se050::select(transport).unwrap();
    se.generate_x25519(id(0x70)).unwrap();
    let peer = PublicKey::from(&StaticSecret::random_from_rng(rand_core::OsRng));
    let n = 100u32;
    let started = Instant::now();
    for _ in 0..n {
        se.ecdh_x25519(id(0x70), peer.as_bytes()).unwrap();
    }
    let per_ecdh = started.elapsed() / n;
    eprintln!("full stack ECDH with zero chip latency: {per_ecdh:?} each");
    let stats = se.transport_mut().inner().bus().stats();
    // No NACK means the host never polled (MPOT polling starts only after one), and no WTX means
    // the chip never asked for time: nothing on the way waited. How fast that is belongs to
    // bench/run, not to a test on a loaded machine.
    assert_eq!(stats.nacks, 0, "{stats:?}");
    assert_eq!(stats.wtx_requests, 0, "{stats:?}");
}
