//! One T=1 block on the I2C bus as UM11225 (section 3.1) defines it, from the chip's side:
//! `NAD(1) PCB(1) LEN(1) INF(LEN) CRC(2)`.
//!
//! - NAD: 0x5A host to chip, 0xA5 chip to host.
//! - PCB (ISO/IEC 7816-3 11.3.2.2, with UM11225's S-block types):
//!   - I-block `0 N(S) M 00000`: b7 the send sequence number, b6 the more-data (chaining) bit;
//!   - R-block `1 0 0 N(R) 00ee`: b5 the expected sequence number, ee 00 no error, 01 CRC
//!     error, 10 other error;
//!   - S-block `1 1 r ttttt`: r 0 request, 1 response; type 00 RESYNCH, 01 IFS, 02 ABORT,
//!     03 WTX, 05 END OF APDU SESSION, 06 CHIP RESET, 07 GET ATR, 0F interface soft reset.
//! - LEN 0..=254 (IFSC/IFSD of the SE050: 254); CRC: see `crc.rs`.

use std::fmt;

use super::crc;
use crate::wipe::SecretBytes;
use zeroize::Zeroizing;

pub const NAD_HOST_TO_SE: u8 = 0x5A;
pub const NAD_SE_TO_HOST: u8 = 0xA5;
/// The largest INF either side takes (UM11225: IFSC 254).
pub const MAX_INF: usize = 254;

/// The error code of an R-block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RError {
    None,
    Crc,
    Other,
}

/// The S-block types of UM11225 table 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SKind {
    Resynch,
    Ifs,
    Abort,
    Wtx,
    EndOfApduSession,
    ChipReset,
    GetAtr,
    SoftReset,
}

const S_TYPES: [(SKind, u8); 8] = [
    (SKind::Resynch, 0x00),
    (SKind::Ifs, 0x01),
    (SKind::Abort, 0x02),
    (SKind::Wtx, 0x03),
    (SKind::EndOfApduSession, 0x05),
    (SKind::ChipReset, 0x06),
    (SKind::GetAtr, 0x07),
    (SKind::SoftReset, 0x0F),
];

/// A decoded PCB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pcb {
    I { ns: u8, more: bool },
    R { nr: u8, error: RError },
    S { kind: SKind, response: bool },
}

impl Pcb {
    fn byte(self) -> u8 {
        match self {
            Pcb::I { ns, more } => (ns & 1) << 6 | u8::from(more) << 5,
            Pcb::R { nr, error } => {
                let code = match error {
                    RError::None => 0b00,
                    RError::Crc => 0b01,
                    RError::Other => 0b10,
                };
                0b1000_0000 | (nr & 1) << 4 | code
            }
            Pcb::S { kind, response } => {
                let code = S_TYPES.iter().find(|(k, _)| *k == kind).map(|(_, c)| *c);
                0b1100_0000 | u8::from(response) << 5 | code.expect("every kind has a code")
            }
        }
    }

    fn parse(byte: u8) -> Option<Pcb> {
        if byte & 0x80 == 0 {
            // I-block: the five low bits are reserved.
            return (byte & 0x1F == 0).then_some(Pcb::I {
                ns: byte >> 6 & 1,
                more: byte & 0x20 != 0,
            });
        }
        if byte & 0x40 == 0 {
            // R-block: b6, b4 and b3 are reserved.
            if byte & 0b0010_1100 != 0 {
                return None;
            }
            let error = match byte & 0b11 {
                0b00 => RError::None,
                0b01 => RError::Crc,
                0b10 => RError::Other,
                _ => return None,
            };
            return Some(Pcb::R {
                nr: byte >> 4 & 1,
                error,
            });
        }
        let kind = S_TYPES.iter().find(|(_, c)| *c == byte & 0x1F)?.0;
        Some(Pcb::S {
            kind,
            response: byte & 0x20 != 0,
        })
    }
}

/// One block. Its INF may carry part of a secret: wiped when dropped, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub nad: u8,
    pub pcb: Pcb,
    pub inf: SecretBytes,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Frame {{ nad: {:#04x}, pcb: {:?}, inf: {} bytes }}",
            self.nad,
            self.pcb,
            self.inf.len()
        )
    }
}

impl Frame {
    /// A block the chip sends.
    pub fn to_host(pcb: Pcb, inf: &[u8]) -> Frame {
        Frame {
            nad: NAD_SE_TO_HOST,
            pcb,
            inf: Zeroizing::new(inf.to_vec()),
        }
    }

    /// The bytes on the bus.
    pub fn encode(&self) -> SecretBytes {
        assert!(self.inf.len() <= MAX_INF, "INF of {} bytes", self.inf.len());
        let mut out = Zeroizing::new(Vec::with_capacity(self.inf.len() + 5));
        out.extend_from_slice(&[self.nad, self.pcb.byte(), self.inf.len() as u8]);
        out.extend_from_slice(&self.inf);
        let check = crc::on_wire(&out);
        out.extend_from_slice(&check);
        out
    }

    /// A whole block as the host wrote it; the error says what is wrong with it. The NAD is
    /// left to the caller.
    pub fn decode(bytes: &[u8]) -> Result<Frame, String> {
        let [nad, pcb, len, ref rest @ ..] = *bytes else {
            return Err(format!("{} bytes: shorter than a block", bytes.len()));
        };
        let len = usize::from(len);
        if len > MAX_INF {
            return Err(format!("LEN {len} exceeds 254"));
        }
        if rest.len() != len + 2 {
            return Err(format!(
                "LEN {len} but {} bytes follow the header",
                rest.len()
            ));
        }
        let (body, check) = bytes.split_at(3 + len);
        if crc::on_wire(body) != check {
            return Err("CRC mismatch".into());
        }
        // A damaged PCB with a good CRC is a block this protocol does not define.
        let pcb = Pcb::parse(pcb).ok_or_else(|| format!("undefined PCB {pcb:#04x}"))?;
        Ok(Frame {
            nad,
            pcb,
            inf: Zeroizing::new(rest[..len].to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(bytes: &[u8]) -> Frame {
        let frame = Frame::decode(bytes).unwrap();
        assert_eq!(frame.nad, NAD_HOST_TO_SE);
        frame
    }

    #[test]
    fn known_host_blocks_decode() {
        // UM11225 / NXP middleware examples (see crc.rs for the CRC order).
        let resynch = host(&[0x5A, 0xC0, 0x00, 0xFF, 0xFC]);
        assert_eq!(
            resynch.pcb,
            Pcb::S {
                kind: SKind::Resynch,
                response: false
            }
        );
        let soft_reset = host(&[0x5A, 0xCF, 0x00, 0x37, 0x7F]);
        assert_eq!(
            soft_reset.pcb,
            Pcb::S {
                kind: SKind::SoftReset,
                response: false
            }
        );
        let get_atr = host(&[0x5A, 0xC7, 0x00, 0xF7, 0xB1]);
        assert_eq!(
            get_atr.pcb,
            Pcb::S {
                kind: SKind::GetAtr,
                response: false
            }
        );
        let ack = host(&[0x5A, 0x80, 0x00, 0x99, 0xBA]);
        assert_eq!(
            ack.pcb,
            Pcb::R {
                nr: 0,
                error: RError::None
            }
        );
    }

    #[test]
    fn the_crc_travels_low_byte_first() {
        // The same RESYNCH with its CRC bytes swapped is a damaged block.
        assert!(Frame::decode(&[0x5A, 0xC0, 0x00, 0xFC, 0xFF]).is_err());
    }

    #[test]
    fn chip_blocks_encode() {
        let i = Frame::to_host(Pcb::I { ns: 1, more: true }, &[0x90, 0x00]);
        let bytes = i.encode();
        assert_eq!(&bytes[..5], &[0xA5, 0x60, 0x02, 0x90, 0x00]);
        assert_eq!(&bytes[5..], &crc::on_wire(&bytes[..5]));
        let wtx = Frame::to_host(
            Pcb::S {
                kind: SKind::Wtx,
                response: false,
            },
            &[1],
        );
        assert_eq!(wtx.encode()[..4], [0xA5, 0xC3, 0x01, 0x01]);
        let nack = Frame::to_host(
            Pcb::R {
                nr: 1,
                error: RError::Other,
            },
            &[],
        );
        assert_eq!(nack.encode()[..3], [0xA5, 0x92, 0x00]);
        let resynch_response = Frame::to_host(
            Pcb::S {
                kind: SKind::Resynch,
                response: true,
            },
            &[],
        );
        assert_eq!(resynch_response.encode()[1], 0xE0);
    }

    #[test]
    fn every_pcb_round_trips_and_reserved_bits_are_refused() {
        for byte in 0..=0xFFu8 {
            if let Some(pcb) = Pcb::parse(byte) {
                assert_eq!(pcb.byte(), byte, "{byte:#04x}");
            }
        }
        assert!(Pcb::parse(0x01).is_none(), "I-block reserved bit");
        assert!(Pcb::parse(0xA0).is_none(), "R-block b6");
        assert!(Pcb::parse(0x83).is_none(), "R-block error 11");
        assert!(Pcb::parse(0xC4).is_none(), "S-block type 04");
    }

    #[test]
    fn length_and_size_errors() {
        assert!(Frame::decode(&[0x5A, 0x00, 0x01]).is_err());
        let mut long = vec![0x5A, 0x00, 0xFF];
        long.extend_from_slice(&[0; 255]);
        let check = crc::on_wire(&long);
        long.extend_from_slice(&check);
        assert!(Frame::decode(&long).unwrap_err().contains("exceeds 254"));
        // LEN says 2, one byte of INF.
        let mut short = vec![0x5A, 0x00, 0x02, 0x11];
        let check = crc::on_wire(&short);
        short.extend_from_slice(&check);
        assert!(Frame::decode(&short).is_err());
    }
}
