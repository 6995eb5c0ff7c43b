//! The virtual chip's cost per APDU: an ECDH through `Se050` on the zero-latency virtual chip
//! (state reload check, counters in the sidecar file, the chip's inter-process lock) must cost
//! within 1.25x of a bare x25519-dalek Diffie-Hellman.
//!
//! Figures are best-of-several batches, so that other work on the machine does not decide.
//! `cargo test --release -p pkcs11-se050 --test virtual_chip_overhead -- --nocapture` prints them.

use pkcs11_se050::applet::{ObjectId, Se050};
use pkcs11_se050::t1::{ApduTransport, LinkError};
use pkcs11_se050::virtual_se050::applet::{InProcessTransport, VirtualApplet};
use pkcs11_se050::virtual_se050::store::lock_path;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

const BATCH: u32 = 200;
const BATCHES: usize = 7;

/// flock around each exchange, as the host's locked transport does.
struct Locked {
    inner: InProcessTransport<VirtualApplet>,
    lock: File,
}

impl ApduTransport for Locked {
    fn transceive(&mut self, command: &[u8]) -> Result<Vec<u8>, LinkError> {
        self.lock.lock().expect("flock");
        let result = self.inner.transceive(command);
        self.lock.unlock().expect("unlock");
        result
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

fn locked_chip(state: &Path) -> Se050<Locked> {
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path(state))
        .unwrap();
    let applet = VirtualApplet::open(state, Duration::ZERO).unwrap();
    Se050::select(Locked {
        inner: InProcessTransport::new(applet),
        lock,
    })
    .unwrap()
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
    }
    let ratio = through.as_secs_f64() / bare.as_secs_f64();
    println!(
        "bare x25519-dalek DH {bare:?}; ECDH through Se050 + virtual chip + flock {through:?} \
         (ratio {ratio:.3}); one trivial APDU (CheckObjectExists) round trip {trivial:?}"
    );
    assert!(
        ratio <= 1.25,
        "ECDH through the stack costs {ratio:.2}x a bare DH"
    );
}
