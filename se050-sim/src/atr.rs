//! The answer to reset the chip gives to S(GET ATR) and S(interface soft reset) (UM11225
//! section 3.2 "ATR", as read from a real SE050 and decoded field by field below).

/// The ATR of an SE050 (JCOP4). Bytes 7..9 are the BWT in milliseconds (big-endian); the
/// virtual chip puts its configured BWT there.
pub const SE050_ATR: [u8; 35] = [
    // Protocol version 00.
    0x00, // Vendor id: NXP's registered application provider id A0 00 00 03 96.
    0xA0, 0x00, 0x00, 0x03, 0x96,
    // Data link layer parameters (length 04): BWT 0x03E8 = 1000 ms, IFSC 0x00FE = 254.
    0x04, 0x03, 0xE8, 0x00, 0xFE, // Physical layer id 02: I2C.
    0x02,
    // Physical layer parameters (length 0B): configuration 03, power saving timeout,
    // max I2C clock 0x03E8 = 1000 kHz, configuration 08, MPOT 01 ms, reserved, SEGT
    // 0x0064 us, WUT 0x0000.
    0x0B, 0x03, 0xE8, 0x08, 0x01, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00, 0x00,
    // Historical bytes (length 0A): "JCOP4 ATPO".
    0x0A, b'J', b'C', b'O', b'P', b'4', b' ', b'A', b'T', b'P', b'O',
];

/// Where the BWT sits in [`SE050_ATR`].
pub const BWT_OFFSET: usize = 7;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lengths_add_up_and_bwt_is_where_the_link_writes_it() {
        let dllp_len = usize::from(SE050_ATR[6]);
        let plp_len = usize::from(SE050_ATR[6 + 1 + dllp_len + 1]);
        let hist_at = 6 + 1 + dllp_len + 1 + 1 + plp_len;
        assert_eq!(
            usize::from(SE050_ATR[hist_at]) + hist_at + 1,
            SE050_ATR.len()
        );
        assert_eq!(
            u16::from_be_bytes([SE050_ATR[BWT_OFFSET], SE050_ATR[BWT_OFFSET + 1]]),
            1000
        );
        assert_eq!(&SE050_ATR[hist_at + 1..], b"JCOP4 ATPO");
    }
}
