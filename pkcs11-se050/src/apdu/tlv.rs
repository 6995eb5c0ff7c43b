//! BER-TLV as the IoT applet uses it: one-byte tags, lengths in the three forms
//! `LL` (< 0x80), `81 LL` and `82 HH LL`. Values never exceed 0xFFFF bytes.

use std::fmt;

/// The longest value the three length forms can describe.
pub const MAX_VALUE_LEN: usize = 0xFFFF;

/// Why a TLV sequence could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlvError {
    /// The data ends inside a tag, a length, or a value.
    Truncated { tag: u8, offset: usize },
    /// A length byte of a form this applet never uses (0x80, 0x83 and above).
    BadLengthForm { tag: u8, first_length_byte: u8 },
    /// A required tag is absent.
    Missing { tag: u8 },
    /// A tag has a value of the wrong size.
    WrongLength {
        tag: u8,
        expected: usize,
        found: usize,
    },
}

impl fmt::Display for TlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlvError::Truncated { tag, offset } => {
                write!(f, "TLV with tag 0x{tag:02X} truncated at byte {offset}")
            }
            TlvError::BadLengthForm {
                tag,
                first_length_byte,
            } => write!(
                f,
                "TLV with tag 0x{tag:02X} has an unsupported length form 0x{first_length_byte:02X}"
            ),
            TlvError::Missing { tag } => write!(f, "TLV with tag 0x{tag:02X} is missing"),
            TlvError::WrongLength {
                tag,
                expected,
                found,
            } => write!(
                f,
                "TLV with tag 0x{tag:02X} has {found} bytes, expected {expected}"
            ),
        }
    }
}

impl std::error::Error for TlvError {}

/// Appends the length of a value in the shortest of the three forms.
///
/// Panics if `len` exceeds [`MAX_VALUE_LEN`]: callers bound their values far below it
/// (the chip's APDU payload is 889 bytes), so a longer value is a bug in the caller.
pub fn push_length(out: &mut Vec<u8>, len: usize) {
    assert!(
        len <= MAX_VALUE_LEN,
        "TLV value of {len} bytes exceeds 0xFFFF"
    );
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xFF {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

/// Appends one TLV.
pub fn push(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    push_length(out, value.len());
    out.extend_from_slice(value);
}

/// How many bytes a TLV with a value of `len` bytes takes.
pub fn encoded_len(len: usize) -> usize {
    let length_bytes = if len < 0x80 {
        1
    } else if len <= 0xFF {
        2
    } else {
        3
    };
    1 + length_bytes + len
}

/// A parsed sequence of TLVs borrowing from the APDU data.
#[derive(Debug, Clone, Default)]
pub struct Tlvs<'a> {
    items: Vec<(u8, &'a [u8])>,
}

impl<'a> Tlvs<'a> {
    /// Splits `data` into TLVs; every byte must belong to one.
    pub fn parse(data: &'a [u8]) -> Result<Self, TlvError> {
        let mut items = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let tag = data[at];
            let truncated = TlvError::Truncated { tag, offset: at };
            let first = *data.get(at + 1).ok_or(truncated.clone())?;
            let (len, header) = match first {
                0x00..=0x7F => (first as usize, 2),
                0x81 => (*data.get(at + 2).ok_or(truncated.clone())? as usize, 3),
                0x82 => {
                    let hi = *data.get(at + 2).ok_or(truncated.clone())? as usize;
                    let lo = *data.get(at + 3).ok_or(truncated.clone())? as usize;
                    (hi << 8 | lo, 4)
                }
                _ => {
                    return Err(TlvError::BadLengthForm {
                        tag,
                        first_length_byte: first,
                    })
                }
            };
            let start = at + header;
            let end = start
                .checked_add(len)
                .filter(|&e| e <= data.len())
                .ok_or(truncated)?;
            items.push((tag, &data[start..end]));
            at = end;
        }
        Ok(Tlvs { items })
    }

    /// The value of the first TLV with `tag`, if any.
    pub fn get(&self, tag: u8) -> Option<&'a [u8]> {
        self.items.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }

    /// The value of the first TLV with `tag`, or an error naming the tag.
    pub fn require(&self, tag: u8) -> Result<&'a [u8], TlvError> {
        self.get(tag).ok_or(TlvError::Missing { tag })
    }

    /// The value of `tag`, which must be exactly `N` bytes long.
    pub fn require_array<const N: usize>(&self, tag: u8) -> Result<[u8; N], TlvError> {
        let value = self.require(tag)?;
        value.try_into().map_err(|_| TlvError::WrongLength {
            tag,
            expected: N,
            found: value.len(),
        })
    }

    /// A big-endian u16 carried in exactly two bytes.
    pub fn require_u16(&self, tag: u8) -> Result<u16, TlvError> {
        Ok(u16::from_be_bytes(self.require_array::<2>(tag)?))
    }

    /// A big-endian u32 carried in exactly four bytes.
    pub fn require_u32(&self, tag: u8) -> Result<u32, TlvError> {
        Ok(u32::from_be_bytes(self.require_array::<4>(tag)?))
    }

    /// All TLVs in order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &'a [u8])> + '_ {
        self.items.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_one(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        push(&mut out, 0x41, &vec![0xAB; len]);
        out
    }

    #[test]
    fn length_forms_at_their_boundaries() {
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (0x7F, &[0x7F]),
            (0x80, &[0x81, 0x80]),
            (0xFF, &[0x81, 0xFF]),
            (0x100, &[0x82, 0x01, 0x00]),
            (0xFFFF, &[0x82, 0xFF, 0xFF]),
        ];
        for (len, header) in cases {
            let encoded = encode_one(*len);
            assert_eq!(encoded[0], 0x41);
            assert_eq!(&encoded[1..1 + header.len()], *header, "length {len:#x}");
            assert_eq!(encoded.len(), encoded_len(*len));
            let tlvs = Tlvs::parse(&encoded).unwrap();
            assert_eq!(tlvs.get(0x41).unwrap().len(), *len);
        }
    }

    #[test]
    fn parses_a_sequence_and_finds_tags() {
        let mut data = Vec::new();
        push(&mut data, 0x41, &[0, 0, 0, 5]);
        push(&mut data, 0x42, &[0x41]);
        push(&mut data, 0x44, &[7; 300]);
        let tlvs = Tlvs::parse(&data).unwrap();
        assert_eq!(tlvs.require_u32(0x41).unwrap(), 5);
        assert_eq!(tlvs.require(0x42).unwrap(), &[0x41]);
        assert_eq!(tlvs.require(0x44).unwrap().len(), 300);
        assert_eq!(tlvs.require(0x43), Err(TlvError::Missing { tag: 0x43 }));
        assert_eq!(
            tlvs.require_u16(0x42),
            Err(TlvError::WrongLength {
                tag: 0x42,
                expected: 2,
                found: 1
            })
        );
        assert_eq!(tlvs.iter().count(), 3);
    }

    #[test]
    fn rejects_truncation_and_odd_length_forms() {
        assert!(matches!(
            Tlvs::parse(&[0x41]),
            Err(TlvError::Truncated { .. })
        ));
        assert!(matches!(
            Tlvs::parse(&[0x41, 0x03, 1, 2]),
            Err(TlvError::Truncated { .. })
        ));
        assert!(matches!(
            Tlvs::parse(&[0x41, 0x81]),
            Err(TlvError::Truncated { .. })
        ));
        assert!(matches!(
            Tlvs::parse(&[0x41, 0x82, 0x01]),
            Err(TlvError::Truncated { .. })
        ));
        assert!(matches!(
            Tlvs::parse(&[0x41, 0x82, 0x01, 0x00, 1]),
            Err(TlvError::Truncated { .. })
        ));
        assert_eq!(
            Tlvs::parse(&[0x41, 0x80]).unwrap_err(),
            TlvError::BadLengthForm {
                tag: 0x41,
                first_length_byte: 0x80
            }
        );
        assert!(matches!(
            Tlvs::parse(&[0x41, 0x83, 0, 0, 1]),
            Err(TlvError::BadLengthForm { .. })
        ));
        assert!(Tlvs::parse(&[]).unwrap().get(0x41).is_none());
    }
}
