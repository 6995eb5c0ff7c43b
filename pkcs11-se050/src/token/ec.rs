//! CKA_EC_PARAMS and CKA_EC_POINT for X25519 (Montgomery) keys.
//!
//! Inputs are accepted in every form tools are known to send; outputs follow the configuration.

use super::error::{refuse, Result};
use crate::config::EcPointFormat;
use pkcs11_sys::*;

/// RFC 8410 id-X25519 (1.3.101.110) as a DER OBJECT IDENTIFIER.
pub const OID_X25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x6E];
/// The old GnuPG OID for Curve25519 (1.3.6.1.4.1.3029.1.5.1).
pub const OID_GNUPG_CURVE25519: &[u8] = &[
    0x06, 0x0A, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01,
];
/// What this module reports: the RFC 8410 OID (PKCS#11 3.1 allows it for Montgomery keys, and
/// OpenSC 0.23 can only print an OID: it shows a curve name as a nonsense OID).
pub const EC_PARAMS_CURVE25519: &[u8] = OID_X25519;

/// Other curves a caller might ask for, to answer CKR_CURVE_NOT_SUPPORTED rather than "invalid".
const OTHER_CURVE_OIDS: &[&[u8]] = &[
    &[0x06, 0x03, 0x2B, 0x65, 0x6F], // X448
    &[0x06, 0x03, 0x2B, 0x65, 0x70], // Ed25519
    &[0x06, 0x03, 0x2B, 0x65, 0x71], // Ed448
];

/// Checks that CKA_EC_PARAMS names Curve25519.
pub fn check_ec_params(params: &[u8]) -> Result<()> {
    if params == OID_X25519 || params == OID_GNUPG_CURVE25519 {
        return Ok(());
    }
    if let Some(name) = printable_string(params) {
        if name.eq_ignore_ascii_case(b"curve25519") || name.eq_ignore_ascii_case(b"x25519") {
            return Ok(());
        }
        return Err(refuse(
            CKR_CURVE_NOT_SUPPORTED,
            format_args!(
                "CKA_EC_PARAMS names curve {:?}; only curve25519 (X25519) is supported",
                String::from_utf8_lossy(name)
            ),
        ));
    }
    if OTHER_CURVE_OIDS.contains(&params) || params.first() == Some(&0x06) {
        return Err(refuse(
            CKR_CURVE_NOT_SUPPORTED,
            format_args!("CKA_EC_PARAMS {} is not X25519", hex(params)),
        ));
    }
    Err(refuse(
        CKR_DOMAIN_PARAMS_INVALID,
        format_args!(
            "CKA_EC_PARAMS {} is neither an OID nor a curve name (expected 06 03 2B 65 6E or \
             PrintableString \"curve25519\")",
            hex(params)
        ),
    ))
}

/// The contents of a PrintableString (tag 0x13), including the form Debian 12's pkcs11-tool
/// (OpenSC 0.23) sends: `13 0B "curve25519"`, a length one larger than the 10 bytes that follow.
fn printable_string(der: &[u8]) -> Option<&[u8]> {
    match der {
        [0x13, len, rest @ ..] if (*len as usize) == rest.len() => Some(rest),
        [0x13, len, rest @ ..] if (*len as usize) == rest.len() + 1 && rest == b"curve25519" => {
            Some(rest)
        }
        _ => None,
    }
}

/// CKA_EC_POINT of a public key in the configured form.
pub fn encode_point(public: &[u8; 32], format: EcPointFormat) -> Vec<u8> {
    match format {
        EcPointFormat::Raw => public.to_vec(),
        EcPointFormat::Der => {
            let mut v = Vec::with_capacity(34);
            v.extend_from_slice(&[0x04, 0x20]);
            v.extend_from_slice(public);
            v
        }
    }
}

/// A peer public key as raw 32 bytes or a DER OCTET STRING around them.
pub fn decode_point(bytes: &[u8]) -> Option<[u8; 32]> {
    match bytes.len() {
        32 => bytes.try_into().ok(),
        34 if bytes[0] == 0x04 && bytes[1] == 0x20 => bytes[2..].try_into().ok(),
        _ => None,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_spelling_of_curve25519_is_accepted() {
        check_ec_params(OID_X25519).unwrap();
        check_ec_params(OID_GNUPG_CURVE25519).unwrap();
        check_ec_params(b"\x13\x0acurve25519").unwrap();
        check_ec_params(b"\x13\x06X25519").unwrap();
        check_ec_params(b"\x13\x0bcurve25519").unwrap(); // Debian 12 pkcs11-tool
        check_ec_params(EC_PARAMS_CURVE25519).unwrap();
    }

    #[test]
    fn other_curves_and_garbage_are_refused() {
        let ed = check_ec_params(&[0x06, 0x03, 0x2B, 0x65, 0x70]).unwrap_err();
        assert_eq!(ed.rv(), CKR_CURVE_NOT_SUPPORTED);
        let p256 = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
        assert_eq!(
            check_ec_params(&p256).unwrap_err().rv(),
            CKR_CURVE_NOT_SUPPORTED
        );
        assert_eq!(
            check_ec_params(b"\x13\x05edwar").unwrap_err().rv(),
            CKR_CURVE_NOT_SUPPORTED
        );
        assert_eq!(
            check_ec_params(b"\x13\x0bcurve2551").unwrap_err().rv(),
            CKR_DOMAIN_PARAMS_INVALID
        );
        assert_eq!(
            check_ec_params(b"").unwrap_err().rv(),
            CKR_DOMAIN_PARAMS_INVALID
        );
    }

    #[test]
    fn points_round_trip_in_both_forms() {
        let key = [7u8; 32];
        let der = encode_point(&key, EcPointFormat::Der);
        assert_eq!(&der[..2], &[0x04, 0x20]);
        assert_eq!(decode_point(&der), Some(key));
        assert_eq!(
            decode_point(&encode_point(&key, EcPointFormat::Raw)),
            Some(key)
        );
        assert_eq!(decode_point(&[0x04, 0x20, 1]), None);
        assert_eq!(decode_point(&[0u8; 33]), None);
        let mut bad = der.clone();
        bad[1] = 0x21;
        assert_eq!(decode_point(&bad), None);
    }
}
