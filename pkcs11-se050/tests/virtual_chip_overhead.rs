//! The virtual chip's cost per APDU: an ECDH through `Se050` on the zero-latency virtual chip
//! (state reload check, counters in the sidecar file, the chip's inter-process lock) must cost
//! within 1.25x of a bare x25519-dalek Diffie-Hellman.
//!
//! Figures are best-of-several batches, so that other work on the machine does not decide.
//! `cargo test --release -p pkcs11-se050 --test virtual_chip_overhead -- --nocapture` prints them.

use pkcs11_se050::applet::{ObjectId, Se050};
use pkcs11_se050::device::lock::{state_lock_path, DeviceLock};
use pkcs11_se050::device::LockedTransport;
use pkcs11_se050::virtual_se050::applet::{InProcessTransport, VirtualApplet};
use std::path::Path;
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

const BATCH: u32 = 200;
const BATCHES: usize = 7;

/// The applet layer straight on the virtual applet, behind the chip's inter-process lock.
fn locked_chip(state: &Path) -> Se050<LockedTransport<InProcessTransport<VirtualApplet>>> {
    let lock = DeviceLock::open(&state_lock_path(state)).unwrap();
    let applet = VirtualApplet::open(state, Duration::ZERO).unwrap();
    Se050::select(LockedTransport::new(InProcessTransport::new(applet), lock)).unwrap()
}

/// Best per-operation time over the batches.
fn best_of(mut op: impl FnMut()) -> Duration {
    (0..BATCHES)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..BATCH {
                op();
            }
            started.elapsed() / BATCH
        })
        .min()
        .unwrap()
}

#[test]
fn ecdh_through_the_virtual_chip_costs_within_1_25x_of_a_bare_dh() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("se050.state");
    let mut chip = locked_chip(&state);
    let key = ObjectId::new(0x10).unwrap();
    chip.generate_x25519(key).unwrap();
    let peer_secret = StaticSecret::from([0x33; 32]);
    let peer = *PublicKey::from(&peer_secret).as_bytes();
    let own = StaticSecret::from([0x44; 32]);
    let peer_key = PublicKey::from(peer);

    // Interleave the measurements so both see the same machine load.
    let mut bare = Duration::MAX;
    let mut through = Duration::MAX;
    let mut trivial = Duration::MAX;
    let mut full = Duration::MAX;
    let mut full_chip = pkcs11_se050::device::open(&pkcs11_se050::device::Transport::Virtual {
        state: state.clone(),
        latency: Duration::ZERO,
    })
    .unwrap();
    for _ in 0..3 {
        bare = bare.min(best_of(|| {
            std::hint::black_box(own.diffie_hellman(std::hint::black_box(&peer_key)));
        }));
        through = through.min(best_of(|| {
            std::hint::black_box(chip.ecdh_x25519(key, &peer).unwrap());
        }));
        trivial = trivial.min(best_of(|| {
            std::hint::black_box(chip.exists(key).unwrap());
        }));
        full = full.min(best_of(|| {
            std::hint::black_box(full_chip.ecdh_x25519(key, &peer).unwrap());
        }));
    }
    let ratio = through.as_secs_f64() / bare.as_secs_f64();
    println!(
        "bare x25519-dalek DH {bare:?}; ECDH through Se050 + virtual chip + flock {through:?} \
         (ratio {ratio:.3}); one trivial APDU (CheckObjectExists) round trip {trivial:?}; \
         ECDH through device::open (T=1 over the virtual I2C bus) {full:?} (ratio {:.3})",
        full.as_secs_f64() / bare.as_secs_f64()
    );
    assert!(
        ratio <= 1.25,
        "ECDH through the stack costs {ratio:.2}x a bare DH"
    );
}
