//! Per-source rate limit for handshake messages under load, as
//! wireguard-go's ratelimiter: a source that answered our cookie (valid mac2,
//! so it owns its address) still gets at most 20 handshake messages per
//! second into the worker's queue (burst 5), so one busy or hostile address
//! cannot take the token from everyone else. Owned by the UDP thread alone:
//! no lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const PACKETS_PER_SECOND: u64 = 20;
const BURST: u64 = 5;
const PACKET_COST: u64 = 1_000_000_000 / PACKETS_PER_SECOND;
const MAX_TOKENS: u64 = PACKET_COST * BURST;
/// Entries idle this long are forgotten.
const IDLE: Duration = Duration::from_secs(1);
/// At most this many sources are tracked; beyond it, new sources are refused
/// until the table is swept (a flood of spoofed sources fails mac2 anyway).
const MAX_ENTRIES: usize = 4096;

pub(crate) struct RateLimiter {
    /// Per source: nanosecond tokens and when they were last refilled.
    table: HashMap<IpAddr, (u64, Instant)>,
    last_sweep: Option<Instant>,
}

impl RateLimiter {
    pub(crate) fn new() -> RateLimiter {
        RateLimiter {
            table: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Whether a handshake message from `src` may be queued now.
    pub(crate) fn allow(&mut self, src: IpAddr, now: Instant) -> bool {
        if self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= IDLE)
        {
            self.table
                .retain(|_, (_, last)| now.saturating_duration_since(*last) < IDLE);
            self.last_sweep = Some(now);
        }
        // IPv6 sources are limited per /64, as wireguard-go does: one host owns at least that.
        let key = match src {
            IpAddr::V6(a) => {
                let mut o = a.octets();
                o[8..].fill(0);
                IpAddr::from(o)
            }
            v4 => v4,
        };
        let full = self.table.len() >= MAX_ENTRIES;
        match self.table.get_mut(&key) {
            Some((tokens, last)) => {
                let earned = now.saturating_duration_since(*last).as_nanos() as u64;
                *tokens = (*tokens + earned).min(MAX_TOKENS);
                *last = now;
                if *tokens >= PACKET_COST {
                    *tokens -= PACKET_COST;
                    true
                } else {
                    false
                }
            }
            None if full => false,
            None => {
                self.table.insert(key, (MAX_TOKENS - PACKET_COST, now));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_twenty_per_second_per_source() {
        let mut r = RateLimiter::new();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let allowed = (0..100).filter(|_| r.allow(a, t0)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(r.allow(b, t0), "another source has its own budget");
        assert!(!r.allow(a, t0 + Duration::from_millis(10)));
        assert!(
            r.allow(a, t0 + Duration::from_millis(60)),
            "one packet per 50 ms comes back"
        );
        // Over one second at most 20 more pass.
        let n = (1..=1000)
            .filter(|ms| r.allow(a, t0 + Duration::from_millis(60 + ms)))
            .count();
        assert!((19..=21).contains(&n), "{n}");
    }

    #[test]
    fn ipv6_sources_share_a_budget_per_64() {
        let mut r = RateLimiter::new();
        let t0 = Instant::now();
        let n = (0..100u16)
            .filter(|i| r.allow(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, *i]), t0))
            .count();
        assert_eq!(n, BURST as usize);
        assert!(r.allow("2001:db8:0:2::1".parse().unwrap(), t0));
    }
}
