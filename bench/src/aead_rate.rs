//! `wg-bench aead-rate`: the ceiling of the data path. One thread seals (encrypts and tags) and
//! opens (checks and decrypts) packets of `--size` bytes (1420: a full packet on wg-quick's
//! default MTU) with ring's ChaCha20-Poly1305, the AEAD and library wg-pkcs11's transport keys
//! use (keypair.rs), in place, a fresh nonce per packet as WireGuard does. What one core can do
//! with the crypto alone is the most a single-stream tunnel can carry per encrypting or
//! decrypting thread. Rates are per second of this thread's CPU time, so a busy machine slows
//! the measurement but does not lower the figure (`cpu_share` says how much of the wall-clock
//! time the thread got).

use std::time::{Duration, Instant};

use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

use crate::args::Options;

/// CPU time of this thread: the rate per CPU second is what one core does, however busy the
/// machine is (wall-clock rates on a shared machine measure the other tenants too).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn nonce(counter: u64) -> Nonce {
    // WireGuard's nonce: 4 zero bytes, then the 64-bit counter little-endian.
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Packets per CPU second sealing (and opening) `size`-byte packets for about `seconds` of
/// CPU time each, and the share of wall-clock time this thread had the CPU.
fn rate(key: &LessSafeKey, size: usize, seconds: f64) -> Result<(f64, f64, f64), String> {
    let mut buf = vec![0x5au8; size];
    let mut tags: Vec<Tag> = Vec::with_capacity(1 << 16);
    // Seal: as many packets as fit the time, keeping each tag to open them again below.
    let deadline = Duration::from_secs_f64(seconds);
    let (wall0, started) = (Instant::now(), thread_cpu());
    let mut sealed = 0u64;
    while thread_cpu() - started < deadline {
        for _ in 0..256 {
            let tag = key
                .seal_in_place_separate_tag(nonce(sealed), Aad::empty(), &mut buf)
                .map_err(|_| "seal failed".to_string())?;
            if tags.len() < tags.capacity() {
                tags.push(tag);
            }
            sealed += 1;
        }
    }
    let seal_pps = sealed as f64 / (thread_cpu() - started).as_secs_f64();
    // Open: a real ciphertext and tag each time (a failed check costs less than a good one).
    let mut packet = vec![0x5au8; size];
    let tag = key
        .seal_in_place_separate_tag(nonce(0), Aad::empty(), &mut packet)
        .map_err(|_| "seal failed".to_string())?;
    packet.extend_from_slice(tag.as_ref());
    let started = thread_cpu();
    let mut opened = 0u64;
    let mut work = packet.clone();
    while thread_cpu() - started < deadline {
        for _ in 0..256 {
            work.copy_from_slice(&packet);
            key.open_in_place(nonce(0), Aad::empty(), &mut work)
                .map_err(|_| "open failed on a packet just sealed".to_string())?;
            opened += 1;
        }
    }
    let cpu = thread_cpu() - started;
    let open_pps = opened as f64 / cpu.as_secs_f64();
    let share = (2.0 * cpu.as_secs_f64()) / wall0.elapsed().as_secs_f64();
    Ok((seal_pps, open_pps, share.min(1.0)))
}

pub fn run(options: &Options) -> Result<(), String> {
    let size: usize = options.optional("size", 1420)?;
    let seconds: f64 = options.optional("seconds", 2.0)?;
    let key = LessSafeKey::new(
        UnboundKey::new(&CHACHA20_POLY1305, &[7u8; 32]).map_err(|_| "bad key".to_string())?,
    );
    // Warm up (CPU frequency, caches) before measuring.
    rate(&key, size, 0.2)?;
    let (seal_pps, open_pps, share) = rate(&key, size, seconds)?;
    println!("size={size}");
    println!("seal_pps={seal_pps:.0}");
    println!("open_pps={open_pps:.0}");
    println!("seal_mbps={:.0}", seal_pps * size as f64 * 8.0 / 1e6);
    println!("open_mbps={:.0}", open_pps * size as f64 * 8.0 / 1e6);
    println!("cpu_share={share:.2}");
    Ok(())
}
