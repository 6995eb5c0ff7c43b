//! ECDSA (P-256) and EdDSA (Ed25519) signatures made on the chip (issue 22).
//!
//! NXP's builders (NXP/plug-and-trust @ 9721d640, se05x_03_xx_xx/se05x_APDU_impl.h):
//! `Se05x_API_ECDSASign` and `Se05x_API_EdDSASign` both send `80 03 0C 09` (INS_CRYPTO,
//! P1_SIGNATURE, P2_SIGN) with 41 object id, 42 algorithm (1 byte), 43 input, and read the
//! signature from 41. ECDSA takes a digest the caller computed (`sss_se05x_asymmetric_sign_digest`
//! checks its length against the algorithm: 32 bytes for `kSE05x_ECSignatureAlgo_SHA_256`) and
//! answers an ASN.1 DER `SEQUENCE { r INTEGER, s INTEGER }`; this API returns `r || s`, 32 bytes
//! each, as PKCS#11 wants. EdDSA takes the whole message (PureEdDSA) and answers R and S each in
//! the chip's reversed byte order: `sss_se05x_asymmetric_sign` (case
//! `kSSS_CipherType_EC_TWISTED_ED`) reverses each 32-byte half; so does this API.

use super::protocol::*;
use super::{bad, tag1, ObjectId, Se050, Se050Error};
use crate::apdu::tlv;
use crate::t1::ApduTransport;

/// The TLVs around an EdDSA message: 41 04 id, 42 01 algorithm, 43 82 HH LL.
const EDDSA_OVERHEAD: usize = 6 + 3 + 4;
/// The longest message one EdDSASign carries (the chip takes no chained signing for EdDSA).
pub const MAX_EDDSA_MESSAGE: usize = MAX_APDU_PAYLOAD - EDDSA_OVERHEAD;
/// The digest length ECDSASign is asked to sign (SHA-256's).
pub const ECDSA_DIGEST_LEN: usize = 32;

impl<T: ApduTransport> Se050<T> {
    /// ECDSA over P-256 with the private key at `id` of a 32-byte digest: `r || s`.
    pub fn ecdsa_sign_digest(
        &mut self,
        id: ObjectId,
        digest: &[u8; ECDSA_DIGEST_LEN],
    ) -> Result<[u8; 64], Se050Error> {
        let mut data = Vec::with_capacity(6 + 3 + 34);
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        tlv::push(&mut data, TAG_2, &[ECDSA_SHA_256]);
        tlv::push(&mut data, TAG_3, digest);
        let name = || format!("ECDSASign {id}");
        let response = self.exchange(&name, INS_CRYPTO, P1_SIGNATURE, P2_SIGN, data, Some(256))?;
        let der = tag1(&name, &response)?;
        der_signature_to_raw(der).map_err(|reason| bad(&name, reason))
    }

    /// Ed25519 (PureEdDSA, RFC 8032) of `message` with the private key at `id`: `R || S`.
    pub fn eddsa_sign(&mut self, id: ObjectId, message: &[u8]) -> Result<[u8; 64], Se050Error> {
        if message.len() > MAX_EDDSA_MESSAGE {
            return Err(Se050Error::InvalidArgument(format!(
                "an EdDSA message on the chip is at most {MAX_EDDSA_MESSAGE} bytes (one APDU), \
                 not {}",
                message.len()
            )));
        }
        let mut data = Vec::with_capacity(EDDSA_OVERHEAD + message.len());
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        tlv::push(&mut data, TAG_2, &[EDDSA_ED25519_PURE]);
        tlv::push(&mut data, TAG_3, message);
        let name = || format!("EdDSASign {id}");
        let response = self.exchange(&name, INS_CRYPTO, P1_SIGNATURE, P2_SIGN, data, Some(256))?;
        let value = tag1(&name, &response)?;
        let mut signature: [u8; 64] = value.try_into().map_err(|_| {
            bad(
                &name,
                format!("signature of {} bytes, expected 64", value.len()),
            )
        })?;
        signature[..32].reverse();
        signature[32..].reverse();
        Ok(signature)
    }
}

/// `SEQUENCE { INTEGER r, INTEGER s }` (DER, as the chip answers) to `r || s`, 32 bytes each.
/// Strict: definite short lengths, minimal integers (a leading 00 only before a high bit),
/// positive, at most 32 significant bytes, nothing after the sequence.
pub fn der_signature_to_raw(der: &[u8]) -> Result<[u8; 64], String> {
    let body = match der {
        [0x30, len, body @ ..] if *len < 0x80 && *len as usize == body.len() => body,
        _ => {
            return Err(format!(
                "not a DER SEQUENCE of r and s ({} bytes)",
                der.len()
            ))
        }
    };
    let (r, rest) = der_integer(body).map_err(|e| format!("r: {e}"))?;
    let (s, rest) = der_integer(rest).map_err(|e| format!("s: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after r and s", rest.len()));
    }
    let mut raw = [0u8; 64];
    // Right-aligned: an r or s shorter than 32 bytes gets its leading zeros back.
    raw[32 - r.len()..32].copy_from_slice(r);
    raw[64 - s.len()..].copy_from_slice(s);
    Ok(raw)
}

/// One DER INTEGER holding a positive value of at most 32 bytes: its significant bytes.
fn der_integer(der: &[u8]) -> Result<(&[u8], &[u8]), String> {
    let (value, rest) = match der {
        [0x02, len, rest @ ..] if *len < 0x80 && (*len as usize) <= rest.len() => {
            rest.split_at(*len as usize)
        }
        _ => return Err("not a DER INTEGER".into()),
    };
    let significant = match value {
        [] => return Err("empty".into()),
        [0x00] => return Err("zero".into()),
        [0x00, next, ..] if next & 0x80 == 0 => return Err("not minimal".into()),
        [0x00, tail @ ..] => tail,
        [first, ..] if first & 0x80 != 0 => return Err("negative".into()),
        all => all,
    };
    if significant.len() > 32 {
        return Err(format!("{} bytes, more than 32", significant.len()));
    }
    Ok((significant, rest))
}

/// `r || s` to DER (the form OpenSSL and the chip use), for tests and callers that want it.
pub fn raw_signature_to_der(raw: &[u8; 64]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, value: &[u8]) {
        let start = value
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(value.len() - 1);
        let value = &value[start..];
        let pad = value[0] & 0x80 != 0;
        out.push(0x02);
        out.push((value.len() + pad as usize) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(value);
    }
    let mut body = Vec::with_capacity(70);
    integer(&mut body, &raw[..32]);
    integer(&mut body, &raw[32..]);
    let mut der = vec![0x30, body.len() as u8];
    der.extend_from_slice(&body);
    der
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_to_raw_restores_leading_zeros_and_drops_sign_bytes() {
        // r has a high bit (00 prefix in DER), s is 31 bytes (a leading zero byte dropped).
        let mut raw = [0u8; 64];
        raw[..32].copy_from_slice(&[0x80; 32]);
        raw[33..].copy_from_slice(&[0x11; 31]);
        let der = raw_signature_to_der(&raw);
        assert_eq!(&der[..5], &[0x30, 0x44, 0x02, 0x21, 0x00]);
        assert_eq!(&der[37..39], &[0x02, 0x1F]);
        assert_eq!(der_signature_to_raw(&der).unwrap(), raw);
        // Against RustCrypto's DER encoding of the same values.
        let theirs = p256::ecdsa::Signature::from_slice(&raw).unwrap().to_der();
        assert_eq!(theirs.as_bytes(), der.as_slice());
    }

    #[test]
    fn malformed_der_is_refused() {
        let good = raw_signature_to_der(&[0x42; 64]);
        for (what, bytes) in [
            ("trailing byte", [good.clone(), vec![0]].concat()),
            ("short", good[..good.len() - 1].to_vec()),
            ("not a sequence", [vec![0x31], good[1..].to_vec()].concat()),
            (
                "negative r",
                vec![0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x01],
            ),
            (
                "non-minimal r",
                vec![0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01],
            ),
            (
                "zero s",
                vec![0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00],
            ),
        ] {
            assert!(der_signature_to_raw(&bytes).is_err(), "{what}");
        }
        let mut long = vec![0x30, 0x26, 0x02, 0x21];
        long.extend_from_slice(&[0x01; 33]);
        long.extend_from_slice(&[0x02, 0x01, 0x01]);
        assert!(der_signature_to_raw(&long)
            .unwrap_err()
            .contains("more than 32"));
    }
}
