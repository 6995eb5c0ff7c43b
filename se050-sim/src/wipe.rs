//! The chip's buffers that may hold a secret (a shared secret on its way out, a key on its way
//! in): wiped when dropped, and grown only by moving into a new buffer of our own so that no
//! unwiped copy is handed back to the allocator. The virtual chip lives in the host's process.

use zeroize::{Zeroize, Zeroizing};

/// Bytes wiped when dropped.
pub type SecretBytes = Zeroizing<Vec<u8>>;

/// An empty buffer with room for `capacity` bytes.
pub fn with_capacity(capacity: usize) -> SecretBytes {
    Zeroizing::new(Vec::with_capacity(capacity))
}

/// Appends `more`; when `buf` must grow, it moves to a larger buffer and the old one is wiped.
pub fn extend(buf: &mut SecretBytes, more: &[u8]) {
    let needed = buf.len() + more.len();
    if needed > buf.capacity() {
        let mut larger = with_capacity(needed.max(2 * buf.capacity()));
        larger.extend_from_slice(buf);
        std::mem::swap(buf, &mut larger);
        // `larger` now holds the old allocation: dropping it wipes it.
    }
    buf.extend_from_slice(more);
}

/// Wipes `buf` and empties it; its allocation stays for reuse.
pub fn clear(buf: &mut SecretBytes) {
    buf.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_moves_into_our_own_buffer_and_keeps_the_order() {
        let mut buf = with_capacity(4);
        extend(&mut buf, &[1, 2, 3]);
        let first = buf.as_ptr();
        extend(&mut buf, &[4]);
        assert_eq!(buf.as_ptr(), first, "fitted: must not move");
        extend(&mut buf, &[5, 6, 7, 8, 9]);
        assert!(buf.capacity() >= 9);
        assert_eq!(*buf, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        clear(&mut buf);
        assert!(buf.is_empty());
    }
}
