//! What PlatformSCP03 costs per C_DeriveKey: the host stack the module builds (Se050 over the
//! inter-process lock, over Scp03Transport or not, over T=1) on one virtual SE050 at 0 ms
//! latency, its I2C bus counted byte by byte. Plain and SCP03 take turns in short slices, in the
//! same process, so a change of the machine's load hits both alike.
//!
//! Per ECDH (one C_DeriveKey is one ECDH APDU on the chip): APDUs, bytes on the bus (both
//! directions, without address bytes), I2C transfers (each adds an address byte), µs. And the
//! cost of opening the channel (SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE), paid at the
//! first command and again whenever another process used the chip in between.

use crate::args::Options;
use embedded_hal::i2c::{ErrorType, I2c, Operation, SevenBitAddress};
use linux_embedded_hal::Delay;
use pkcs11_se050::applet::{ObjectId, Se050};
use pkcs11_se050::device::lock::DeviceLock;
use pkcs11_se050::device::LockedTransport;
use pkcs11_se050::scp03::keys::DEFAULT_KVN;
use pkcs11_se050::scp03::owner::ChannelOwner;
use pkcs11_se050::scp03::{Scp03Transport, StaticKeys};
use pkcs11_se050::t1::{ApduTransport, T1Link, T1Options};
use pkcs11_se050::virtual_se050::applet::VirtualApplet;
use pkcs11_se050::virtual_se050::scp03::PlatformScp03;
use pkcs11_se050::virtual_se050::{VirtualOptions, VirtualSe050};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Tally {
    bytes: AtomicU64,
    transfers: AtomicU64,
    /// Command APDUs the chip received (its own count).
    apdus: AtomicU64,
}

struct Counted {
    chip: VirtualSe050,
    tally: Arc<Tally>,
}

impl ErrorType for Counted {
    type Error = <VirtualSe050 as ErrorType>::Error;
}

impl I2c<SevenBitAddress> for Counted {
    fn transaction(&mut self, address: u8, ops: &mut [Operation<'_>]) -> Result<(), Self::Error> {
        let result = self.chip.transaction(address, ops);
        self.tally
            .apdus
            .store(self.chip.stats().apdus, Ordering::Relaxed);
        for op in ops.iter() {
            self.tally.transfers.fetch_add(1, Ordering::Relaxed);
            if result.is_ok() {
                let n = match op {
                    Operation::Write(b) => b.len(),
                    Operation::Read(b) => b.len(),
                };
                self.tally.bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        result
    }
}

type Link = T1Link<Counted, Delay>;

struct Side {
    se: Se050<Box<dyn ApduTransport>>,
    tally: Arc<Tally>,
    time: Duration,
    derives: u64,
}

fn link(
    lock_dir: &std::path::Path,
    name: &str,
    keys: &StaticKeys,
) -> Result<(Link, DeviceLock, Arc<Tally>), String> {
    let chip = PlatformScp03::new(
        Box::new(VirtualApplet::in_memory()),
        keys.clone(),
        DEFAULT_KVN,
        None,
        false,
    );
    let tally = Arc::new(Tally::default());
    let bus = Counted {
        chip: VirtualSe050::new(Box::new(chip), VirtualOptions::default()),
        tally: tally.clone(),
    };
    let link = T1Link::open(bus, Delay, T1Options::default()).map_err(|e| e.to_string())?;
    let lock = DeviceLock::open(&lock_dir.join(format!("{name}.lock")))?;
    Ok((link, lock, tally))
}

fn peer() -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(
        rand_core::OsRng,
    ))
    .to_bytes()
}

pub fn run(options: &Options) -> Result<(), String> {
    let seconds = Duration::from_secs_f64(options.optional("seconds", 2.0)?);
    let dir = std::env::temp_dir().join(format!("wg-bench-scp03-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let keys = StaticKeys::published("SE050C2").expect("published keys");
    let id = ObjectId::new(0x5000_0001).unwrap();

    // Plain: what the module builds without scp03_keys (the lock around T=1).
    let (plain_link, plain_lock, plain_tally) = link(&dir, "plain", &keys)?;
    let plain: Box<dyn ApduTransport> = Box::new(LockedTransport::new(plain_link, plain_lock));
    // SCP03: the lock around the secure channel around T=1, with the owner token (device::secure).
    let (scp_link, scp_lock, scp_tally) = link(&dir, "scp03", &keys)?;
    let owner = ChannelOwner::new(scp_lock.try_clone_file().map_err(|e| e.to_string())?);
    let channel = Scp03Transport::new(scp_link, keys.clone(), DEFAULT_KVN).with_owner(owner);
    let scp: Box<dyn ApduTransport> = Box::new(LockedTransport::new(channel, scp_lock));

    let mut sides = Vec::new();
    for (transport, tally) in [(plain, plain_tally), (scp, scp_tally)] {
        let mut se = Se050::select(transport).map_err(|e| e.to_string())?;
        se.generate_x25519(id).map_err(|e| e.to_string())?;
        se.ecdh_x25519(id, &peer()).map_err(|e| e.to_string())?;
        sides.push(Side {
            se,
            tally,
            time: Duration::ZERO,
            derives: 0,
        });
    }

    // Steady state: one process, the channel kept across exchanges.
    let snapshot =
        |t: &Tally| [&t.bytes, &t.transfers, &t.apdus].map(|c| c.load(Ordering::Relaxed));
    let before: Vec<[u64; 3]> = sides.iter().map(|s| snapshot(&s.tally)).collect();
    let slices = 10;
    for _ in 0..slices {
        for side in sides.iter_mut() {
            let started = Instant::now();
            while started.elapsed() < seconds / (2 * slices) {
                let secret = side
                    .se
                    .ecdh_x25519(id, &peer())
                    .map_err(|e| e.to_string())?;
                std::hint::black_box(&secret);
                side.derives += 1;
            }
            side.time += started.elapsed();
        }
    }
    for (i, (name, side)) in ["plain", "scp03"].iter().zip(&sides).enumerate() {
        let now = snapshot(&side.tally);
        let [bytes, transfers, apdus] = [0, 1, 2].map(|k| now[k] - before[i][k]);
        let n = side.derives.max(1) as f64;
        println!("{name}_apdus_per_derive={:.2}", apdus as f64 / n);
        println!("{name}_derives={}", side.derives);
        println!(
            "{name}_us_per_derive={:.2}",
            side.time.as_secs_f64() * 1e6 / n
        );
        println!("{name}_bytes_per_derive={:.1}", bytes as f64 / n);
        println!("{name}_transfers_per_derive={:.1}", transfers as f64 / n);
    }

    // Re-opening: what one derive costs when another process used the chip in between (the
    // channel is opened again first). Modelled by dropping the channel before each derive.
    let scp = &mut sides[1];
    let rounds = 200;
    let start = snapshot(&scp.tally);
    let started = Instant::now();
    for _ in 0..rounds {
        // A SELECT from above re-opens the channel (SELECT, INITIALIZE UPDATE, EXTERNAL AUTH).
        scp.se
            .transport_mut()
            .transceive(&pkcs11_se050::applet::protocol::select_command().encode())
            .map_err(|e| e.to_string())?;
        scp.se.ecdh_x25519(id, &peer()).map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    let now = snapshot(&scp.tally);
    let [bytes, transfers, apdus] = [0, 1, 2].map(|k| now[k] - start[k]);
    println!(
        "scp03_reopen_apdus_per_derive={:.2}",
        apdus as f64 / rounds as f64
    );
    println!(
        "scp03_reopen_us_per_derive={:.2}",
        elapsed.as_secs_f64() * 1e6 / rounds as f64
    );
    println!(
        "scp03_reopen_bytes_per_derive={:.1}",
        bytes as f64 / rounds as f64
    );
    println!(
        "scp03_reopen_transfers_per_derive={:.1}",
        transfers as f64 / rounds as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
