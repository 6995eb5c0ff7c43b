//! Command and response APDUs as ISO/IEC 7816-4 (section 5.1) defines them, from the chip's side.
//!
//! A command is `CLA INS P1 P2` and a body of one of these forms (n = body length):
//!
//! | case | short                     | extended                                 |
//! |------|---------------------------|------------------------------------------|
//! | 1    | (empty)                   |                                          |
//! | 2    | Le (1; 00 = 256)          | 00 Le(2; 0000 = 65536)                   |
//! | 3    | Lc(1, not 00) data        | 00 Lc(2, not 0000) data                  |
//! | 4    | Lc data Le(1)             | 00 Lc(2) data Le(2)                      |
//!
//! The SE050 also takes a short case 4 without its Le (AN12413; NXP's middleware sends them),
//! which reads as case 3. A response is `data SW1 SW2`.

use crate::wipe::{self, SecretBytes};

/// A parsed command APDU.
#[derive(Clone, PartialEq, Eq)]
pub struct CommandApdu {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    /// Ne: the most response bytes the host takes (None: no Le field).
    pub le: Option<usize>,
    /// Whether the lengths came in the extended form.
    pub extended: bool,
}

impl std::fmt::Debug for CommandApdu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The data may be a PIN or a key: its length only.
        write!(
            f,
            "CommandApdu {{ {:02X} {:02X} {:02X} {:02X}, {} data bytes, le {:?} }}",
            self.cla,
            self.ins,
            self.p1,
            self.p2,
            self.data.len(),
            self.le
        )
    }
}

/// The command's bytes do not add up to any of the four cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

impl CommandApdu {
    /// A command in the short form when it fits, else the extended one.
    pub fn new(cla: u8, ins: u8, p1: u8, p2: u8, data: Vec<u8>, le: Option<usize>) -> Self {
        let extended = data.len() > 255 || le.is_some_and(|ne| ne > 256);
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

    pub fn parse(bytes: &[u8]) -> Result<CommandApdu, Malformed> {
        let [cla, ins, p1, p2, ref body @ ..] = *bytes else {
            return Err(Malformed);
        };
        let make = |data: &[u8], le: Option<usize>, extended| CommandApdu {
            cla,
            ins,
            p1,
            p2,
            data: data.to_vec(),
            le,
            extended,
        };
        let short_ne = |b: u8| if b == 0 { 256 } else { usize::from(b) };
        let extended_ne = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
            0 => 65536,
            n => usize::from(n),
        };
        match *body {
            [] => Ok(make(&[], None, false)),
            [le] => Ok(make(&[], Some(short_ne(le)), false)),
            [0x00, hi, lo] => Ok(make(&[], Some(extended_ne(hi, lo)), true)),
            [0x00, hi, lo, ref rest @ ..] => {
                let lc = usize::from(u16::from_be_bytes([hi, lo]));
                match rest.len() {
                    _ if lc == 0 => Err(Malformed),
                    n if n == lc => Ok(make(rest, None, true)),
                    n if n == lc + 2 => Ok(make(
                        &rest[..lc],
                        Some(extended_ne(rest[lc], rest[lc + 1])),
                        true,
                    )),
                    _ => Err(Malformed),
                }
            }
            [0x00, ..] => Err(Malformed),
            [lc, ref rest @ ..] => {
                let lc = usize::from(lc);
                match rest.len() {
                    n if n == lc => Ok(make(rest, None, false)),
                    n if n == lc + 1 => Ok(make(&rest[..lc], Some(short_ne(rest[lc])), false)),
                    _ => Err(Malformed),
                }
            }
        }
    }

    /// The bytes of this command, in the form `extended` says (tests and tools build commands
    /// with it). Panics on lengths no form can carry.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.cla, self.ins, self.p1, self.p2];
        let n = self.data.len();
        let extended = self.extended || n > 255 || self.le.is_some_and(|ne| ne > 256);
        if n > 0 {
            assert!(n <= 0xFFFF, "{n} data bytes");
            if extended {
                out.extend_from_slice(&[0x00, (n >> 8) as u8, n as u8]);
            } else {
                out.push(n as u8);
            }
            out.extend_from_slice(&self.data);
        }
        if let Some(ne) = self.le {
            if extended {
                assert!((1..=65536).contains(&ne), "Ne {ne}");
                if n == 0 {
                    out.push(0x00);
                }
                let field = (ne % 65536) as u16;
                out.extend_from_slice(&field.to_be_bytes());
            } else {
                assert!((1..=256).contains(&ne), "Ne {ne}");
                out.push((ne % 256) as u8);
            }
        }
        out
    }
}

/// SW1 SW2 (ISO/IEC 7816-4 5.6; the SE050's own uses from AN12413 and NXP's middleware
/// `SE05x_SW12_t` / `sm_const.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusWord(pub u16);

impl StatusWord {
    pub const OK: StatusWord = StatusWord(0x9000);
    pub const WRONG_LENGTH: StatusWord = StatusWord(0x6700);
    pub const SECURITY_STATUS: StatusWord = StatusWord(0x6982);
    /// Authentication method blocked (a UserID at its maximum of failed attempts).
    pub const AUTH_BLOCKED: StatusWord = StatusWord(0x6983);
    pub const CONDITIONS_NOT_SATISFIED: StatusWord = StatusWord(0x6985);
    pub const NOT_ALLOWED_BY_POLICY: StatusWord = StatusWord(0x6986);
    pub const WRONG_DATA: StatusWord = StatusWord(0x6A80);
    pub const NOT_FOUND: StatusWord = StatusWord(0x6A82);
    pub const MEMORY_FULL: StatusWord = StatusWord(0x6A84);
    pub const WRONG_P1P2: StatusWord = StatusWord(0x6A86);
    pub const INS_NOT_SUPPORTED: StatusWord = StatusWord(0x6D00);
    pub const CLA_NOT_SUPPORTED: StatusWord = StatusWord(0x6E00);
    pub const NO_PRECISE_DIAGNOSIS: StatusWord = StatusWord(0x6F00);
}

/// A response APDU: `data` then the status word, in a buffer wiped when dropped.
pub fn response(data: &[u8], sw: StatusWord) -> SecretBytes {
    let mut out = wipe::with_capacity(data.len() + 2);
    wipe::extend(&mut out, data);
    wipe::extend(&mut out, &sw.0.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &[u8]) -> (Vec<u8>, Option<usize>, bool) {
        let c = CommandApdu::parse(bytes).unwrap();
        assert_eq!([c.cla, c.ins, c.p1, c.p2], bytes[..4]);
        (c.data, c.le, c.extended)
    }

    #[test]
    fn the_four_cases_short_and_extended() {
        assert_eq!(parsed(&[0x80, 4, 0, 0x20]), (vec![], None, false));
        assert_eq!(
            parsed(&[0x80, 4, 0, 0x20, 0x00]),
            (vec![], Some(256), false)
        );
        assert_eq!(parsed(&[0x80, 4, 0, 0x20, 0x10]), (vec![], Some(16), false));
        assert_eq!(
            parsed(&[0x80, 4, 0, 0, 2, 0xAA, 0xBB]),
            (vec![0xAA, 0xBB], None, false)
        );
        assert_eq!(
            parsed(&[0x80, 4, 0, 0, 2, 0xAA, 0xBB, 0x00]),
            (vec![0xAA, 0xBB], Some(256), false)
        );
        assert_eq!(
            parsed(&[0x80, 4, 0, 0, 0, 0, 0]),
            (vec![], Some(65536), true)
        );
        assert_eq!(
            parsed(&[0x80, 4, 0, 0, 0, 0x01, 0x02]),
            (vec![], Some(258), true)
        );
        assert_eq!(
            parsed(&[0x80, 4, 0, 0, 0, 0, 1, 0xAA]),
            (vec![0xAA], None, true)
        );
        assert_eq!(
            parsed(&[0x80, 4, 0, 0, 0, 0, 1, 0xAA, 0x03, 0x79]),
            (vec![0xAA], Some(889), true)
        );
        // The SELECT of the IoT applet, as AN12413 gives it.
        let select = [
            0x00, 0xA4, 0x04, 0x00, 0x10, 0xA0, 0x00, 0x00, 0x03, 0x96, 0x54, 0x53, 0x00, 0x00,
            0x00, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let (data, le, extended) = parsed(&select);
        assert_eq!((data.len(), le, extended), (16, Some(256), false));
    }

    #[test]
    fn lengths_that_do_not_add_up_are_refused() {
        for bad in [
            &[0x80, 4, 0][..],
            &[0x80, 4, 0, 0, 2, 0xAA],
            &[0x80, 4, 0, 0, 2, 0xAA, 0xBB, 0, 0],
            &[0x80, 4, 0, 0, 0, 0],
            &[0x80, 4, 0, 0, 0, 0, 0, 0xAA],
            &[0x80, 4, 0, 0, 0, 0, 2, 0xAA],
            &[0x80, 4, 0, 0, 0, 0, 1, 0xAA, 0],
        ] {
            assert_eq!(CommandApdu::parse(bad), Err(Malformed), "{bad:02X?}");
        }
    }

    #[test]
    fn encode_round_trips() {
        for (data, le, extended) in [
            (vec![], None, false),
            (vec![1, 2], Some(256), false),
            (vec![7; 300], Some(3), true),
            (vec![], Some(65536), true),
            (vec![9; 5], None, true),
        ] {
            let c = CommandApdu {
                cla: 0x80,
                ins: 1,
                p1: 2,
                p2: 3,
                data,
                le,
                extended,
            };
            assert_eq!(CommandApdu::parse(&c.encode()).unwrap(), c);
        }
    }

    #[test]
    fn responses_end_with_the_status_word() {
        assert_eq!(*response(&[1, 2], StatusWord::OK), [1, 2, 0x90, 0x00]);
        assert_eq!(*response(&[], StatusWord::WRONG_DATA), [0x6A, 0x80]);
    }
}
