//! CRC-16/X-25 (reflected polynomial 0x8408, init 0xFFFF, xorout 0xFFFF) as
//! UM11225 uses it over NAD..INF; the two CRC bytes go on the wire LSB first.

use crc::{Crc, CRC_16_IBM_SDLC};

const X25: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_SDLC);

/// The CRC of `data`.
pub fn crc16(data: &[u8]) -> u16 {
    X25.checksum(data)
}

/// The CRC of `data` in wire order (LSB first).
pub fn crc_bytes(data: &[u8]) -> [u8; 2] {
    crc16(data).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value_of_123456789() {
        assert_eq!(crc16(b"123456789"), 0x906E);
    }

    #[test]
    fn sent_lsb_first() {
        // RESYNCH request: 5A C0 00 | FF FC
        assert_eq!(crc_bytes(&[0x5A, 0xC0, 0x00]), [0xFF, 0xFC]);
    }
}
