//! A micro-benchmark of the virtual chip's cost per APDU: an ECDH through `Se050` on the
//! zero-latency virtual chip (state reload check, counters in the sidecar file, the chip's
//! inter-process lock), and through the whole T=1 stack, against a bare x25519-dalek
//! Diffie-Hellman measured in the same run. The target (issue 5) is within 1.25x.
//!
//! Figures are the best of several batches, measured in pairs, so that other work on the machine
//! does not decide. It prints ratios and asserts nothing: speed is measured, never asserted.
//! `cargo run --release -p pkcs11-se050 --example chip_overhead`

use pkcs11_se050::applet::{ObjectId, Se050};
use pkcs11_se050::device::lock::{state_lock_path, DeviceLock};
use pkcs11_se050::device::LockedTransport;
use pkcs11_se050::virtual_se050::applet::{InProcessTransport, VirtualApplet};
use std::path::Path;
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

const BATCH: u32 = 100;
const ROUNDS: usize = 15;

/// The applet layer straight on the virtual applet, behind the chip's inter-process lock.
fn locked_chip(state: &Path) -> Se050<LockedTransport<InProcessTransport<VirtualApplet>>> {
    let lock = DeviceLock::open(&state_lock_path(state)).unwrap();
    let applet = VirtualApplet::open(state, Duration::ZERO).unwrap();
    Se050::select(LockedTransport::new(InProcessTransport::new(applet), lock)).unwrap()
}

/// Time per operation over one batch.
fn batch(mut op: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..BATCH {
        op();
    }
    started.elapsed() / BATCH
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("se050.state");
    let mut chip = locked_chip(&state);
    let key = ObjectId::new(0x10).unwrap();
    chip.generate_x25519(key).unwrap();
    let peer_secret = StaticSecret::from([0x33; 32]);
    let peer = *PublicKey::from(&peer_secret).as_bytes();
    let own = StaticSecret::from([0x44; 32]);
    let peer_key = PublicKey::from(peer);

    let mut full_chip = pkcs11_se050::device::open(&pkcs11_se050::device::Transport::Virtual {
        state: state.clone(),
        latency: Duration::ZERO,
    })
    .unwrap();

    // Measure in pairs, so that both halves of a pair see the same machine load.
    let (mut bare, mut through, mut trivial, mut full) =
        (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
    let mut best_pair_ratio = f64::MAX;
    for _ in 0..ROUNDS {
        let bare_now = batch(|| {
            std::hint::black_box(own.diffie_hellman(std::hint::black_box(&peer_key)));
        });
        let through_now = batch(|| {
            std::hint::black_box(chip.ecdh_x25519(key, &peer).unwrap());
        });
        best_pair_ratio = best_pair_ratio.min(through_now.as_secs_f64() / bare_now.as_secs_f64());
        bare = bare.min(bare_now);
        through = through.min(through_now);
        trivial = trivial.min(batch(|| {
            std::hint::black_box(chip.exists(key).unwrap());
        }));
        full = full.min(batch(|| {
            std::hint::black_box(full_chip.ecdh_x25519(key, &peer).unwrap());
        }));
    }
    let ratio = through.as_secs_f64() / bare.as_secs_f64();
    let report = format!(
        "bare x25519-dalek DH {bare:?}; ECDH through Se050 + virtual chip + flock {through:?} \
         (ratio {ratio:.3}, best pair {best_pair_ratio:.3}); one trivial APDU \
         (CheckObjectExists) round trip {trivial:?}; ECDH through device::open (T=1 over the \
         virtual I2C bus) {full:?} (ratio {:.3})",
        full.as_secs_f64() / bare.as_secs_f64()
    );
    println!("{report}");
    println!(
        "one trivial APDU costs {:.3} of a bare DH",
        trivial.as_secs_f64() / bare.as_secs_f64()
    );
}
