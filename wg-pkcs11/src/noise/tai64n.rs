//! TAI64N timestamps: the initiator's proof that an initiation is new.

use std::time::{SystemTime, UNIX_EPOCH};

/// A 12-byte TAI64N label (big-endian seconds since 1970 + 2^62 + 10, then nanoseconds), compared
/// bytewise: a responder accepts only a timestamp strictly greater than the last one it accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub [u8; 12]);

/// 1970 in TAI64 as the kernel and wireguard-go write it (2^62 + 10).
const TAI64_UNIX_EPOCH: u64 = 0x4000_0000_0000_000a;

/// Nanoseconds are rounded down to a multiple of this (2^24 ns, about 16.8 ms), as the kernel
/// does, so the timestamp does not leak precise timing; it still allows ~60 initiations a second.
const NANOS_GRANULARITY: u32 = 1 << 24;

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// The timestamp of `t` (rounded as above).
    pub fn from_system_time(t: SystemTime) -> Timestamp {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let label = tai64::Tai64N(
            tai64::Tai64(TAI64_UNIX_EPOCH + since.as_secs()),
            since.subsec_nanos() - since.subsec_nanos() % NANOS_GRANULARITY,
        );
        Timestamp(label.to_bytes())
    }

    /// The smallest timestamp greater than this one (one rounding step later): an initiator
    /// uses `max(now, last_sent.successor())`, so its initiations stay strictly increasing even
    /// when the wall clock stalls or steps back.
    pub fn successor(&self) -> Timestamp {
        let secs = u64::from_be_bytes(self.0[..8].try_into().expect("8 bytes"));
        let nanos = u32::from_be_bytes(self.0[8..].try_into().expect("4 bytes"));
        let (secs, nanos) = match nanos - nanos % NANOS_GRANULARITY + NANOS_GRANULARITY {
            n if n >= 1_000_000_000 => (secs + 1, 0),
            n => (secs, n),
        };
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&secs.to_be_bytes());
        out[8..].copy_from_slice(&nanos.to_be_bytes());
        Timestamp(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn later_times_compare_greater() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = Timestamp::from_system_time(t);
        let b = Timestamp::from_system_time(t + Duration::from_millis(20));
        let c = Timestamp::from_system_time(t + Duration::from_secs(1));
        assert!(a < b && b < c);
        // Within the rounding granularity two timestamps are equal (and the second one refused).
        assert_eq!(a, Timestamp::from_system_time(t + Duration::from_millis(1)));
    }

    #[test]
    fn successor_is_greater_and_valid() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_nanos(999_000_000);
        let a = Timestamp::from_system_time(t);
        let b = a.successor();
        assert!(b > a);
        assert_eq!(&b.0[8..], &[0, 0, 0, 0], "carries into the seconds");
        assert!(b.successor() > b);
    }

    #[test]
    fn layout_is_tai64n() {
        let a = Timestamp::from_system_time(UNIX_EPOCH + Duration::from_secs(1));
        // 2^62 + 10 + 1 seconds, zero nanoseconds.
        assert_eq!(&a.0[..8], &(0x4000_0000_0000_000bu64).to_be_bytes());
        assert_eq!(&a.0[8..], &[0, 0, 0, 0]);
    }
}
