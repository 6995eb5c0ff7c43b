//! The device's static key seen from outside: its health (for `show`).

use super::Device;
use crate::key::health::KeyHealth;

impl Device {
    /// The static key's health, if it is a key that reports one (a token key).
    pub fn key_health(&self) -> Option<KeyHealth> {
        self.shared.identity.key().health()
    }
}
