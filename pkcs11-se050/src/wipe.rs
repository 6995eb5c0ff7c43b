//! Buffers that may carry a secret on its way up from the chip.
//!
//! An ECDH result crosses the T=1 frames, the link's receive buffers and the response APDU
//! before the applet layer takes it out. Each of those buffers is a [`SecretBytes`], wiped when
//! dropped; and where one grows, [`extend`] moves it to a larger allocation itself, so that the
//! old one is wiped rather than handed back to the allocator as `Vec`'s own growth would.

use zeroize::{Zeroize, Zeroizing};

/// Bytes wiped when dropped.
pub type SecretBytes = Zeroizing<Vec<u8>>;

/// An empty buffer with room for `capacity` bytes.
pub fn with_capacity(capacity: usize) -> SecretBytes {
    Zeroizing::new(Vec::with_capacity(capacity))
}

/// Appends `more` to `buf`, never leaving an unwiped copy of `buf` behind.
pub fn extend(buf: &mut SecretBytes, more: &[u8]) {
    let needed = buf.len() + more.len();
    if needed > buf.capacity() {
        let mut bigger = with_capacity(needed.max(buf.capacity() * 2));
        bigger.extend_from_slice(buf);
        // The old allocation is now in `bigger`, and wiped when it goes.
        std::mem::swap(buf, &mut bigger);
    }
    buf.extend_from_slice(more);
}

/// Wipes `buf` and leaves it empty, keeping its allocation for reuse.
pub fn clear(buf: &mut SecretBytes) {
    buf.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_keeps_the_bytes_in_order_across_growth() {
        let mut buf = with_capacity(2);
        for chunk in (0u8..200).collect::<Vec<_>>().chunks(7) {
            let before = buf.capacity();
            extend(&mut buf, chunk);
            assert!(buf.capacity() >= before);
        }
        assert_eq!(*buf, (0u8..200).collect::<Vec<_>>());
    }

    #[test]
    fn growth_happens_in_our_allocation_not_in_vec() {
        // Within capacity, extend must not move the buffer; past it, it must move to a
        // buffer we allocated (so the old one was wiped, not freed as is).
        let mut buf = with_capacity(64);
        extend(&mut buf, &[1; 10]);
        let at = buf.as_ptr();
        extend(&mut buf, &[2; 54]);
        assert_eq!(buf.as_ptr(), at, "moved although it fitted");
        extend(&mut buf, &[3; 1]);
        assert!(buf.capacity() >= 128, "grew by less than doubling");
    }

    #[test]
    fn clear_wipes_and_keeps_the_allocation() {
        let mut buf = with_capacity(16);
        extend(&mut buf, &[0xA5; 16]);
        let ptr = buf.as_ptr();
        clear(&mut buf);
        assert!(buf.is_empty());
        assert_eq!(buf.as_ptr(), ptr);
    }
}
