//! The TLVs of the IoT applet's command and response data (AN12413 section 3.4; the encoding of
//! NXP's middleware `tlvSet_*` / `tlvGet_*`, se05x_tlv.c): a one-byte tag, then the length in
//! one of three BER forms (ISO/IEC 7816-4 5.2; ITU-T X.690 8.1.3):
//!
//! - `LL` for 0..=0x7F,
//! - `81 LL` for 0x80..=0xFF,
//! - `82 HH LL` for 0x100..=0xFFFF,
//!
//! then the value. The chip answers in the shortest form. It reads every form a BER reader
//! reads, also a longer one than needed (`81 05`), as BER allows and NXP's middleware parser
//! does; other first length bytes (80, 83 and up) are refused.

/// A tag is missing, or its value does not have the size asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadTlv;

/// Appends `tag`, the length of `value` in the shortest form, and `value`.
pub fn push(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    match value.len() {
        n @ 0..=0x7F => out.push(n as u8),
        n @ 0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        n @ 0x100..=0xFFFF => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
        n => panic!("a TLV value of {n} bytes has no length form"),
    }
    out.extend_from_slice(value);
}

/// The size of one TLV whose value is `value_len` bytes.
pub fn encoded_len(value_len: usize) -> usize {
    let length_field = match value_len {
        0..=0x7F => 1,
        0x80..=0xFF => 2,
        _ => 3,
    };
    1 + length_field + value_len
}

/// The TLVs of one data field, in order.
#[derive(Debug, Clone, Default)]
pub struct Tlvs<'a> {
    items: Vec<(u8, &'a [u8])>,
}

impl<'a> Tlvs<'a> {
    /// Reads the whole of `data` as TLVs; any byte left over, or a value running past the end,
    /// is an error.
    pub fn parse(data: &'a [u8]) -> Result<Tlvs<'a>, BadTlv> {
        let mut items = Vec::new();
        let mut rest = data;
        while let [tag, ref after_tag @ ..] = *rest {
            let (len, after_len) = match *after_tag {
                [n @ 0x00..=0x7F, ref r @ ..] => (usize::from(n), r),
                [0x81, n, ref r @ ..] => (usize::from(n), r),
                [0x82, hi, lo, ref r @ ..] => (usize::from(u16::from_be_bytes([hi, lo])), r),
                _ => return Err(BadTlv),
            };
            if after_len.len() < len {
                return Err(BadTlv);
            }
            let (value, next) = after_len.split_at(len);
            items.push((tag, value));
            rest = next;
        }
        Ok(Tlvs { items })
    }

    /// The value of the first TLV with `tag`.
    pub fn get(&self, tag: u8) -> Option<&'a [u8]> {
        self.items.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }

    /// Every TLV, in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &'a [u8])> + '_ {
        self.items.iter().copied()
    }

    pub fn require(&self, tag: u8) -> Result<&'a [u8], BadTlv> {
        self.get(tag).ok_or(BadTlv)
    }

    /// A value of exactly `N` bytes.
    pub fn require_array<const N: usize>(&self, tag: u8) -> Result<[u8; N], BadTlv> {
        self.require(tag)?.try_into().map_err(|_| BadTlv)
    }

    /// A big-endian u16 value (exactly 2 bytes).
    pub fn require_u16(&self, tag: u8) -> Result<u16, BadTlv> {
        self.require_array(tag).map(u16::from_be_bytes)
    }

    /// A big-endian u32 value (exactly 4 bytes).
    pub fn require_u32(&self, tag: u8) -> Result<u32, BadTlv> {
        self.require_array(tag).map(u32::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_length_forms_by_hand() {
        let mut out = Vec::new();
        push(&mut out, 0x41, &[0xAB; 0x7F]);
        assert_eq!(out[..2], [0x41, 0x7F]);
        out.clear();
        push(&mut out, 0x41, &[0xAB; 0x80]);
        assert_eq!(out[..3], [0x41, 0x81, 0x80]);
        out.clear();
        push(&mut out, 0x41, &[0xAB; 0xFF]);
        assert_eq!(out[..3], [0x41, 0x81, 0xFF]);
        out.clear();
        push(&mut out, 0x44, &[0xAB; 0x100]);
        assert_eq!(out[..4], [0x44, 0x82, 0x01, 0x00]);
        assert_eq!(out.len(), encoded_len(0x100));
        out.clear();
        push(&mut out, 0x44, &[0xAB; 889]);
        assert_eq!(out[..4], [0x44, 0x82, 0x03, 0x79]);
    }

    #[test]
    fn parses_what_the_applet_sends() {
        // ReadIDList's answer: 41 01 01 (done), 42 08 <two ids>.
        let data = [
            0x41, 0x01, 0x01, 0x42, 0x08, 0, 0, 0, 1, 0x7F, 0xFF, 0x02, 0x06,
        ];
        let tlvs = Tlvs::parse(&data).unwrap();
        assert_eq!(tlvs.get(0x41), Some(&[0x01][..]));
        assert_eq!(tlvs.require(0x42).unwrap().len(), 8);
        assert_eq!(tlvs.get(0x43), None);
        let mut long = vec![0x44, 0x82, 0x01, 0x2C];
        long.extend_from_slice(&[5; 300]);
        long.extend_from_slice(&[0x41, 0x81, 0x02, 0x12, 0x34]);
        let tlvs = Tlvs::parse(&long).unwrap();
        assert_eq!(tlvs.require(0x44).unwrap(), &[5; 300][..]);
        assert_eq!(tlvs.require_u16(0x41), Ok(0x1234));
        assert_eq!(tlvs.require_u32(0x41), Err(BadTlv));
    }

    #[test]
    fn a_long_value_sent_with_a_one_byte_81_length_is_misread_not_accepted() {
        // A 300-byte value announced as `81 2C` (300 & 0xFF): 44 bytes of value, then the rest
        // of the value read as TLVs, which do not fit.
        let mut data = vec![0x44, 0x81, 0x2C];
        data.extend_from_slice(&[0xAA; 300]);
        assert_eq!(Tlvs::parse(&data).err(), Some(BadTlv));
    }

    #[test]
    fn truncations_and_undefined_length_forms() {
        for bad in [
            &[0x41][..],
            &[0x41, 0x02, 0x00],
            &[0x41, 0x81],
            &[0x41, 0x82, 0x00],
            &[0x41, 0x82, 0x00, 0x02, 0x00],
            &[0x41, 0x80],
            &[0x41, 0x83, 0, 0, 1, 0],
        ] {
            assert!(Tlvs::parse(bad).is_err(), "{bad:02X?}");
        }
        assert!(Tlvs::parse(&[]).unwrap().get(0x41).is_none());
    }
}
