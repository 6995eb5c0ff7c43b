//! The SE050's answer to reset (UM11225 §3.2, the I2C variant, not ISO 7816-3).
//!
//! ```text
//! PVER(1) VID(5) | DLLP len(1): BWT(2) IFSC(2) | PLID(1) PLP len(1): MCF(2) CONFIG(1)
//! MPOT(1) RFU(3) SEGT(2) WUT(2) | HB len(1) historical bytes
//! ```
//! All multi-byte fields are big-endian.

use std::time::Duration;

/// The ATR read from a real SE050 (JCOP4, IoT applet 3.x): BWT 1000 ms, IFSC 254,
/// max clock 1000 kHz, MPOT 1 ms, SEGT 100 us, historical bytes "JCOP4 ATPO".
pub const REAL_SE050_ATR: [u8; 35] = [
    0x00, // protocol version
    0xA0, 0x00, 0x00, 0x03, 0x96, // vendor id (NXP)
    0x04, 0x03, 0xE8, 0x00, 0xFE, // DLLP: BWT 1000 ms, IFSC 254
    0x02, // physical layer: I2C
    0x0B, 0x03, 0xE8, 0x08, 0x01, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00, 0x00, // PLP
    0x0A, b'J', b'C', b'O', b'P', b'4', b' ', b'A', b'T', b'P', b'O', // historical bytes
];

/// A parsed ATR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atr {
    pub protocol_version: u8,
    pub vendor_id: [u8; 5],
    /// Block waiting time: how long the SE may take before answering or asking for WTX.
    pub bwt: Duration,
    /// Largest INF the SE accepts.
    pub ifsc: u16,
    /// Physical layer id (2 = I2C).
    pub physical_layer: u8,
    /// Maximum I2C clock frequency in kHz.
    pub max_clock_khz: u16,
    pub config: u8,
    /// Minimum polling time: the host must not poll faster than this.
    pub mpot: Duration,
    /// SE guard time.
    pub segt: Duration,
    /// Wake-up time.
    pub wut: Duration,
    pub historical_bytes: Vec<u8>,
}

impl Atr {
    pub fn parse(bytes: &[u8]) -> Result<Atr, String> {
        let mut rest = bytes;
        let mut take = |n: usize, what: &str| -> Result<&[u8], String> {
            if rest.len() < n {
                return Err(format!(
                    "ATR of {} bytes ends inside {what} (needs {n} more bytes, has {})",
                    bytes.len(),
                    rest.len()
                ));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let be16 = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);

        let protocol_version = take(1, "the protocol version")?[0];
        let vendor_id: [u8; 5] = take(5, "the vendor id")?.try_into().expect("5 bytes");
        let dllp_len = take(1, "the DLLP length")?[0] as usize;
        if dllp_len < 4 {
            return Err(format!(
                "ATR data-link parameters are {dllp_len} bytes, need 4 (BWT, IFSC)"
            ));
        }
        let dllp = take(dllp_len, "the data-link parameters")?;
        let physical_layer = take(1, "the physical layer id")?[0];
        let plp_len = take(1, "the PLP length")?[0] as usize;
        if plp_len < 11 {
            return Err(format!(
                "ATR physical-layer parameters are {plp_len} bytes, need 11"
            ));
        }
        let plp = take(plp_len, "the physical-layer parameters")?;
        let hb_len = take(1, "the historical bytes length")?[0] as usize;
        let historical_bytes = take(hb_len, "the historical bytes")?.to_vec();

        let ifsc = be16(dllp, 2);
        if ifsc == 0 {
            return Err("ATR announces IFSC 0".into());
        }
        Ok(Atr {
            protocol_version,
            vendor_id,
            bwt: Duration::from_millis(be16(dllp, 0).into()),
            ifsc,
            physical_layer,
            max_clock_khz: be16(plp, 0),
            config: plp[2],
            mpot: Duration::from_millis(plp[3].into()),
            segt: Duration::from_micros(be16(plp, 7).into()),
            wut: Duration::from_micros(be16(plp, 9).into()),
            historical_bytes,
        })
    }

    /// The historical bytes as text when they are printable ("JCOP4 ATPO").
    pub fn historical_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.historical_bytes)
            .ok()
            .filter(|s| s.chars().all(|c| c.is_ascii_graphic() || c == ' '))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_device_atr() {
        let atr = Atr::parse(&REAL_SE050_ATR).unwrap();
        assert_eq!(atr.protocol_version, 0);
        assert_eq!(atr.vendor_id, [0xA0, 0x00, 0x00, 0x03, 0x96]);
        assert_eq!(atr.bwt, Duration::from_millis(1000));
        assert_eq!(atr.ifsc, 254);
        assert_eq!(atr.physical_layer, 2);
        assert_eq!(atr.max_clock_khz, 1000);
        assert_eq!(atr.mpot, Duration::from_millis(1));
        assert_eq!(atr.segt, Duration::from_micros(0x64));
        assert_eq!(atr.wut, Duration::ZERO);
        assert_eq!(atr.historical_text(), Some("JCOP4 ATPO"));
    }

    #[test]
    fn every_truncation_is_an_error_naming_the_field() {
        for n in 0..REAL_SE050_ATR.len() {
            let err = Atr::parse(&REAL_SE050_ATR[..n]).unwrap_err();
            assert!(err.contains("ends inside"), "{n}: {err}");
        }
    }

    #[test]
    fn short_parameter_blocks_rejected() {
        let mut atr = REAL_SE050_ATR.to_vec();
        atr[6] = 2;
        assert!(Atr::parse(&atr).unwrap_err().contains("need 4"));
        let mut atr = REAL_SE050_ATR.to_vec();
        atr[12] = 5;
        assert!(Atr::parse(&atr).unwrap_err().contains("need 11"));
    }
}
