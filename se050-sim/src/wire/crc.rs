//! The frame check of T=1 over I2C: CRC-16/X-25 (ISO/IEC 13239 / ITU-T X.25: reflected
//! polynomial 0x1021, i.e. 0x8408 shifted right, initial value 0xFFFF, final XOR 0xFFFF) over
//! NAD, PCB, LEN and INF (UM11225 section 3.1.1.4).
//!
//! Byte order on the wire: the low byte of the CRC first. UM11225's examples and NXP's
//! middleware agree: `phNxpEseProto7816_ComputeCRC` (plug-and-trust, phNxpEseProto7816_3.c)
//! swaps the two bytes of the X-25 value under `T1oI2C_UM11225` and then sends the high byte of
//! the swapped value first; the GP 1.0 variant (`T1oI2C_GP1_0`) does not swap. So RESYNCH
//! request `5A C0 00` carries `FF FC`: X-25 of those three bytes is 0xFCFF.

const X25: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_IBM_SDLC);

/// The two CRC bytes of `frame_without_crc`, in the order they travel.
pub fn on_wire(frame_without_crc: &[u8]) -> [u8; 2] {
    let value = X25.checksum(frame_without_crc);
    [(value & 0xFF) as u8, (value >> 8) as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_check_value() {
        // CRC-16/X-25 (a.k.a. IBM-SDLC) check value, from the CRC RevEng catalogue.
        assert_eq!(on_wire(b"123456789"), [0x6E, 0x90]);
    }

    #[test]
    fn known_um11225_frames() {
        // S(RESYNCH request), S(interface soft reset request), S(GET ATR request), R(N(R)=0).
        assert_eq!(on_wire(&[0x5A, 0xC0, 0x00]), [0xFF, 0xFC]);
        assert_eq!(on_wire(&[0x5A, 0xCF, 0x00]), [0x37, 0x7F]);
        assert_eq!(on_wire(&[0x5A, 0xC7, 0x00]), [0xF7, 0xB1]);
        assert_eq!(on_wire(&[0x5A, 0x80, 0x00]), [0x99, 0xBA]);
    }
}
