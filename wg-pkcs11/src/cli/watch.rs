//! Handshakes at info level, for the journal: the main loop looks at each peer's latest
//! handshake once a second and logs the ones that are new. (The device's handshake worker logs
//! only at debug: a line per handshake there would come from the data path's hot side.)

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use super::device::{short_key, RunningDevice};

const EVERY: Duration = Duration::from_secs(1);

pub struct HandshakeLog {
    ifname: String,
    seen: HashMap<[u8; 32], Option<SystemTime>>,
    next: Instant,
}

impl HandshakeLog {
    pub fn new(ifname: &str) -> HandshakeLog {
        HandshakeLog {
            ifname: ifname.to_string(),
            seen: HashMap::new(),
            next: Instant::now(),
        }
    }

    pub fn tick(&mut self, device: &RunningDevice) {
        if Instant::now() < self.next {
            return;
        }
        self.next = Instant::now() + EVERY;
        let current = device.handshakes();
        for (key, at) in &current {
            let before = self.seen.get(key).copied().flatten();
            if at.is_some() && *at != before {
                log::info!(
                    "{}: peer {}: handshake completed",
                    self.ifname,
                    short_key(key)
                );
            }
        }
        self.seen = current.into_iter().collect();
    }
}
