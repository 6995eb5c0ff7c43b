//! Key health: what an admin of many devices needs to know about the key and its chip.
//!
//! A [`HealthRecorder`] sits in each token key and counts what the daemon saw since it started:
//! Diffie-Hellmans done on the chip, their latency (as the daemon sees it: one `C_DeriveKey`,
//! including the module's inter-process lock and the bus), errors and session reconnects.
//! [`TokenFacts`] are what the module says about its slot and token (read once when the key is
//! opened; the PIN flags again at each query, since a PIN can lock while the daemon runs).
//! [`KeyHealth`] is the snapshot `wg-pkcs11 show` prints, carried over UAPI as
//! `wg_pkcs11_*` device keys, which `wg` ignores.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cryptoki::context::Pkcs11;
use cryptoki::slot::Slot;
use parking_lot::Mutex;

use crate::uri::Pkcs11Uri;

/// Latency samples kept for the median and p99 (the most recent ones).
pub const LATENCY_WINDOW: usize = 1024;

/// Counters and latency samples of one token key, updated by the handshake worker.
#[derive(Default)]
pub struct HealthRecorder {
    ecdh: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
    /// Microseconds of the most recent successful operations, oldest first.
    latencies: Mutex<VecDeque<u64>>,
}

impl HealthRecorder {
    /// One Diffie-Hellman that the chip answered, and how long it took.
    pub fn ecdh_done(&self, took: Duration) {
        self.ecdh.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.latencies.lock();
        if samples.len() == LATENCY_WINDOW {
            samples.pop_front();
        }
        samples.push_back(took.as_micros() as u64);
    }

    /// A Diffie-Hellman the token refused or failed. This includes a low-order peer key that
    /// the module refuses (the SE050 module answers CKR_FUNCTION_FAILED for it).
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The session was lost and reopened.
    pub fn reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.ecdh.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.reconnects.load(Ordering::Relaxed),
        )
    }

    /// (last, median, p99) in microseconds; `None` before the first operation.
    pub fn latency(&self) -> Option<(u64, u64, u64)> {
        let samples = self.latencies.lock();
        let last = *samples.back()?;
        let mut sorted: Vec<u64> = samples.iter().copied().collect();
        drop(samples);
        sorted.sort_unstable();
        Some((last, percentile(&sorted, 50), percentile(&sorted, 99)))
    }
}

/// The nearest-rank percentile of sorted samples (non-empty).
fn percentile(sorted: &[u64], p: usize) -> u64 {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Where the key is: a hardware chip, or a virtual (simulated) one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChipKind {
    Hardware,
    Virtual,
}

impl ChipKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChipKind::Hardware => "hardware",
            ChipKind::Virtual => "virtual",
        }
    }

    /// Hardware only if the module sets CKF_HW_SLOT on the slot and nothing it says about the
    /// slot or token calls it virtual: a key is never reported as hardware on a guess.
    pub fn classify(hw_slot: bool, texts: &[&str]) -> ChipKind {
        let says_virtual = texts
            .iter()
            .any(|t| t.to_ascii_lowercase().contains("virtual"));
        if hw_slot && !says_virtual {
            ChipKind::Hardware
        } else {
            ChipKind::Virtual
        }
    }
}

/// What the module reports about the key's slot and token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFacts {
    pub chip: ChipKind,
    pub slot_description: String,
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
}

impl TokenFacts {
    /// C_GetSlotInfo and C_GetTokenInfo of the key's slot.
    pub fn read(context: &Pkcs11, slot: Slot) -> Result<TokenFacts, String> {
        let slot_info = context
            .get_slot_info(slot)
            .map_err(|e| format!("C_GetSlotInfo: {e}"))?;
        let token = context
            .get_token_info(slot)
            .map_err(|e| format!("C_GetTokenInfo: {e}"))?;
        let chip = ChipKind::classify(
            slot_info.hardware_slot(),
            &[
                slot_info.slot_description(),
                slot_info.manufacturer_id(),
                token.model(),
                token.manufacturer_id(),
            ],
        );
        Ok(TokenFacts {
            chip,
            slot_description: slot_info.slot_description().trim().to_string(),
            label: token.label().trim().to_string(),
            manufacturer: token.manufacturer_id().trim().to_string(),
            model: token.model().trim().to_string(),
            serial: token.serial_number().trim().to_string(),
        })
    }
}

/// The PIN state, from the token's flags (read at query time), where the daemon's PIN came from
/// (never the PIN), and whether logging in again was refused.
pub fn pin_state(
    context: &Pkcs11,
    slot: Slot,
    pin_origin: Option<&str>,
    refused: Option<&str>,
) -> String {
    let token = match context.get_token_info(slot) {
        Ok(token) => token,
        Err(e) => return format!("unknown (C_GetTokenInfo: {e})"),
    };
    if !token.login_required() {
        return match pin_origin {
            None => "no PIN (the token requires no login)".to_string(),
            Some(how) => format!("no PIN required by the token ({how} given, unused)"),
        };
    }
    let mut state = match (pin_origin, refused) {
        (Some(how), None) => format!("PIN required, logged in with the PIN from {how}"),
        (Some(how), Some(_)) => {
            format!("PIN required, the PIN from {how} REFUSED when logging in again")
        }
        (None, _) => "PIN required, none given".to_string(),
    };
    for (flag, what) in [
        (token.user_pin_locked(), "LOCKED"),
        (token.user_pin_final_try(), "one try left"),
        (token.user_pin_count_low(), "wrong PIN entered before"),
    ] {
        if flag {
            state.push_str("; ");
            state.push_str(what);
        }
    }
    state
}

/// A snapshot of a token key's health, as `show` prints it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyHealth {
    /// The key's URI, PIN left out.
    pub uri: String,
    /// `hardware` or `virtual`.
    pub chip: String,
    pub token_label: String,
    pub token_manufacturer: String,
    pub token_model: String,
    pub token_serial: String,
    /// Diffie-Hellmans the chip did for this daemon since it started (with this key).
    pub ecdh_count: u64,
    pub errors: u64,
    pub reconnects: u64,
    /// Microseconds: last, median, p99 (absent before the first operation).
    pub latency_last_us: Option<u64>,
    pub latency_median_us: Option<u64>,
    pub latency_p99_us: Option<u64>,
    pub pin: String,
}

/// The UAPI device keys a health snapshot travels in (`wg_pkcs11_` + name).
pub const UAPI_PREFIX: &str = "wg_pkcs11_";

impl KeyHealth {
    /// The snapshot as (name, value) pairs, in the order `show` prints them. A value never
    /// contains a newline (it would end the UAPI line).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("key_uri", self.uri.clone()),
            ("chip", self.chip.clone()),
            ("token_label", self.token_label.clone()),
            ("token_manufacturer", self.token_manufacturer.clone()),
            ("token_model", self.token_model.clone()),
            ("token_serial", self.token_serial.clone()),
            ("ecdh_count", self.ecdh_count.to_string()),
            ("errors", self.errors.to_string()),
            ("reconnects", self.reconnects.to_string()),
        ];
        for (name, value) in [
            ("latency_last_us", self.latency_last_us),
            ("latency_median_us", self.latency_median_us),
            ("latency_p99_us", self.latency_p99_us),
        ] {
            if let Some(v) = value {
                pairs.push((name, v.to_string()));
            }
        }
        pairs.push(("pin", self.pin.clone()));
        for (_, value) in &mut pairs {
            value.retain(|c| c != '\n' && c != '\r');
        }
        pairs
    }

    /// Back from the pairs (names without the prefix); `None` if the key fields are absent
    /// (a software key, or a daemon without health reporting).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<KeyHealth> {
        let mut health = KeyHealth::default();
        let mut any = false;
        for (name, value) in pairs {
            let number = || value.parse::<u64>().ok();
            any |= name == "key_uri";
            match name {
                "key_uri" => health.uri = value.to_string(),
                "chip" => health.chip = value.to_string(),
                "token_label" => health.token_label = value.to_string(),
                "token_manufacturer" => health.token_manufacturer = value.to_string(),
                "token_model" => health.token_model = value.to_string(),
                "token_serial" => health.token_serial = value.to_string(),
                "ecdh_count" => health.ecdh_count = number().unwrap_or_default(),
                "errors" => health.errors = number().unwrap_or_default(),
                "reconnects" => health.reconnects = number().unwrap_or_default(),
                "latency_last_us" => health.latency_last_us = number(),
                "latency_median_us" => health.latency_median_us = number(),
                "latency_p99_us" => health.latency_p99_us = number(),
                "pin" => health.pin = value.to_string(),
                _ => {}
            }
        }
        any.then_some(health)
    }
}

/// The snapshot of a token key: its URI (PIN left out), what the module said about the token,
/// the recorder's counts and latency, the PIN state now.
pub fn snapshot(
    uri: &Pkcs11Uri,
    context: &Pkcs11,
    slot: Slot,
    facts: &Result<TokenFacts, String>,
    recorder: &HealthRecorder,
    pin_origin: Option<&str>,
    refused: Option<&str>,
) -> KeyHealth {
    let mut shown = uri.clone();
    shown.pin_value = None;
    let (ecdh_count, errors, reconnects) = recorder.counts();
    let latency = recorder.latency();
    let (chip, token_label, token_manufacturer, token_model, token_serial) = match facts {
        Ok(f) => (
            f.chip.as_str().to_string(),
            f.label.clone(),
            f.manufacturer.clone(),
            f.model.clone(),
            f.serial.clone(),
        ),
        Err(e) => {
            let unknown = format!("unknown ({e})");
            (
                unknown.clone(),
                unknown.clone(),
                unknown.clone(),
                unknown.clone(),
                unknown,
            )
        }
    };
    KeyHealth {
        uri: shown.to_string(),
        chip,
        token_label,
        token_manufacturer,
        token_model,
        token_serial,
        ecdh_count,
        errors,
        reconnects,
        latency_last_us: latency.map(|l| l.0),
        latency_median_us: latency.map(|l| l.1),
        latency_p99_us: latency.map(|l| l.2),
        pin: pin_state(context, slot, pin_origin, refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_median_and_p99_over_the_window() {
        let recorder = HealthRecorder::default();
        assert_eq!(recorder.latency(), None);
        // 1..=100 ms in a shuffled order, then a last one of 7 ms.
        for i in (1..=100u64).rev() {
            recorder.ecdh_done(Duration::from_millis(i));
        }
        recorder.ecdh_done(Duration::from_millis(7));
        let (last, median, p99) = recorder.latency().unwrap();
        assert_eq!(last, 7_000);
        // 101 samples: nearest rank 51 is 50 ms (1..=100 plus a second 7).
        assert_eq!(median, 50_000);
        assert_eq!(p99, 99_000);
        assert_eq!(recorder.counts(), (101, 0, 0));
        recorder.error();
        recorder.reconnect();
        assert_eq!(recorder.counts(), (101, 1, 1));
    }

    #[test]
    fn the_window_keeps_the_most_recent_samples() {
        let recorder = HealthRecorder::default();
        for _ in 0..LATENCY_WINDOW {
            recorder.ecdh_done(Duration::from_secs(1));
        }
        for _ in 0..LATENCY_WINDOW {
            recorder.ecdh_done(Duration::from_millis(1));
        }
        assert_eq!(recorder.latency(), Some((1_000, 1_000, 1_000)));
        assert_eq!(recorder.counts().0, 2 * LATENCY_WINDOW as u64);
    }

    #[test]
    fn percentile_nearest_rank() {
        assert_eq!(percentile(&[5], 50), 5);
        assert_eq!(percentile(&[5], 99), 5);
        assert_eq!(percentile(&[1, 2], 50), 1);
        assert_eq!(percentile(&[1, 2], 99), 2);
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 50), 50);
        assert_eq!(percentile(&hundred, 99), 99);
    }

    #[test]
    fn hardware_only_with_the_flag_and_no_word_virtual() {
        assert_eq!(
            ChipKind::classify(true, &["NXP SE050 at /dev/i2c-1", "NXP"]),
            ChipKind::Hardware
        );
        assert_eq!(
            ChipKind::classify(false, &["NXP SE050", "NXP"]),
            ChipKind::Virtual
        );
        assert_eq!(
            ChipKind::classify(true, &["Virtual NXP SE050"]),
            ChipKind::Virtual
        );
        assert_eq!(
            ChipKind::classify(true, &["SE050", "VIRTUAL"]),
            ChipKind::Virtual
        );
    }

    #[test]
    fn pairs_round_trip_and_carry_no_newline() {
        let health = KeyHealth {
            uri: "pkcs11:object=a\nb".into(),
            chip: "virtual".into(),
            token_label: "SE050".into(),
            token_manufacturer: "NXP".into(),
            token_model: "SE050 3.1.0".into(),
            token_serial: "0102".into(),
            ecdh_count: 3,
            errors: 1,
            reconnects: 2,
            latency_last_us: Some(30_000),
            latency_median_us: Some(31_000),
            latency_p99_us: Some(40_000),
            pin: "no PIN (the token requires no login)".into(),
        };
        let pairs = health.to_pairs();
        assert!(pairs.iter().all(|(_, v)| !v.contains('\n')));
        let back = KeyHealth::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(back.uri, "pkcs11:object=ab");
        assert_eq!(
            KeyHealth {
                uri: back.uri.clone(),
                ..health
            },
            back
        );
        assert_eq!(KeyHealth::from_pairs([("chip", "virtual")]), None);
    }
}
