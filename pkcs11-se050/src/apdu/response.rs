//! Response APDUs: data followed by the status word SW1 SW2.

use std::fmt;

use crate::wipe::{self, SecretBytes};

/// The two status bytes ending every response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusWord(pub u16);

impl StatusWord {
    pub const OK: StatusWord = StatusWord(0x9000);
    pub const WRONG_LENGTH: StatusWord = StatusWord(0x6700);
    pub const SECURITY_STATUS: StatusWord = StatusWord(0x6982);
    /// ISO 7816-4 "authentication method blocked": a UserID whose attempts are used up.
    pub const AUTH_BLOCKED: StatusWord = StatusWord(0x6983);
    pub const DATA_INVALID: StatusWord = StatusWord(0x6984);
    pub const CONDITIONS_NOT_SATISFIED: StatusWord = StatusWord(0x6985);
    pub const NOT_ALLOWED_BY_POLICY: StatusWord = StatusWord(0x6986);
    pub const WRONG_DATA: StatusWord = StatusWord(0x6A80);
    pub const NOT_FOUND: StatusWord = StatusWord(0x6A82);
    pub const MEMORY_FULL: StatusWord = StatusWord(0x6A84);
    pub const WRONG_P1P2: StatusWord = StatusWord(0x6A86);
    pub const INS_NOT_SUPPORTED: StatusWord = StatusWord(0x6D00);
    pub const CLA_NOT_SUPPORTED: StatusWord = StatusWord(0x6E00);
    pub const NO_PRECISE_DIAGNOSIS: StatusWord = StatusWord(0x6F00);

    pub fn from_bytes(sw1: u8, sw2: u8) -> Self {
        StatusWord(u16::from_be_bytes([sw1, sw2]))
    }

    pub fn to_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    pub fn is_ok(self) -> bool {
        self == StatusWord::OK
    }
}

impl fmt::Display for StatusWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}", self.0)
    }
}

/// One response APDU. Its data may be a shared secret: wiped when dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseApdu {
    pub data: SecretBytes,
    pub sw: StatusWord,
}

/// A response shorter than its status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseTooShort {
    pub len: usize,
}

impl fmt::Display for ResponseTooShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response APDU of {} bytes has no status word", self.len)
    }
}

impl std::error::Error for ResponseTooShort {}

impl ResponseApdu {
    pub fn new(data: impl Into<SecretBytes>, sw: StatusWord) -> Self {
        ResponseApdu {
            data: data.into(),
            sw,
        }
    }

    /// A response carrying only a status word.
    pub fn status(sw: StatusWord) -> Self {
        ResponseApdu {
            data: SecretBytes::default(),
            sw,
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, ResponseTooShort> {
        if bytes.len() < 2 {
            return Err(ResponseTooShort { len: bytes.len() });
        }
        let (data, sw) = bytes.split_at(bytes.len() - 2);
        Ok(ResponseApdu {
            data: SecretBytes::new(data.to_vec()),
            sw: StatusWord::from_bytes(sw[0], sw[1]),
        })
    }

    pub fn encode(&self) -> SecretBytes {
        let mut out = wipe::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short_input() {
        let response = ResponseApdu::new(vec![0x41, 0x01, 0x01], StatusWord::OK);
        let bytes = response.encode();
        assert_eq!(*bytes, [0x41, 0x01, 0x01, 0x90, 0x00]);
        assert_eq!(ResponseApdu::parse(&bytes).unwrap(), response);
        let bare = ResponseApdu::parse(&[0x69, 0x85]).unwrap();
        assert!(bare.data.is_empty());
        assert_eq!(bare.sw, StatusWord::CONDITIONS_NOT_SATISFIED);
        assert_eq!(bare.sw.to_string(), "6985");
        assert_eq!(
            ResponseApdu::parse(&[0x90]),
            Err(ResponseTooShort { len: 1 })
        );
    }
}
