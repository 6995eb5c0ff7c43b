//! One T=1 block as it travels over I2C: NAD PCB LEN INF CRC (UM11225 §3).

use std::fmt;

use super::crc::crc_bytes;
use crate::wipe::{self, SecretBytes};
use zeroize::Zeroizing;

/// Node address of frames from the host to the SE.
pub const NAD_HOST_TO_SE: u8 = 0x5A;
/// Node address of frames from the SE to the host.
pub const NAD_SE_TO_HOST: u8 = 0xA5;
/// Largest information field (IFSC/IFSD of the SE050).
pub const MAX_INF: usize = 254;
/// NAD, PCB, LEN.
pub const HEADER_LEN: usize = 3;
/// The two CRC bytes.
pub const CRC_LEN: usize = 2;

/// Error indication carried by an R-block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RError {
    None,
    Crc,
    Other,
}

/// Supervisory block types (low bits of the PCB).
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

impl SKind {
    fn code(self) -> u8 {
        match self {
            SKind::Resynch => 0x00,
            SKind::Ifs => 0x01,
            SKind::Abort => 0x02,
            SKind::Wtx => 0x03,
            SKind::EndOfApduSession => 0x05,
            SKind::ChipReset => 0x06,
            SKind::GetAtr => 0x07,
            SKind::SoftReset => 0x0F,
        }
    }

    fn from_code(code: u8) -> Option<SKind> {
        Some(match code {
            0x00 => SKind::Resynch,
            0x01 => SKind::Ifs,
            0x02 => SKind::Abort,
            0x03 => SKind::Wtx,
            0x05 => SKind::EndOfApduSession,
            0x06 => SKind::ChipReset,
            0x07 => SKind::GetAtr,
            0x0F => SKind::SoftReset,
            _ => return None,
        })
    }
}

/// The protocol control byte, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pcb {
    /// Information block: send sequence number N(S) (0/1) and the more-data bit.
    I { ns: u8, more: bool },
    /// Receive-ready block: N(R) is the sequence number the sender expects next.
    R { nr: u8, error: RError },
    /// Supervisory block, request or response.
    S { kind: SKind, response: bool },
}

impl Pcb {
    pub fn to_byte(self) -> u8 {
        match self {
            Pcb::I { ns, more } => ((ns & 1) << 6) | if more { 0x20 } else { 0 },
            Pcb::R { nr, error } => {
                0x80 | ((nr & 1) << 4)
                    | match error {
                        RError::None => 0,
                        RError::Crc => 1,
                        RError::Other => 2,
                    }
            }
            Pcb::S { kind, response } => 0xC0 | if response { 0x20 } else { 0 } | kind.code(),
        }
    }

    pub fn from_byte(pcb: u8) -> Result<Pcb, FrameError> {
        match pcb & 0xC0 {
            0x00 | 0x40 => {
                if pcb & 0x1F != 0 {
                    return Err(FrameError::BadPcb(pcb));
                }
                Ok(Pcb::I {
                    ns: (pcb >> 6) & 1,
                    more: pcb & 0x20 != 0,
                })
            }
            0x80 => {
                let error = match pcb & 0x03 {
                    0 => RError::None,
                    1 => RError::Crc,
                    2 => RError::Other,
                    _ => return Err(FrameError::BadPcb(pcb)),
                };
                if pcb & 0x2C != 0 {
                    return Err(FrameError::BadPcb(pcb));
                }
                Ok(Pcb::R {
                    nr: (pcb >> 4) & 1,
                    error,
                })
            }
            _ => {
                let kind = SKind::from_code(pcb & 0x1F).ok_or(FrameError::BadPcb(pcb))?;
                Ok(Pcb::S {
                    kind,
                    response: pcb & 0x20 != 0,
                })
            }
        }
    }
}

/// Why bytes read from the bus are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    TooShort(usize),
    LengthMismatch {
        declared: usize,
        actual: usize,
    },
    InfTooLong(usize),
    BadCrc {
        computed: [u8; 2],
        received: [u8; 2],
    },
    BadPcb(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooShort(n) => write!(f, "frame of {n} bytes is shorter than 5"),
            FrameError::LengthMismatch { declared, actual } => write!(
                f,
                "LEN says {declared} INF bytes but the frame carries {actual}"
            ),
            FrameError::InfTooLong(n) => write!(f, "INF of {n} bytes exceeds 254"),
            FrameError::BadCrc { computed, received } => write!(
                f,
                "CRC mismatch: computed {:02X}{:02X}, received {:02X}{:02X}",
                computed[0], computed[1], received[0], received[1]
            ),
            FrameError::BadPcb(pcb) => write!(f, "undefined PCB {pcb:#04x}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// One block. Its INF may be part of a shared secret: it is wiped when the frame goes, and
/// `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub nad: u8,
    pub pcb: Pcb,
    pub inf: SecretBytes,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("nad", &format_args!("{:#04x}", self.nad))
            .field("pcb", &self.pcb)
            .field("inf", &format_args!("<{} bytes>", self.inf.len()))
            .finish()
    }
}

impl Frame {
    /// A frame from the host to the SE.
    pub fn to_se(pcb: Pcb, inf: &[u8]) -> Frame {
        Frame {
            nad: NAD_HOST_TO_SE,
            pcb,
            inf: Zeroizing::new(inf.to_vec()),
        }
    }

    /// A frame from the SE to the host.
    pub fn to_host(pcb: Pcb, inf: &[u8]) -> Frame {
        Frame {
            nad: NAD_SE_TO_HOST,
            pcb,
            inf: Zeroizing::new(inf.to_vec()),
        }
    }

    /// The bytes on the wire. INF must not exceed [`MAX_INF`] (the link splits before).
    pub fn encode(&self) -> SecretBytes {
        assert!(self.inf.len() <= MAX_INF, "T=1 INF longer than 254 bytes");
        let mut out = wipe::with_capacity(HEADER_LEN + self.inf.len() + CRC_LEN);
        out.push(self.nad);
        out.push(self.pcb.to_byte());
        out.push(self.inf.len() as u8);
        out.extend_from_slice(&self.inf);
        let crc = crc_bytes(&out);
        out.extend_from_slice(&crc);
        out
    }

    /// Decode a whole frame, checking LEN and CRC (the NAD is the caller's to check).
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        if bytes.len() < HEADER_LEN + CRC_LEN {
            return Err(FrameError::TooShort(bytes.len()));
        }
        let declared = bytes[2] as usize;
        let actual = bytes.len() - HEADER_LEN - CRC_LEN;
        if declared != actual {
            return Err(FrameError::LengthMismatch { declared, actual });
        }
        if declared > MAX_INF {
            return Err(FrameError::InfTooLong(declared));
        }
        let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
        let computed = crc_bytes(body);
        if computed != crc {
            return Err(FrameError::BadCrc {
                computed,
                received: [crc[0], crc[1]],
            });
        }
        // The PCB is checked only after the CRC: a damaged PCB is a damaged frame.
        let pcb = Pcb::from_byte(bytes[1])?;
        Ok(Frame {
            nad: bytes[0],
            pcb,
            inf: Zeroizing::new(body[HEADER_LEN..].to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s_request(kind: SKind) -> Frame {
        Frame::to_se(
            Pcb::S {
                kind,
                response: false,
            },
            &[],
        )
    }

    #[test]
    fn known_frames_encode() {
        assert_eq!(
            *s_request(SKind::Resynch).encode(),
            [0x5A, 0xC0, 0x00, 0xFF, 0xFC]
        );
        assert_eq!(
            *s_request(SKind::SoftReset).encode(),
            [0x5A, 0xCF, 0x00, 0x37, 0x7F]
        );
        assert_eq!(
            *s_request(SKind::GetAtr).encode(),
            [0x5A, 0xC7, 0x00, 0xF7, 0xB1]
        );
        let r_ack = Frame::to_se(
            Pcb::R {
                nr: 0,
                error: RError::None,
            },
            &[],
        );
        assert_eq!(*r_ack.encode(), [0x5A, 0x80, 0x00, 0x99, 0xBA]);
    }

    #[test]
    fn known_frames_decode() {
        let f = Frame::decode(&[0x5A, 0xC0, 0x00, 0xFF, 0xFC]).unwrap();
        assert_eq!(f, s_request(SKind::Resynch));
        let f = Frame::decode(&[0x5A, 0x80, 0x00, 0x99, 0xBA]).unwrap();
        assert_eq!(
            f.pcb,
            Pcb::R {
                nr: 0,
                error: RError::None
            }
        );
    }

    #[test]
    fn pcb_round_trip_all_kinds() {
        let mut pcbs = vec![];
        for ns in 0..2 {
            for more in [false, true] {
                pcbs.push(Pcb::I { ns, more });
            }
            for error in [RError::None, RError::Crc, RError::Other] {
                pcbs.push(Pcb::R { nr: ns, error });
            }
        }
        for kind in [
            SKind::Resynch,
            SKind::Ifs,
            SKind::Abort,
            SKind::Wtx,
            SKind::EndOfApduSession,
            SKind::ChipReset,
            SKind::GetAtr,
            SKind::SoftReset,
        ] {
            for response in [false, true] {
                pcbs.push(Pcb::S { kind, response });
            }
        }
        for pcb in pcbs {
            assert_eq!(Pcb::from_byte(pcb.to_byte()), Ok(pcb), "{pcb:?}");
        }
        assert_eq!(Pcb::I { ns: 1, more: true }.to_byte(), 0x60);
        assert_eq!(
            Pcb::R {
                nr: 1,
                error: RError::Crc
            }
            .to_byte(),
            0x91
        );
        assert_eq!(
            Pcb::S {
                kind: SKind::Wtx,
                response: true
            }
            .to_byte(),
            0xE3
        );
    }

    #[test]
    fn undefined_pcbs_rejected() {
        for bad in [0x01, 0x83, 0x84, 0xC4, 0xC8, 0xE4] {
            assert_eq!(Pcb::from_byte(bad), Err(FrameError::BadPcb(bad)));
        }
    }

    #[test]
    fn i_block_with_data_round_trips() {
        let f = Frame::to_host(Pcb::I { ns: 1, more: false }, &[0x90, 0x00]);
        let bytes = f.encode();
        assert_eq!(&bytes[..5], &[0xA5, 0x40, 0x02, 0x90, 0x00]);
        assert_eq!(Frame::decode(&bytes).unwrap(), f);
    }

    #[test]
    fn every_single_byte_corruption_is_detected() {
        let f = Frame::to_se(Pcb::I { ns: 0, more: true }, &[1, 2, 3, 4, 5, 6]);
        let good = f.encode();
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xFF, 0x5A] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                assert!(Frame::decode(&bad).is_err(), "byte {i} ^ {flip:#x}");
            }
        }
    }

    #[test]
    fn length_errors_named() {
        assert_eq!(Frame::decode(&[0x5A, 0x00]), Err(FrameError::TooShort(2)));
        assert_eq!(
            Frame::decode(&[0x5A, 0x00, 0x03, 0x01, 0xAA, 0xBB]),
            Err(FrameError::LengthMismatch {
                declared: 3,
                actual: 1
            })
        );
    }
}
