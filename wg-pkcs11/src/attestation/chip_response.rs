//! The attested ReadObject as the chip exchanged it: the command (`80 22 00 00`, tags 41 object
//! id, 45 attestation key id, 46 algorithm, 47 freshness) and the answer, in the two layouts NXP
//! documents, with the exact bytes each layout's signature covers.
//!
//! Applet 3.x (NXP `Se05x_API_ReadObject_W_Attst`, its doc comment in `se05x_APDU_apis.h`):
//! answer `41 data`, `42 attributes`, `43 timestamp(12)`, `44 freshness(16)`, `45 chip id(18)`,
//! `46 signature`; the signature covers the concatenated *values* of 41..45
//! (`nxECKey_ReadEckaPublicKey` builds exactly that buffer for `nxECKey_VerifyAttestation`).
//!
//! Applet 7.x (`Se05x_API_ReadObject_W_Attst_V2`): answer `41 data`, `42 chip id`,
//! `43 attributes`, `44 object size`, `4F timestamp`, `52 signature`; the signature covers
//! `SHA-256(command) || 41..4F re-encoded with 82 HH LL lengths` (`add_taglength_to_data(...,
//! true)`), where the command is `80 22 00 00 00 00 Lc data` (the builder's `pCmdapdu`).
//! Both are ECDSA over SHA-256 of that message (`kSE05x_AttestationAlgo_EC_SHA_256`), DER.

use sha2::{Digest, Sha256};

use super::Refusal;

pub const CLA: u8 = 0x80;
/// INS_READ (0x02) | INS_ATTEST (0x20).
pub const INS_READ_WITH_ATTESTATION: u8 = 0x22;
/// kSE05x_AttestationAlgo_EC_SHA_256 (= kSE05x_ECSignatureAlgo_SHA_256).
pub const ALGO_EC_SHA_256: u8 = 0x21;
pub const FRESHNESS_LEN: usize = 16;
const TIMESTAMP_LEN: usize = 12;

/// Which applet generation answered, and so which layout the answer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Applet3,
    Applet7,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Applet3 => "se05x-applet-3",
            Layout::Applet7 => "se05x-applet-7",
        }
    }

    pub fn from_name(name: &str) -> Option<Layout> {
        match name {
            "se05x-applet-3" => Some(Layout::Applet3),
            "se05x-applet-7" => Some(Layout::Applet7),
            _ => None,
        }
    }
}

/// The command's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedReadCommand {
    pub object_id: u32,
    pub attestation_key_id: u32,
    pub algorithm: u8,
    pub freshness: [u8; FRESHNESS_LEN],
    /// The command's data field (its TLVs), as sent.
    pub data: Vec<u8>,
}

impl AttestedReadCommand {
    /// The command APDU NXP's builder sends: extended Lc, extended Le (Case 4 extended).
    pub fn encode(object_id: u32, attestation_key_id: u32, freshness: &[u8; 16]) -> Vec<u8> {
        let mut data = Vec::with_capacity(33);
        data.extend_from_slice(&[0x41, 0x04]);
        data.extend_from_slice(&object_id.to_be_bytes());
        data.extend_from_slice(&[0x45, 0x04]);
        data.extend_from_slice(&attestation_key_id.to_be_bytes());
        data.extend_from_slice(&[0x46, 0x01, ALGO_EC_SHA_256]);
        data.extend_from_slice(&[0x47, FRESHNESS_LEN as u8]);
        data.extend_from_slice(freshness);
        let mut apdu = vec![CLA, INS_READ_WITH_ATTESTATION, 0x00, 0x00, 0x00];
        apdu.extend_from_slice(&(data.len() as u16).to_be_bytes());
        apdu.extend_from_slice(&data);
        apdu.extend_from_slice(&[0x00, 0x00]);
        apdu
    }

    /// Parses a command APDU (short or extended length) as an attested ReadObject.
    pub fn parse(apdu: &[u8]) -> Result<AttestedReadCommand, Refusal> {
        let bad = |why: &str| Refusal::BadCommand(why.to_string());
        if apdu.len() < 5 {
            return Err(bad("shorter than an APDU header"));
        }
        if apdu[..4] != [CLA, INS_READ_WITH_ATTESTATION, 0x00, 0x00] {
            return Err(bad("not 80 22 00 00 (ReadObject with attestation)"));
        }
        let data = apdu_data(&apdu[4..]).ok_or_else(|| bad("its length fields are wrong"))?;
        let tlvs = parse_tlvs(data).map_err(|why| Refusal::BadCommand(why.to_string()))?;
        let mut object_id = None;
        let mut attestation_key_id = None;
        let mut algorithm = None;
        let mut freshness = None;
        for (tag, value) in tlvs {
            match tag {
                0x41 => object_id = Some(u32_of(value).ok_or_else(|| bad("object id"))?),
                0x45 => {
                    attestation_key_id =
                        Some(u32_of(value).ok_or_else(|| bad("attestation key id"))?)
                }
                0x46 if value.len() == 1 => algorithm = Some(value[0]),
                0x47 => {
                    freshness = Some(
                        <[u8; FRESHNESS_LEN]>::try_from(value)
                            .map_err(|_| bad("freshness is not 16 bytes"))?,
                    )
                }
                _ => return Err(bad(&format!("unexpected tag {tag:02X}"))),
            }
        }
        let command = AttestedReadCommand {
            object_id: object_id.ok_or_else(|| bad("no object id (tag 41)"))?,
            attestation_key_id: attestation_key_id
                .ok_or_else(|| bad("no attestation key id (tag 45)"))?,
            algorithm: algorithm.ok_or_else(|| bad("no algorithm (tag 46)"))?,
            freshness: freshness.ok_or_else(|| bad("no freshness value (tag 47)"))?,
            data: data.to_vec(),
        };
        if command.algorithm != ALGO_EC_SHA_256 {
            return Err(bad(&format!(
                "algorithm {:02X} (only 21, ECDSA with SHA-256, is accepted)",
                command.algorithm
            )));
        }
        Ok(command)
    }

    /// The command as NXP's 7.x builder records it for the signature: header, `00 00 Lc`, data.
    pub fn signed_form(&self) -> Vec<u8> {
        let mut out = vec![CLA, INS_READ_WITH_ATTESTATION, 0x00, 0x00, 0x00, 0x00];
        out.push(self.data.len() as u8);
        out.extend_from_slice(&self.data);
        out
    }
}

/// The answer's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedRead {
    pub layout: Layout,
    /// The object's readable part (a public key, chip byte order); absent when not readable.
    pub data: Option<Vec<u8>>,
    pub attributes: Vec<u8>,
    pub timestamp: [u8; TIMESTAMP_LEN],
    /// Applet 3.x only: the freshness value as the chip signed it.
    pub freshness: Option<[u8; FRESHNESS_LEN]>,
    pub chip_id: Vec<u8>,
    /// Applet 7.x only.
    pub object_size: Option<Vec<u8>>,
    /// DER ECDSA signature.
    pub signature: Vec<u8>,
    /// What the signature covers (the message, hashed with SHA-256 by ECDSA).
    pub signed_message: Vec<u8>,
}

impl AttestedRead {
    /// Parses the chip's response APDU (data and status word 9000) in the given layout.
    pub fn parse(
        layout: Layout,
        response: &[u8],
        command: &AttestedReadCommand,
    ) -> Result<AttestedRead, Refusal> {
        let bad = |why: String| Refusal::BadResponse(why);
        let Some((body, sw)) = response.split_last_chunk::<2>() else {
            return Err(bad("no status word".into()));
        };
        if *sw != [0x90, 0x00] {
            return Err(bad(format!("status word {:02X}{:02X}", sw[0], sw[1])));
        }
        let tlvs = parse_tlvs(body).map_err(|why| bad(why.to_string()))?;
        let order: &[u8] = match layout {
            Layout::Applet3 => &[0x41, 0x42, 0x43, 0x44, 0x45, 0x46],
            Layout::Applet7 => &[0x41, 0x42, 0x43, 0x44, 0x4F, 0x52],
        };
        // The tags in NXP's order, each at most once; only 41 (data) may be absent.
        let mut values: [Option<&[u8]>; 6] = [None; 6];
        let mut next = 0;
        for (tag, value) in &tlvs {
            let Some(pos) = order[next..].iter().position(|t| t == tag) else {
                return Err(bad(format!("tag {tag:02X} unexpected or out of order")));
            };
            values[next + pos] = Some(value);
            next += pos + 1;
        }
        for (i, value) in values.iter().enumerate().skip(1) {
            if value.is_none() {
                return Err(bad(format!("tag {:02X} missing", order[i])));
            }
        }
        let get = |i: usize| values[i].unwrap_or_default();
        let data = values[0].map(<[u8]>::to_vec);
        let (attributes, timestamp, freshness, chip_id, object_size, signature) = match layout {
            Layout::Applet3 => (get(1), get(2), Some(get(3)), get(4), None, get(5)),
            Layout::Applet7 => (get(2), get(4), None, get(1), Some(get(3)), get(5)),
        };
        let timestamp: [u8; TIMESTAMP_LEN] = timestamp
            .try_into()
            .map_err(|_| bad(format!("timestamp of {} bytes, not 12", timestamp.len())))?;
        let freshness = match freshness {
            Some(f) => Some(
                <[u8; FRESHNESS_LEN]>::try_from(f)
                    .map_err(|_| bad(format!("freshness of {} bytes, not 16", f.len())))?,
            ),
            None => None,
        };
        let signed_message = match layout {
            Layout::Applet3 => {
                let mut m = Vec::new();
                for value in &values[..5] {
                    m.extend_from_slice(value.unwrap_or_default());
                }
                m
            }
            Layout::Applet7 => {
                let mut m = Sha256::digest(command.signed_form()).to_vec();
                for (i, tag) in order.iter().enumerate().take(5) {
                    if let Some(value) = values[i] {
                        m.push(*tag);
                        m.push(0x82);
                        m.extend_from_slice(&(value.len() as u16).to_be_bytes());
                        m.extend_from_slice(value);
                    }
                }
                m
            }
        };
        Ok(AttestedRead {
            layout,
            data,
            attributes: attributes.to_vec(),
            timestamp,
            freshness,
            chip_id: chip_id.to_vec(),
            object_size: object_size.map(<[u8]>::to_vec),
            signature: signature.to_vec(),
            signed_message,
        })
    }
}

/// The data field of a command APDU after its 4-byte header: short (Lc, data, [Le]) or
/// extended (00 Lc Lc, data, [Le Le]).
fn apdu_data(rest: &[u8]) -> Option<&[u8]> {
    if rest[0] != 0 {
        let lc = rest[0] as usize;
        let data = rest.get(1..1 + lc)?;
        return matches!(rest.len() - 1 - lc, 0 | 1).then_some(data);
    }
    let lc = u16::from_be_bytes([*rest.get(1)?, *rest.get(2)?]) as usize;
    if lc == 0 {
        return None;
    }
    let data = rest.get(3..3 + lc)?;
    matches!(rest.len() - 3 - lc, 0 | 2).then_some(data)
}

/// The applet's BER-TLV sequence (one-byte tags; LL / 81 LL / 82 HH LL).
pub fn parse_tlvs(mut bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, &'static str> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        let (len, rest) = match rest {
            [l @ 0..=0x7F, rest @ ..] => (*l as usize, rest),
            [0x81, l, rest @ ..] => (*l as usize, rest),
            [0x82, h, l, rest @ ..] => (u16::from_be_bytes([*h, *l]) as usize, rest),
            _ => return Err("a TLV length is malformed or truncated"),
        };
        if rest.len() < len {
            return Err("a TLV value is truncated");
        }
        out.push((tag, &rest[..len]));
        bytes = &rest[len..];
    }
    Ok(out)
}

fn u32_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trip_and_nxp_bytes() {
        let nonce = [0xA5; 16];
        let apdu = AttestedReadCommand::encode(0x7000_0010, 0xF000_0012, &nonce);
        let mut expected = hex("80220000000021 410470000010 4504F0000012 460121 4710");
        expected.extend_from_slice(&nonce);
        expected.extend_from_slice(&[0, 0]);
        assert_eq!(apdu, expected);
        let parsed = AttestedReadCommand::parse(&apdu).unwrap();
        assert_eq!(parsed.object_id, 0x7000_0010);
        assert_eq!(parsed.attestation_key_id, 0xF000_0012);
        assert_eq!(parsed.freshness, nonce);
        assert_eq!(&parsed.signed_form()[..7], &hex("80220000000021")[..]);
        // Short form with Le also parses.
        let mut short = vec![0x80, 0x22, 0, 0, 0x21];
        short.extend_from_slice(&apdu[7..7 + 0x21]);
        short.push(0);
        assert_eq!(AttestedReadCommand::parse(&short).unwrap(), parsed);
        assert!(AttestedReadCommand::parse(&apdu[..20]).is_err());
        let mut other_ins = apdu.clone();
        other_ins[1] = 0x02;
        assert!(AttestedReadCommand::parse(&other_ins).is_err());
    }

    #[test]
    fn tlv_lengths() {
        assert_eq!(
            parse_tlvs(&hex("4101AA 4281 01BB 438200 01CC"))
                .unwrap()
                .len(),
            3
        );
        assert!(parse_tlvs(&hex("4102AA")).is_err());
        assert!(parse_tlvs(&hex("4183000001")).is_err());
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
