//! Where long-lived secrets live: memory locked against swap and left out of core dumps.
//!
//! A Raspberry Pi swaps to its SD card, where a swapped-out preshared key outlives the process;
//! a core dump writes every secret of the process to disk. So the daemon makes itself
//! non-dumpable with a core limit of 0 at start (`harden_process`), and keeps the secrets it holds
//! for a long time (preshared keys, the per-peer static-static DH) in `Secret32`: 32-byte slots in
//! pages that are `mlock`ed and marked `MADV_DONTDUMP`, wiped when the slot is dropped.
//!
//! This is the only file with `unsafe` outside the C ABI, TUN and socket edges: three system
//! calls and the raw slots of the page arena, each with its SAFETY comment.

use std::io;
use std::ptr::NonNull;

use parking_lot::Mutex;
use zeroize::Zeroize;

const PAGE: usize = 4096;
const SLOT: usize = 32;

/// Not dumpable (no core file, no ptrace by other users, /proc/PID/mem closed to them) and a core
/// size limit of 0, as the first thing the daemon does.
pub fn harden_process() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_DUMPABLE takes plain integers and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the rlimit we pass by reference for the duration of the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One page of slots, mapped on its own so that locking and the dump flag cover exactly it.
struct Page {
    base: NonNull<u8>,
    used: u128,
    /// Whether mlock succeeded (it can fail without CAP_IPC_LOCK past RLIMIT_MEMLOCK).
    locked: bool,
}

// SAFETY: a Page is only touched under the arena's mutex; its memory belongs to the arena.
unsafe impl Send for Page {}

struct Arena {
    pages: Vec<Page>,
}

/// 32-byte slots (`Secret32`).
static ARENA: Mutex<Arena> = Mutex::new(Arena { pages: Vec::new() });
/// Larger slots (`Locked<T>`: ring's AEAD keys).
static BIG_ARENA: Mutex<Arena> = Mutex::new(Arena { pages: Vec::new() });
/// The slot size of `BIG_ARENA`: four per page.
const BIG_SLOT: usize = 1024;

/// A free slot of `slot` bytes (a power of two, at most a page) from `arena`, mapping a page
/// when all are full. Slots are aligned to their size.
fn allocate(arena: &Mutex<Arena>, slot: usize) -> NonNull<u8> {
    let per_page = PAGE / slot;
    let full = if per_page >= 128 {
        u128::MAX
    } else {
        (1u128 << per_page) - 1
    };
    let mut arena = arena.lock();
    let page = match arena.pages.iter().position(|p| p.used != full) {
        Some(i) => i,
        None => {
            let page = new_page().expect("mapping a page for secrets");
            arena.pages.push(page);
            arena.pages.len() - 1
        }
    };
    let p = &mut arena.pages[page];
    let index = (!p.used).trailing_zeros() as usize;
    p.used |= 1 << index;
    // SAFETY: index < per_page, so the slot lies inside the page.
    unsafe { NonNull::new_unchecked(p.base.as_ptr().add(index * slot)) }
}

/// Give the slot at `addr` back to `arena` (its bytes already wiped by the caller).
fn release(arena: &Mutex<Arena>, slot: usize, addr: NonNull<u8>) {
    let addr = addr.as_ptr() as usize;
    let mut arena = arena.lock();
    for p in arena.pages.iter_mut() {
        let base = p.base.as_ptr() as usize;
        if (base..base + PAGE).contains(&addr) {
            p.used &= !(1 << ((addr - base) / slot));
            return;
        }
    }
}

/// Overwrite the stack below the caller's frame: the functions it called (ring's key setup,
/// which takes the key by value) left copies of a secret there, and nothing else would
/// overwrite them until the thread happens to call that deep again.
#[inline(never)]
pub fn scrub_stack() {
    let mut below = [0u8; 16 * 1024];
    below.zeroize();
    std::hint::black_box(&below);
}

/// How far below its caller's frame `after_keyed_call` scrubs: deeper than ring's ChaCha20-
/// Poly1305 seal/open ever go (keypair/stack_tests.rs checks it in the profile it runs in; a
/// debug build's frames are much larger).
const KEYED_CALL_DEPTH: usize = if cfg!(debug_assertions) {
    12 * 1024
} else {
    4 * 1024
};

/// Run `call`, which uses a long-lived key, then overwrite the stack it used. ring's
/// ChaCha20-Poly1305 copies the key into a struct on the stack for its assembly on every seal
/// and open, and leaves it there: on a daemon's long-lived thread the last session's transport
/// keys outlived the session (and its removed peer) until some later call went as deep.
#[inline(never)]
pub fn after_keyed_call<R>(call: impl FnOnce() -> R) -> R {
    let result = run_uninlined(call);
    scrub_below_keyed_call();
    result
}

#[inline(never)]
fn run_uninlined<R>(call: impl FnOnce() -> R) -> R {
    call()
}

/// Runs after every seal and open, so it must be cheap: `zeroize` writes byte by byte with
/// volatile stores (about 600 ns for 4 KiB, which made sealing a 1420-byte packet 80% dearer),
/// while initialising the array is one memset (about 40 ns). `black_box(&mut below)` hands the
/// zeroed bytes to code the optimizer cannot see into, so the memset cannot be dropped as a
/// dead store; the test in keypair/stack_tests.rs, run in release by the suite, checks that
/// the key's copies are gone.
#[inline(never)]
fn scrub_below_keyed_call() {
    let mut below = [0u8; KEYED_CALL_DEPTH];
    std::hint::black_box(&mut below);
}

/// A value holding secrets (ring's `LessSafeKey`, whose key types do not zeroize on drop) in
/// locked, non-dumpable memory: dropped in place, then its bytes overwritten with zeros.
///
/// Sound only for a `T` whose secrets are inline, with no heap allocation of its own (which
/// would be freed unwiped): checked for ring 0.17.14's `aead::LessSafeKey` (a `KeyInner` enum
/// of AES-GCM and ChaCha20-Poly1305 keys held by value; the ChaCha20 key is `[u32; 8]`, the key
/// bytes in little-endian words) and the `&'static Algorithm` beside it.
pub struct Locked<T> {
    value: NonNull<T>,
}

// SAFETY: the slot is owned by this value alone, as a Box's allocation would be.
unsafe impl<T: Send> Send for Locked<T> {}
// SAFETY: shared access only hands out `&T`.
unsafe impl<T: Sync> Sync for Locked<T> {}

impl<T> Locked<T> {
    /// `make()`'s value moved into a locked slot; the stack it was built on is scrubbed.
    pub fn new(make: impl FnOnce() -> T) -> Locked<T> {
        const { assert!(std::mem::size_of::<T>() <= BIG_SLOT && std::mem::align_of::<T>() <= BIG_SLOT) };
        let value: NonNull<T> = allocate(&BIG_ARENA, BIG_SLOT).cast();
        // SAFETY: the slot is ours, aligned for T (BIG_SLOT-aligned) and large enough for it.
        unsafe { value.as_ptr().write(make()) };
        scrub_stack();
        Locked { value }
    }

    /// Whether this value's page is locked against swap.
    pub fn is_locked(&self) -> bool {
        page_is_locked(&BIG_ARENA, self.value.as_ptr() as usize)
    }
}

impl<T> std::ops::Deref for Locked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot holds an initialised T until drop.
        unsafe { self.value.as_ref() }
    }
}

impl<T> Drop for Locked<T> {
    fn drop(&mut self) {
        // SAFETY: the slot holds an initialised T, dropped once here and never used again.
        unsafe { std::ptr::drop_in_place(self.value.as_ptr()) };
        // SAFETY: the slot is BIG_SLOT bytes of our own memory; zeroize writes volatile zeros.
        unsafe { std::slice::from_raw_parts_mut(self.value.as_ptr().cast::<u8>(), BIG_SLOT) }
            .zeroize();
        release(&BIG_ARENA, BIG_SLOT, self.value.cast());
    }
}

fn page_is_locked(arena: &Mutex<Arena>, addr: usize) -> bool {
    arena.lock().pages.iter().any(|p| {
        p.locked && (p.base.as_ptr() as usize..p.base.as_ptr() as usize + PAGE).contains(&addr)
    })
}

fn new_page() -> io::Result<Page> {
    // SAFETY: an anonymous private mapping of one page; we check the result.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: p is the page just mapped, PAGE bytes long.
    let locked = unsafe { libc::mlock(p, PAGE) } == 0;
    if !locked {
        log::warn!(
            "mlock of a secret page failed ({}): secrets may be swapped out",
            io::Error::last_os_error()
        );
    }
    // SAFETY: as above; MADV_DONTDUMP only changes what a core dump includes.
    if unsafe { libc::madvise(p, PAGE, libc::MADV_DONTDUMP) } != 0 {
        log::warn!(
            "MADV_DONTDUMP on a secret page failed: {}",
            io::Error::last_os_error()
        );
    }
    Ok(Page {
        base: NonNull::new(p.cast()).expect("mmap returned a non-null page"),
        used: 0,
        locked,
    })
}

/// A 32-byte secret in locked, non-dumpable memory, wiped when dropped.
pub struct Secret32 {
    slot: NonNull<[u8; 32]>,
}

// SAFETY: the slot is owned by this value alone (the arena hands each slot out once).
unsafe impl Send for Secret32 {}
// SAFETY: shared access only reads through `&self`.
unsafe impl Sync for Secret32 {}

impl Secret32 {
    /// A slot holding `value`; the caller should wipe its own copy.
    pub fn new(value: &[u8; 32]) -> Secret32 {
        let slot: NonNull<[u8; 32]> = allocate(&ARENA, SLOT).cast();
        // SAFETY: the slot is ours alone from now on; writing 32 bytes stays inside it.
        unsafe { slot.as_ptr().write(*value) };
        Secret32 { slot }
    }

    pub fn expose(&self) -> &[u8; 32] {
        // SAFETY: the slot stays mapped and ours until drop.
        unsafe { self.slot.as_ref() }
    }

    /// Whether this secret's page is locked against swap.
    pub fn is_locked(&self) -> bool {
        page_is_locked(&ARENA, self.slot.as_ptr() as usize)
    }
}

impl Clone for Secret32 {
    fn clone(&self) -> Secret32 {
        Secret32::new(self.expose())
    }
}

impl Drop for Secret32 {
    fn drop(&mut self) {
        // SAFETY: the slot is ours until we return it below.
        unsafe { self.slot.as_mut() }.zeroize();
        release(&ARENA, SLOT, self.slot.cast());
    }
}

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The VmFlags line of the /proc/self/smaps mapping that contains `addr`.
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((a, b)) = range.split_once('-') {
                    if let (Ok(a), Ok(b)) =
                        (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                    {
                        inside = (a..b).contains(&addr);
                        continue;
                    }
                }
            }
            if inside && line.starts_with("VmFlags:") {
                return line.to_string();
            }
        }
        panic!("no mapping for {addr:#x}");
    }

    #[test]
    fn a_secret_lives_in_a_locked_page_left_out_of_core_dumps() {
        crate::emulation::require_native_kernel("VmFlags of madvise(MADV_DONTDUMP) in smaps");
        let s = Secret32::new(&[7; 32]);
        assert_eq!(s.expose(), &[7; 32]);
        let flags = vm_flags(s.expose().as_ptr() as usize);
        assert!(
            flags.split_whitespace().any(|f| f == "dd"),
            "not MADV_DONTDUMP: {flags}"
        );
        // As root (the daemon and these tests), mlock cannot fail for lack of a limit.
        assert!(s.is_locked());
        assert!(
            flags.split_whitespace().any(|f| f == "lo"),
            "not mlocked: {flags}"
        );
    }

    #[test]
    fn a_locked_value_is_dropped_then_wiped_in_a_locked_page() {
        struct Noisy(&'static std::sync::atomic::AtomicBool, [u8; 600]);
        impl Drop for Noisy {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        static DROPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        crate::emulation::require_native_kernel("VmFlags of madvise(MADV_DONTDUMP) in smaps");
        let v = Locked::new(|| Noisy(&DROPPED, [0x3c; 600]));
        assert_eq!(v.1, [0x3c; 600]);
        assert!(v.is_locked());
        let flags = vm_flags(v.1.as_ptr() as usize);
        assert!(flags.split_whitespace().any(|f| f == "dd"), "{flags}");
        let addr = v.1.as_ptr();
        drop(v);
        assert!(
            DROPPED.load(std::sync::atomic::Ordering::SeqCst),
            "its Drop ran"
        );
        // SAFETY (test): the page stays mapped for the process's life; the slot is free.
        let after = unsafe { std::slice::from_raw_parts(addr, 600) };
        assert!(after.iter().all(|b| *b == 0), "wiped after drop");
    }

    #[test]
    fn a_ring_key_fits_a_slot() {
        // Locked::new checks this at compile time; this names the figure.
        assert!(std::mem::size_of::<ring::aead::LessSafeKey>() <= BIG_SLOT);
    }

    #[test]
    fn a_dropped_secret_is_wiped_and_its_slot_reused() {
        let a = Secret32::new(&[0xa5; 32]);
        let addr = a.slot.as_ptr();
        drop(a);
        // SAFETY (test): the page stays mapped for the process's life; the slot is free.
        let after = unsafe { addr.read() };
        assert_eq!(after, [0; 32], "wiped on drop");
        let many: Vec<Secret32> = (0..200).map(|i| Secret32::new(&[i as u8; 32])).collect();
        for (i, s) in many.iter().enumerate() {
            assert_eq!(s.expose(), &[i as u8; 32]);
        }
    }
}
