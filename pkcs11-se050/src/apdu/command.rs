//! Command APDUs (ISO/IEC 7816-4), short and extended.
//!
//! The host encodes them; the virtual chip parses them. Short form: `Lc` one byte (1..=255),
//! `Le` one byte (`00` = 256). Extended form: `Lc` is `00 HH LL`, `Le` is `HH LL` after an
//! `Lc`, or `00 HH LL` alone (`0000` = 65536). A short case-4 command may come without `Le`.
//!
//! A command's data may be a PIN (WriteUserID, VerifySessionUserID, and the ProcessSessionCmd
//! that carries them): a `CommandApdu` wipes its data when dropped, its Debug output shows
//! lengths only, and the host sends [`CommandApdu::wire`], a buffer wiped when dropped.

use crate::wipe::SecretBytes;
use std::fmt;
use zeroize::Zeroize;

/// The longest command data a short APDU carries.
pub const SHORT_MAX_DATA: usize = 255;
/// The longest response a short `Le` asks for.
pub const SHORT_MAX_LE: usize = 256;
/// The longest command data an extended APDU carries.
pub const EXTENDED_MAX_DATA: usize = 65535;
/// The longest response an extended `Le` asks for.
pub const EXTENDED_MAX_LE: usize = 65536;

/// One command APDU; its data is wiped when it is dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandApdu {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    /// `Ne`, the most response bytes the host accepts (1..=65536); `None`: no `Le` field.
    pub le: Option<usize>,
    /// Whether the lengths are (or are to be) in the extended form.
    pub extended: bool,
}

impl Drop for CommandApdu {
    fn drop(&mut self) {
        self.data.zeroize();
    }
}

impl fmt::Debug for CommandApdu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The data may be a PIN: its length only.
        write!(
            f,
            "CommandApdu {{ {:02X} {:02X} {:02X} {:02X}, {} data bytes, le {:?}, {} }}",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.le,
            if self.extended { "extended" } else { "short" }
        )
    }
}

/// Why bytes are not a well-formed command APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandParseError {
    /// Fewer than the four header bytes.
    TooShort { len: usize },
    /// The length fields do not match the number of bytes.
    LengthMismatch { len: usize },
}

impl fmt::Display for CommandParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandParseError::TooShort { len } => {
                write!(
                    f,
                    "command APDU of {len} bytes is shorter than its 4-byte header"
                )
            }
            CommandParseError::LengthMismatch { len } => write!(
                f,
                "command APDU of {len} bytes: its Lc/Le fields do not match its length"
            ),
        }
    }
}

impl std::error::Error for CommandParseError {}

impl CommandApdu {
    /// A command in the short form when it fits, the extended form otherwise.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8, data: Vec<u8>, le: Option<usize>) -> Self {
        let extended = data.len() > SHORT_MAX_DATA || le.is_some_and(|ne| ne > SHORT_MAX_LE);
        CommandApdu {
            cla,
            ins,
            p1,
            p2,
            data,
            le,
            extended,
        }
    }

    /// The bytes on the wire, in a buffer of exactly their size (never regrown, so no copy is
    /// left behind) that is wiped when dropped. Panics if data or `Le` exceed the extended
    /// limits (a caller bug: the applet layer bounds its payloads far below them).
    pub fn wire(&self) -> SecretBytes {
        assert!(
            self.data.len() <= EXTENDED_MAX_DATA,
            "command data too long"
        );
        let extended = self.extended
            || self.data.len() > SHORT_MAX_DATA
            || self.le.is_some_and(|ne| ne > SHORT_MAX_LE);
        let mut out = crate::wipe::with_capacity(4 + 3 + self.data.len() + 3);
        out.extend_from_slice(&[self.cla, self.ins, self.p1, self.p2]);
        if extended {
            if !self.data.is_empty() {
                let lc = self.data.len();
                out.extend_from_slice(&[0x00, (lc >> 8) as u8, lc as u8]);
                out.extend_from_slice(&self.data);
            }
            if let Some(ne) = self.le {
                assert!((1..=EXTENDED_MAX_LE).contains(&ne), "Le out of range");
                if self.data.is_empty() {
                    out.push(0x00);
                }
                let field = if ne == EXTENDED_MAX_LE { 0 } else { ne };
                out.extend_from_slice(&[(field >> 8) as u8, field as u8]);
            }
        } else {
            if !self.data.is_empty() {
                out.push(self.data.len() as u8);
                out.extend_from_slice(&self.data);
            }
            if let Some(ne) = self.le {
                assert!((1..=SHORT_MAX_LE).contains(&ne), "Le out of range");
                out.push(if ne == SHORT_MAX_LE { 0 } else { ne as u8 });
            }
        }
        out
    }

    /// [`CommandApdu::wire`] as a plain `Vec`, not wiped: for tests and the virtual chip, never
    /// for a command that may carry a secret.
    pub fn encode(&self) -> Vec<u8> {
        self.wire().to_vec()
    }

    /// Reads a command APDU of any of the cases 1, 2, 3, 4 in short or extended form.
    pub fn parse(bytes: &[u8]) -> Result<Self, CommandParseError> {
        let len = bytes.len();
        if len < 4 {
            return Err(CommandParseError::TooShort { len });
        }
        let (cla, ins, p1, p2) = (bytes[0], bytes[1], bytes[2], bytes[3]);
        let body = &bytes[4..];
        let mismatch = CommandParseError::LengthMismatch { len };
        let make = |data: &[u8], le: Option<usize>, extended: bool| CommandApdu {
            cla,
            ins,
            p1,
            p2,
            data: data.to_vec(),
            le,
            extended,
        };
        let short_le = |b: u8| if b == 0 { SHORT_MAX_LE } else { b as usize };
        let extended_le = |hi: u8, lo: u8| match (hi as usize) << 8 | lo as usize {
            0 => EXTENDED_MAX_LE,
            n => n,
        };
        match body.len() {
            // Case 1.
            0 => Ok(make(&[], None, false)),
            // Case 2 short.
            1 => Ok(make(&[], Some(short_le(body[0])), false)),
            _ if body[0] != 0 => {
                // Case 3 or 4 short; case 4 may omit Le.
                let lc = body[0] as usize;
                match body.len() - 1 {
                    n if n == lc => Ok(make(&body[1..], None, false)),
                    n if n == lc + 1 => {
                        Ok(make(&body[1..1 + lc], Some(short_le(body[1 + lc])), false))
                    }
                    _ => Err(mismatch),
                }
            }
            // Case 2 extended: 00 HH LL.
            3 => Ok(make(&[], Some(extended_le(body[1], body[2])), true)),
            n if n > 3 => {
                let lc = (body[1] as usize) << 8 | body[2] as usize;
                if lc == 0 {
                    return Err(mismatch);
                }
                match n - 3 {
                    m if m == lc => Ok(make(&body[3..], None, true)),
                    m if m == lc + 2 => Ok(make(
                        &body[3..3 + lc],
                        Some(extended_le(body[3 + lc], body[4 + lc])),
                        true,
                    )),
                    _ => Err(mismatch),
                }
            }
            _ => Err(mismatch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cases_encode_and_parse() {
        let case1 = CommandApdu::new(0x80, 0x04, 0x00, 0x20, vec![], None);
        assert_eq!(case1.encode(), [0x80, 0x04, 0x00, 0x20]);
        let case2 = CommandApdu::new(0x80, 0x04, 0x00, 0x20, vec![], Some(256));
        assert_eq!(case2.encode(), [0x80, 0x04, 0x00, 0x20, 0x00]);
        let case3 = CommandApdu::new(0x80, 0x04, 0x00, 0x28, vec![0x41, 0x01, 0x07], None);
        assert_eq!(
            case3.encode(),
            [0x80, 0x04, 0x00, 0x28, 0x03, 0x41, 0x01, 0x07]
        );
        let case4 = CommandApdu::new(0x80, 0x02, 0x00, 0x00, vec![0xAA; 255], Some(256));
        let bytes = case4.encode();
        assert_eq!(bytes.len(), 4 + 1 + 255 + 1);
        assert_eq!(bytes[4], 0xFF);
        assert_eq!(*bytes.last().unwrap(), 0x00);
        for apdu in [case1, case2, case3, case4] {
            assert!(!apdu.extended);
            assert_eq!(CommandApdu::parse(&apdu.encode()).unwrap(), apdu);
        }
    }

    #[test]
    fn select_apdu_has_the_known_bytes() {
        let aid = [
            0xA0, 0x00, 0x00, 0x03, 0x96, 0x54, 0x53, 0x00, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00,
            0x00, 0x00,
        ];
        let select = CommandApdu::new(0x00, 0xA4, 0x04, 0x00, aid.to_vec(), Some(256));
        let bytes = select.encode();
        assert_eq!(&bytes[..5], &[0x00, 0xA4, 0x04, 0x00, 0x10]);
        assert_eq!(&bytes[5..21], &aid);
        assert_eq!(bytes[21], 0x00);
    }

    #[test]
    fn extended_cases_encode_and_parse() {
        // Data over 255 bytes forces the extended form for Lc and Le alike.
        let case4 = CommandApdu::new(0x80, 0x01, 0x06, 0x00, vec![1; 300], Some(256));
        let bytes = case4.encode();
        assert_eq!(&bytes[4..7], &[0x00, 0x01, 0x2C]);
        assert_eq!(&bytes[bytes.len() - 2..], &[0x01, 0x00]);
        assert!(case4.extended);
        // A large Le alone: 00 HH LL.
        let case2 = CommandApdu::new(0x80, 0x04, 0x00, 0x49, vec![], Some(889));
        assert_eq!(case2.encode(), [0x80, 0x04, 0x00, 0x49, 0x00, 0x03, 0x79]);
        let case2_max = CommandApdu::new(0x80, 0x04, 0x00, 0x49, vec![], Some(65536));
        assert_eq!(
            case2_max.encode(),
            [0x80, 0x04, 0x00, 0x49, 0x00, 0x00, 0x00]
        );
        // Case 3 extended: 00 HH LL data.
        let case3 = CommandApdu::new(0x80, 0x01, 0x06, 0x00, vec![2; 256], None);
        assert_eq!(&case3.encode()[4..7], &[0x00, 0x01, 0x00]);
        // Small data with a large Le: both fields extended.
        let mixed = CommandApdu::new(
            0x80,
            0x04,
            0x00,
            0x49,
            vec![0x41, 0x02, 0x03, 0x00],
            Some(1000),
        );
        assert_eq!(
            mixed.encode(),
            [0x80, 0x04, 0x00, 0x49, 0x00, 0x00, 0x04, 0x41, 0x02, 0x03, 0x00, 0x03, 0xE8]
        );
        for apdu in [case4, case2, case2_max, case3, mixed] {
            assert_eq!(CommandApdu::parse(&apdu.encode()).unwrap(), apdu);
        }
    }

    #[test]
    fn forced_extended_form_for_small_commands() {
        let mut apdu = CommandApdu::new(0x80, 0x02, 0x00, 0x00, vec![0x41, 0x00], Some(10));
        apdu.extended = true;
        let bytes = apdu.encode();
        assert_eq!(
            bytes,
            [0x80, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x41, 0x00, 0x00, 0x0A]
        );
        assert_eq!(CommandApdu::parse(&bytes).unwrap(), apdu);
    }

    #[test]
    fn short_case4_without_le_parses_as_case3() {
        let parsed = CommandApdu::parse(&[0x80, 0x02, 0x00, 0x00, 0x02, 0x41, 0x00]).unwrap();
        assert_eq!(parsed.data, [0x41, 0x00]);
        assert_eq!(parsed.le, None);
    }

    #[test]
    fn debug_output_shows_no_data_bytes() {
        let pin = b"PIN-7391";
        let mut data = vec![0x41, pin.len() as u8];
        data.extend_from_slice(pin);
        let apdu = CommandApdu::new(0x80, 0x04, 0x00, 0x2C, data, None);
        let shown = format!("{apdu:?}");
        assert!(shown.contains("10 data bytes"), "{shown}");
        for byte in pin {
            // Neither as numbers nor as text.
            assert!(!shown.contains(&format!("{byte}, ")), "{shown}");
        }
        assert!(
            !shown.contains("PIN-7391") && !shown.contains("[65, 8"),
            "{shown}"
        );
    }

    #[test]
    fn the_wire_buffer_is_exactly_the_commands_size() {
        // Exact capacity: nothing regrows it (a regrown Vec leaves its old copy unwiped).
        for apdu in [
            CommandApdu::new(0x80, 0x04, 0x00, 0x2C, vec![0x41, 2, 1, 2], None),
            CommandApdu::new(0x80, 0x04, 0x00, 0x2C, vec![7; 300], Some(256)),
            CommandApdu::new(0x80, 0x04, 0x00, 0x2C, vec![], Some(65536)),
        ] {
            let wire = apdu.wire();
            assert_eq!(wire.as_slice(), apdu.encode().as_slice());
            assert!(wire.capacity() <= 4 + 3 + apdu.data.len() + 3);
        }
    }

    #[test]
    fn rejects_malformed_lengths() {
        assert_eq!(
            CommandApdu::parse(&[0x80, 0x02, 0x00]),
            Err(CommandParseError::TooShort { len: 3 })
        );
        // Lc says 5, only 2 bytes follow.
        assert!(CommandApdu::parse(&[0x80, 0x02, 0x00, 0x00, 0x05, 0x41, 0x00]).is_err());
        // Lc says 1, 3 bytes follow (neither case 3 nor case 4).
        assert!(CommandApdu::parse(&[0x80, 0x02, 0x00, 0x00, 0x01, 0x41, 0x00, 0x00]).is_err());
        // Extended Lc of zero.
        assert!(CommandApdu::parse(&[0x80, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]).is_err());
        // Extended Lc of 2 with 3 bytes after it.
        assert!(CommandApdu::parse(&[0x80, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 1, 2, 3]).is_err());
        // Two bytes after the header: 00 then one byte is no valid form.
        assert!(CommandApdu::parse(&[0x80, 0x02, 0x00, 0x00, 0x00, 0x01]).is_err());
    }
}
