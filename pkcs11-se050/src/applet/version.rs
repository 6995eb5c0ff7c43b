//! The IoT applet's version and feature bits (the 7 bytes SELECT and GetVersion return).

use super::protocol::CONFIG_DH_MONT;
use std::fmt;

/// Applet version, configuration (feature bits) and SecureBox version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppletVersion {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
    /// Feature bits (big-endian u16 on the wire); 0x0008 is DH_MONT (X25519).
    pub config: u16,
    pub securebox_major: u8,
    pub securebox_minor: u8,
}

impl AppletVersion {
    /// Reads the 7 bytes; `None` unless exactly 7.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let b: [u8; 7] = bytes.try_into().ok()?;
        Some(AppletVersion {
            major: b[0],
            minor: b[1],
            patch: b[2],
            config: u16::from_be_bytes([b[3], b[4]]),
            securebox_major: b[5],
            securebox_minor: b[6],
        })
    }

    pub fn to_bytes(self) -> [u8; 7] {
        let [c0, c1] = self.config.to_be_bytes();
        [
            self.major,
            self.minor,
            self.patch,
            c0,
            c1,
            self.securebox_major,
            self.securebox_minor,
        ]
    }

    /// Whether X25519 (Montgomery DH) is available: SE050C and SE050E have it, SE050A not.
    pub fn has_x25519(self) -> bool {
        self.config & CONFIG_DH_MONT != 0
    }
}

impl fmt::Display for AppletVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IoT applet {}.{}.{} (config 0x{:04X}, SecureBox {}.{})",
            self.major,
            self.minor,
            self.patch,
            self.config,
            self.securebox_major,
            self.securebox_minor
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seven_bytes_and_the_dh_mont_bit() {
        let v = AppletVersion::parse(&[3, 1, 0, 0x6F, 0xFF, 1, 0x0B]).unwrap();
        assert_eq!((v.major, v.minor, v.patch), (3, 1, 0));
        assert_eq!(v.config, 0x6FFF);
        assert!(v.has_x25519());
        assert_eq!(v.to_bytes(), [3, 1, 0, 0x6F, 0xFF, 1, 0x0B]);
        let a = AppletVersion {
            config: 0x6FF7,
            ..v
        };
        assert!(!a.has_x25519());
        assert!(AppletVersion::parse(&[3, 1, 0]).is_none());
        assert!(v.to_string().contains("3.1.0"));
    }
}
