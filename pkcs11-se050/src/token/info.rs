//! What C_GetInfo, C_GetSlotInfo, C_GetTokenInfo and the mechanism queries report.

use super::error::{answer, Result};
use super::Token;
use crate::config::TransportConfig;
use pkcs11_sys::*;

/// The one slot.
pub const SLOT_ID: CK_SLOT_ID = 0;

pub const LIBRARY_MANUFACTURER: &str = "pkcs11-se050";
pub const LIBRARY_DESCRIPTION: &str = "SE050 X25519 P-256 Ed25519 PKCS#11";
pub const CRYPTOKI_VERSION: (u8, u8) = (3, 0);
/// What the virtual chip calls itself wherever a program or a person looks (token manufacturer
/// and model, slot manufacturer): its keys are in a file, not in hardware.
pub const VIRTUAL_MANUFACTURER: &str = "pkcs11-se050 virtual (software)";
pub const VIRTUAL_MODEL: &str = "VIRTUAL SE050";

pub fn library_version() -> (u8, u8) {
    let major = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0);
    let minor = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0);
    (major, minor)
}

#[derive(Debug, Clone)]
pub struct SlotInfo {
    pub description: String,
    pub manufacturer: String,
    pub flags: CK_FLAGS,
    pub hardware_version: (u8, u8),
    pub firmware_version: (u8, u8),
}

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub flags: CK_FLAGS,
    pub session_count: usize,
    pub rw_session_count: usize,
    pub hardware_version: (u8, u8),
    pub firmware_version: (u8, u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MechanismInfo {
    pub min_key_size: CK_ULONG,
    pub max_key_size: CK_ULONG,
    pub flags: CK_FLAGS,
}

/// The mechanisms, with what they can do: both run inside the chip.
pub const MECHANISMS: &[(CK_MECHANISM_TYPE, MechanismInfo)] = &[
    (
        CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
        MechanismInfo {
            min_key_size: 255,
            max_key_size: 255,
            flags: CKF_GENERATE_KEY_PAIR | CKF_HW,
        },
    ),
    (
        CKM_ECDH1_DERIVE,
        MechanismInfo {
            min_key_size: 255,
            max_key_size: 256,
            flags: CKF_DERIVE | CKF_HW | P256_FLAGS,
        },
    ),
    // P-256 and Ed25519 (issue 22: token/ec_keys.rs, token/sign.rs, token/ecdh_p256.rs).
    (
        CKM_EC_KEY_PAIR_GEN,
        MechanismInfo {
            min_key_size: 256,
            max_key_size: 256,
            flags: CKF_GENERATE_KEY_PAIR | CKF_HW | P256_FLAGS,
        },
    ),
    (
        CKM_ECDSA,
        MechanismInfo {
            min_key_size: 256,
            max_key_size: 256,
            flags: CKF_SIGN | CKF_HW | P256_FLAGS,
        },
    ),
    (
        CKM_ECDSA_SHA1,
        MechanismInfo {
            min_key_size: 256,
            max_key_size: 256,
            flags: CKF_SIGN | CKF_HW | P256_FLAGS,
        },
    ),
    (
        CKM_ECDSA_SHA256,
        MechanismInfo {
            min_key_size: 256,
            max_key_size: 256,
            flags: CKF_SIGN | CKF_HW | P256_FLAGS,
        },
    ),
    (
        CKM_EC_EDWARDS_KEY_PAIR_GEN,
        MechanismInfo {
            min_key_size: 255,
            max_key_size: 255,
            flags: CKF_GENERATE_KEY_PAIR | CKF_HW,
        },
    ),
    (
        CKM_EDDSA,
        MechanismInfo {
            min_key_size: 255,
            max_key_size: 255,
            flags: CKF_SIGN | CKF_HW,
        },
    ),
    // The vendor attestation mechanism (token/attest.rs).
    (
        super::attest::CKM_SE050_ATTEST,
        MechanismInfo {
            min_key_size: 255,
            max_key_size: 255,
            flags: CKF_DERIVE | CKF_HW,
        },
    ),
];

/// Prime-field curves, named by OID, points uncompressed (PKCS#11 2.40 2.3.3).
const P256_FLAGS: CK_FLAGS = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;

impl Token {
    pub fn slot_info(&self, slot: CK_SLOT_ID) -> Result<SlotInfo> {
        self.check_slot(slot)?;
        let (description, hw) = match &self.config.transport {
            TransportConfig::I2c { device, address } => (
                format!("NXP SE050 at {} {address:#04x}", device.display()),
                CKF_HW_SLOT,
            ),
            TransportConfig::Virtual { state, .. } => (
                format!("Virtual SE050 (software, keys in {})", state.display()),
                0,
            ),
        };
        let manufacturer = if self.config.is_virtual() {
            VIRTUAL_MANUFACTURER
        } else {
            "NXP"
        };
        let (major, minor, _) = self.identity.applet_version;
        Ok(SlotInfo {
            description,
            manufacturer: manufacturer.into(),
            flags: CKF_TOKEN_PRESENT | hw,
            hardware_version: (major, minor),
            firmware_version: (major, minor),
        })
    }

    pub fn token_info(&self, slot: CK_SLOT_ID) -> Result<TokenInfo> {
        self.check_slot(slot)?;
        let (major, minor, patch) = self.identity.applet_version;
        let (sessions, rw) = self.sessions.lock().count();
        let (pin_flags, chip_label) = self.pin_state()?;
        let (manufacturer, model) = if self.config.is_virtual() {
            (VIRTUAL_MANUFACTURER.to_string(), VIRTUAL_MODEL.to_string())
        } else {
            (
                "NXP".to_string(),
                truncate(&format!("SE050 {major}.{minor}.{patch}"), 16),
            )
        };
        Ok(TokenInfo {
            // The label C_InitToken stored on the chip; the configuration's names a token that
            // was never initialised.
            label: chip_label.unwrap_or_else(|| self.config.token_label.clone()),
            manufacturer,
            model,
            serial: serial_of(&self.identity.unique_id),
            // CKF_LOGIN_REQUIRED, CKF_USER_PIN_INITIALIZED and the PIN counters come from the
            // chip (token/pin.rs). A token without a user PIN needs no login; it is usable
            // before C_InitToken, so it always says it is initialised.
            flags: CKF_RNG | CKF_TOKEN_INITIALIZED | pin_flags,
            session_count: sessions,
            rw_session_count: rw,
            hardware_version: (major, minor),
            firmware_version: (major, minor),
        })
    }

    pub fn mechanism_info(
        &self,
        slot: CK_SLOT_ID,
        mechanism: CK_MECHANISM_TYPE,
    ) -> Result<MechanismInfo> {
        self.check_slot(slot)?;
        let virtual_chip = self.config.is_virtual();
        MECHANISMS
            .iter()
            .find(|(m, _)| *m == mechanism)
            .map(|(_, info)| MechanismInfo {
                // The virtual chip computes in software: no CKF_HW.
                flags: if virtual_chip {
                    info.flags & !CKF_HW
                } else {
                    info.flags
                },
                ..*info
            })
            .ok_or_else(|| {
                answer(
                    CKR_MECHANISM_INVALID,
                    format_args!("mechanism {mechanism:#x}"),
                )
            })
    }
}

/// The token serial: the last 8 bytes of the chip's unique id in hex (16 characters, the
/// field's size); those are the bytes that differ between chips of one batch.
pub fn serial_of(unique_id: &[u8]) -> String {
    let tail = &unique_id[unique_id.len().saturating_sub(8)..];
    tail.iter().map(|b| format!("{b:02X}")).collect()
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_is_sixteen_hex_digits_of_the_tail() {
        let uid: Vec<u8> = (0u8..18).collect();
        assert_eq!(serial_of(&uid), "0A0B0C0D0E0F1011");
        assert_eq!(serial_of(&[0xAB]), "AB");
        assert_eq!(truncate("SE050 ééé", 7), "SE050 ");
    }
}
