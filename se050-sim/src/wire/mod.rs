//! The chip's own codecs for what crosses the bus, written from the specifications (not shared
//! with any host driver, so a mistake in a host's encoding is not mirrored here):
//!
//! ```text
//! crc.rs    CRC-16/X-25 over NAD..INF, on the wire low byte first (UM11225; NXP middleware)
//! frame.rs  T=1 over I2C blocks: NAD PCB LEN INF CRC (UM11225 section 3; ISO/IEC 7816-3 11.3)
//! apdu.rs   command APDUs short and extended, response APDUs, status words (ISO/IEC 7816-4 5.1)
//! tlv.rs    the IoT applet's BER-TLV: 1-byte tags, lengths LL / 81 LL / 82 HH LL (AN12413)
//! ```

pub mod apdu;
pub mod crc;
pub mod frame;
pub mod tlv;
