//! Every buffer the host fills with a PIN is wiped before it goes back to the allocator.
//!
//! A global allocator scans each block freed on this test's thread while it is armed, and counts
//! those that still hold the PIN. The chip is a scripted transport that keeps nothing (the
//! virtual chip keeps the PIN, as a chip does, and would be counted). Covered: WriteUserID and
//! VerifySessionUserID outside and inside a session (ProcessSessionCmd), and SCP03 wrapping.
//! (tests/secret_wiping.rs does the same for shared secrets on their way up.)

use pkcs11_se050::applet::{ObjectId, Se050};
use pkcs11_se050::scp03::crypto::SessionKeys;
use pkcs11_se050::scp03::session::SecureMessaging;
use pkcs11_se050::t1::{ApduTransport, LinkError};
use pkcs11_se050::wipe::SecretBytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// 16 bytes (the longest UserID value) that occur nowhere else.
const PIN: &[u8; 16] = b"Qz7#pin!wipe-me9";

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}
static UNWIPED: AtomicUsize = AtomicUsize::new(0);

struct ScanningAllocator;

// SAFETY: every call is passed on to the system allocator with the caller's arguments; blocks
// are handed out zeroed (so every byte is initialised when `dealloc` reads it), and `dealloc`
// only reads the block it is handed, which the caller guarantees is live and `layout` long.
unsafe impl GlobalAlloc for ScanningAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: GlobalAlloc::alloc's contract, passed through.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let armed = ARMED.try_with(Cell::get).unwrap_or(false);
        if armed && layout.size() >= PIN.len() {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes until the call below.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(PIN.len()).any(|w| w == PIN) {
                UNWIPED.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: GlobalAlloc::dealloc's contract, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: ScanningAllocator = ScanningAllocator;

/// Blocks freed with the PIN still in them while `f` ran on this thread.
fn unwiped_during(f: impl FnOnce()) -> usize {
    let before = UNWIPED.load(Ordering::SeqCst);
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    UNWIPED.load(Ordering::SeqCst) - before
}

/// A chip that answers SELECT with an X25519-capable version, CreateSession with a session id,
/// and 9000 to everything else; it keeps nothing of what it is sent.
struct ScriptedChip;

impl ApduTransport for ScriptedChip {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        let answer: &[u8] = match command {
            [0x00, 0xA4, ..] => &[3, 1, 0, 0xFF, 0xFF, 1, 0, 0x90, 0x00],
            [0x80, 0x04, 0x00, 0x1B, ..] => &[0x41, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0x90, 0x00],
            _ => &[0x90, 0x00],
        };
        let mut out = pkcs11_se050::wipe::with_capacity(answer.len());
        out.extend_from_slice(answer);
        Ok(out)
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

#[test]
fn userid_commands_leave_no_copy_of_the_pin() {
    let mut chip = Se050::select(ScriptedChip).expect("the scripted chip selects");
    let user = ObjectId::new(0x7AFF_0001).unwrap();
    let leaked = unwiped_during(|| {
        chip.write_user_id(user, PIN, 10, &[]).unwrap();
        chip.open_session(user).unwrap();
        chip.verify_user_id(PIN).unwrap();
        // Inside the session: wrapped in ProcessSessionCmd.
        chip.write_user_id(user, PIN, 10, &[]).unwrap();
        chip.close_session().unwrap();
    });
    assert_eq!(leaked, 0, "blocks freed with the PIN still in them");
}

#[test]
fn scp03_wrapping_leaves_no_copy_of_the_pin() {
    let keys = SessionKeys::derive(&[1; 16], &[2; 16], &[3; 16]);
    let mut channel = SecureMessaging::new(keys, [0; 16]);
    let mut plain = vec![0x80, 0x04, 0x00, 0x2C, 18, 0x41, 16];
    plain.extend_from_slice(PIN);
    let plain = zeroize::Zeroizing::new(plain);
    let leaked = unwiped_during(|| {
        let wrapped = channel.wrap_command(&plain).unwrap();
        assert!(!wrapped.windows(16).any(|w| w == PIN), "sent in clear");
    });
    assert_eq!(leaked, 0, "blocks freed with the PIN still in them");
}

#[test]
fn the_scan_sees_an_unwiped_copy() {
    // The allocator's check itself: a plain Vec holding the PIN is counted when freed.
    let leaked = unwiped_during(|| drop(PIN.to_vec()));
    assert_eq!(leaked, 1);
}
