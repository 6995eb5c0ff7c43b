//! A session's transport keys leave no copy on the stack of the thread that sealed or opened
//! with them: ring copies the ChaCha20 key onto the stack for its assembly on every call, and a
//! daemon thread's stack outlives the session (device_key_wiping found the last session's keys
//! there after its peer was removed).

use super::*;
use std::io::{Read, Seek, SeekFrom};
use std::time::Instant;
use zeroize::Zeroizing;

/// How far below this test's frame to look: beyond what a seal or open reaches in any profile.
const LOOK_BELOW: u64 = 64 * 1024;

/// Occurrences of `key` in the dead stack below `frame` (read through /proc/self/mem, so no Rust
/// reference ever points at memory below the stack pointer). The scan's own calls stay shallow
/// (the read goes into a heap buffer), far less deep than ring's seal.
fn copies_below(frame: u64, masked_key: &[u8; 32]) -> usize {
    let mut mem = std::fs::File::open("/proc/self/mem").unwrap();
    let mut dead = vec![0u8; LOOK_BELOW as usize];
    mem.seek(SeekFrom::Start(frame - LOOK_BELOW)).unwrap();
    mem.read_exact(&mut dead).unwrap();
    dead.windows(32)
        .filter(|w| w.iter().zip(masked_key).all(|(x, m)| *x == m ^ MASK))
        .count()
}

/// The test keeps the keys only XOR-masked, so that its own copies are never found.
const MASK: u8 = 0xa5;

/// Both ends of a session with distinct key bytes (nothing else on the stack looks like them),
/// and the keys' masked forms. The unmasked copies its setup makes stay in its own frames, which
/// the caller scrubs.
#[inline(never)]
fn sessions(now: Instant) -> (Keypair, Keypair, [u8; 32], [u8; 32]) {
    let send: [u8; 32] = std::array::from_fn(|i| 0x5c ^ (i as u8).wrapping_mul(37));
    let receive: [u8; 32] = std::array::from_fn(|i| 0xc3 ^ (i as u8).wrapping_mul(59));
    let ours = SessionKeys {
        local_index: 7,
        remote_index: 9,
        send: Zeroizing::new(send),
        receive: Zeroizing::new(receive),
        is_initiator: true,
    };
    let theirs = SessionKeys {
        local_index: 9,
        remote_index: 7,
        send: Zeroizing::new(receive),
        receive: Zeroizing::new(send),
        is_initiator: false,
    };
    let (a, b) = (Keypair::new(&ours, now), Keypair::new(&theirs, now));
    (a, b, send.map(|x| x ^ MASK), receive.map(|x| x ^ MASK))
}

#[test]
fn sealing_and_opening_leave_no_copy_of_the_key_below_the_caller() {
    let now = Instant::now();
    let (a, b, send, receive) = sessions(now);
    // The test's own setup left the keys in its dead frames: gone before the scan.
    crate::secret_mem::scrub_stack();
    let frame_marker = 0u8;
    let frame = std::hint::black_box(&frame_marker) as *const u8 as u64;
    assert_eq!(copies_below(frame, &send), 0, "before any seal or open");
    for len in [0usize, 64, 1400] {
        let mut buf = vec![0u8; len + 64];
        let wire = a.encrypt(&mut buf, len, now).unwrap();
        assert_eq!(copies_below(frame, &send), 0, "after sealing {len} bytes");
        b.decrypt(&mut buf[..wire], now).unwrap();
        assert_eq!(copies_below(frame, &send), 0, "after opening {len} bytes");
        // The other direction: `a` opens with its receive key.
        let mut back = vec![0u8; len + 64];
        let wire = b.encrypt(&mut back, len, now).unwrap();
        a.decrypt(&mut back[..wire], now).unwrap();
        assert_eq!(
            copies_below(frame, &receive),
            0,
            "after opening {len} bytes back"
        );
    }
}
