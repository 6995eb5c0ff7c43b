//! Shared secrets are wiped from every heap buffer they cross, shown with the memory itself.
//!
//! This test binary runs on an allocator that hands out zeroed blocks and, while armed, looks
//! into every block freed for the shared secret of the ECDH under test (in RFC 7748 and in the
//! chip's byte order). A buffer on the path that is freed without being wiped (a T=1 frame, a
//! receive buffer, a response APDU, the virtual chip's buffers, a Vec's old allocation after it
//! grew, the derived key object, its CKA_VALUE copy) is counted. Stack copies are out of reach.
//!
//! The allocator needs `unsafe` (GlobalAlloc is an unsafe trait); it lives only in this test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use pkcs11_se050::applet::ObjectId;
use pkcs11_se050::config::Config;
use pkcs11_se050::token::attributes::{AttrValue, Template};
use pkcs11_se050::token::{open_chip, DeriveParams, Token};
use pkcs11_sys::*;
use x25519_dalek::{PublicKey, StaticSecret};

/// The allocator of this test binary.
struct Scanning;

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

static ARMED: AtomicBool = AtomicBool::new(false);
/// The secret being looked for, in RFC 7748 order (the chip order is its reverse).
static SECRET: [AtomicU8; 32] = [const { AtomicU8::new(0) }; 32];
/// Freed blocks that still held the secret.
static LEAKS: AtomicUsize = AtomicUsize::new(0);
/// Freed blocks looked into (so that the test knows it looked at all).
static SCANNED: AtomicU64 = AtomicU64::new(0);
/// One scenario at a time: the patterns and counters are global.
static SERIAL: Mutex<()> = Mutex::new(());

fn holds_secret(block: &[u8]) -> bool {
    let mut secret = [0u8; 32];
    for (byte, stored) in secret.iter_mut().zip(SECRET.iter()) {
        *byte = stored.load(Ordering::Relaxed);
    }
    let mut reversed = secret;
    reversed.reverse();
    block
        .windows(32)
        .any(|window| window == secret || window == reversed)
}

// SAFETY: every method forwards to the system allocator with the caller's own arguments, so
// System's guarantees hold; `alloc` returns zeroed blocks (alloc_zeroed), which only makes
// them more defined. `dealloc` additionally reads the block before freeing it.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as GlobalAlloc::alloc, passed through. Zeroed, so that every
        // byte of every block is initialised when dealloc reads it.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::SeqCst) && layout.size() >= 32 {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes from `alloc` (the caller
            // frees it only after this), every byte initialised by alloc_zeroed or since.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            SCANNED.fetch_add(1, Ordering::SeqCst);
            if holds_secret(block) {
                LEAKS.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: the caller's block and layout, as GlobalAlloc::dealloc requires.
        unsafe { System.dealloc(ptr, layout) }
    }
    // realloc is the default one: alloc, copy, dealloc, so an old block is looked into too.
}

/// Looks for `secret` in every block freed while `scenario` runs.
fn leaks_while(secret: &[u8; 32], scenario: impl FnOnce()) -> (usize, u64) {
    for (stored, byte) in SECRET.iter().zip(secret) {
        stored.store(*byte, Ordering::SeqCst);
    }
    LEAKS.store(0, Ordering::SeqCst);
    SCANNED.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    scenario();
    ARMED.store(false, Ordering::SeqCst);
    (LEAKS.load(Ordering::SeqCst), SCANNED.load(Ordering::SeqCst))
}

#[test]
fn ecdh_through_t1_and_the_virtual_chip_leaves_no_unwiped_copy() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("chip.state");
    let mut chip = pkcs11_se050::device::open(&pkcs11_se050::device::Transport::Virtual {
        state,
        latency: Duration::ZERO,
    })
    .unwrap();
    let key = ObjectId::new(0x20).unwrap();
    chip.generate_x25519(key).unwrap();
    let chip_public = PublicKey::from(chip.read_x25519_public(key).unwrap());
    let peer = StaticSecret::from([0x5C; 32]);
    let peer_public = *PublicKey::from(&peer).as_bytes();
    let expected = *peer.diffie_hellman(&chip_public).as_bytes();

    let (leaks, scanned) = leaks_while(&expected, || {
        let shared = chip.ecdh_x25519(key, &peer_public).unwrap();
        assert!(*shared == expected, "the ECDH result is wrong");
        drop(shared);
        // The next command, and closing everything: whatever still held the secret is
        // dropped now, and must have been wiped.
        assert!(chip.exists(key).unwrap());
        drop(chip);
    });
    assert!(
        scanned > 10,
        "only {scanned} blocks were freed: nothing was looked at"
    );
    assert_eq!(
        leaks, 0,
        "{leaks} freed heap blocks still held the shared secret"
    );
}

#[test]
fn derive_and_cka_value_leave_no_unwiped_copy() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "transport = \"virtual\"\nvirtual_state = \"{}\"\n",
        dir.path().join("chip.state").display()
    );
    let token = Token::open(Config::parse(&text, None).unwrap(), Box::new(open_chip)).unwrap();
    let session = token
        .open_session(0, CKF_SERIAL_SESSION | CKF_RW_SESSION)
        .unwrap();
    let (public, private) = token
        .generate_key_pair(
            session,
            CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
            &Template::new(vec![(CKA_EC_PARAMS, vec![0x06, 0x03, 0x2B, 0x65, 0x6E])]),
            &Template::new(vec![(CKA_DERIVE, vec![1])]),
        )
        .unwrap();
    let point = match token
        .attributes(session, public, &[CKA_EC_POINT])
        .unwrap()
        .remove(0)
    {
        AttrValue::Value(point) => point,
        other => panic!("{other:?}"),
    };
    let token_public = PublicKey::from(<[u8; 32]>::try_from(&point[2..]).unwrap());
    let peer = StaticSecret::from([0x3A; 32]);
    let expected = *peer.diffie_hellman(&token_public).as_bytes();
    let params = DeriveParams {
        kdf: CKD_NULL,
        shared_data: vec![],
        public_data: PublicKey::from(&peer).as_bytes().to_vec(),
    };
    let extractable = Template::new(vec![(CKA_SENSITIVE, vec![0]), (CKA_EXTRACTABLE, vec![1])]);

    let (leaks, scanned) = leaks_while(&expected, || {
        let secret = token
            .derive(
                session,
                CKM_ECDH1_DERIVE,
                Some(&params),
                private,
                &extractable,
            )
            .unwrap();
        let answer = token.attributes(session, secret, &[CKA_VALUE]).unwrap();
        assert!(
            answer[0].revealed() == Some(&expected[..]),
            "CKA_VALUE is not the shared secret"
        );
        drop(answer);
        token.destroy(session, secret).unwrap();
        // A second secret, dropped with its session rather than destroyed.
        token
            .derive(
                session,
                CKM_ECDH1_DERIVE,
                Some(&params),
                private,
                &extractable,
            )
            .unwrap();
        token.close_session(session).unwrap();
        drop(token);
    });
    assert!(
        scanned > 10,
        "only {scanned} blocks were freed: nothing was looked at"
    );
    assert_eq!(
        leaks, 0,
        "{leaks} freed heap blocks still held the shared secret"
    );
}
