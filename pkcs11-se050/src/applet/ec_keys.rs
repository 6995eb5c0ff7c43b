//! NIST P-256 and Ed25519 key pairs on the chip: curve set-up, generation, public keys, P-256
//! ECDH (issue 22).
//!
//! The bytes follow NXP's middleware (NXP/plug-and-trust @ 9721d640):
//! - generation: `sss_se05x_key_store_generate_key` first makes sure the curve exists
//!   (`sss_se05x_create_curve_if_needed`: Ed25519 is always there; P-256 is looked up with
//!   ReadECCurveList `80 02 0B 25` and, if not set, created with CreateECCurve `80 01 0B 04` and
//!   five SetECCurveParam `80 01 0B 40`, the values of `se05x_ecc_curves_values.h` in the order
//!   of `PROCESS_ECC_CURVE`: a, b, G, n, prime), then sends WriteECKey `80 01 61 00`
//!   [11 policy] 41 id 42 curve, as for X25519;
//! - ReadObject of a P-256 pair answers the uncompressed point `04 || X || Y` (65 bytes), used as
//!   it is; of an Ed25519 pair the 32-byte public key in the chip's reversed order
//!   (`sss_se05x_key_store_get_key` reverses `kSE05x_ECCurve_ECC_ED_25519` as it does X25519);
//! - P-256 ECDH is ECDHGenerateSharedSecret `80 03 01 0F` with the peer's uncompressed point,
//!   answered by the 32-byte x coordinate, neither of them reversed (`sss_se05x_derive_key_dh`
//!   reverses only Montgomery keys).

use super::protocol::*;
use super::{bad, policy, tag1, ObjectId, PolicyEntry, Se050, Se050Error};
use crate::apdu::tlv;
use crate::t1::ApduTransport;
use zeroize::Zeroizing;

/// The curves this driver makes keys on besides X25519.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcCurve {
    NistP256,
    Ed25519,
}

impl EcCurve {
    /// The applet's curve id.
    pub fn id(self) -> u8 {
        match self {
            EcCurve::NistP256 => CURVE_NIST_P256,
            EcCurve::Ed25519 => CURVE_ED25519,
        }
    }

    /// Length of the public key at this API: the uncompressed point, or RFC 8032's 32 bytes.
    pub fn public_len(self) -> usize {
        match self {
            EcCurve::NistP256 => 65,
            EcCurve::Ed25519 => 32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EcCurve::NistP256 => "NIST P-256",
            EcCurve::Ed25519 => "Ed25519",
        }
    }
}

/// NIST P-256's domain parameters (FIPS 186-4 D.1.2.3 / SEC 2 secp256r1), big-endian, as
/// SetECCurveParam takes them. Checked against RustCrypto's p256 in the tests.
pub mod p256_params {
    pub const PRIME: [u8; 32] =
        hex32("FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF");
    pub const A: [u8; 32] =
        hex32("FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFC");
    pub const B: [u8; 32] =
        hex32("5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B");
    pub const GX: [u8; 32] =
        hex32("6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296");
    pub const GY: [u8; 32] =
        hex32("4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5");
    pub const ORDER: [u8; 32] =
        hex32("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");

    /// The generator as SetECCurveParam's G takes it: `04 || x || y`.
    pub fn generator() -> Vec<u8> {
        let mut g = vec![0x04];
        g.extend_from_slice(&GX);
        g.extend_from_slice(&GY);
        g
    }

    const fn hex32(text: &str) -> [u8; 32] {
        const fn digit(c: u8) -> u8 {
            match c {
                b'0'..=b'9' => c - b'0',
                b'A'..=b'F' => c - b'A' + 10,
                _ => panic!("not an upper-case hex digit"),
            }
        }
        let bytes = text.as_bytes();
        assert!(bytes.len() == 64);
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            out[i] = digit(bytes[2 * i]) << 4 | digit(bytes[2 * i + 1]);
            i += 1;
        }
        out
    }
}

impl<T: ApduTransport> Se050<T> {
    /// Whether the chip has the curve's parameters (ReadECCurveList). Ed25519 is built in.
    pub fn curve_present(&mut self, curve: EcCurve) -> Result<bool, Se050Error> {
        if curve == EcCurve::Ed25519 {
            return Ok(true);
        }
        let name = || "ReadECCurveList".to_string();
        let response = self.exchange(&name, INS_READ, P1_CURVE, P2_LIST, Vec::new(), Some(256))?;
        let list = tag1(&name, &response)?;
        // Entry i is curve id i + 1.
        match list.get(curve.id() as usize - 1) {
            Some(&CURVE_SET) => Ok(true),
            Some(&CURVE_NOT_SET) => Ok(false),
            Some(other) => Err(bad(
                &name,
                format!(
                    "entry {other:02X} for curve {:02X}, expected 01 or 02",
                    curve.id()
                ),
            )),
            None => Err(bad(
                &name,
                format!(
                    "list of {} curves has no entry for {:02X}",
                    list.len(),
                    curve.id()
                ),
            )),
        }
    }

    /// The curve id of the EC key at `id` (GetECCurveId `80 02 0B 36`, NXP
    /// `Se05x_API_GetECCurveId`: 41 id -> 41 curve id, one byte).
    pub fn ec_curve_id(&mut self, id: ObjectId) -> Result<u8, Se050Error> {
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        let name = || format!("GetECCurveId {id}");
        let response = self.exchange(&name, INS_READ, P1_CURVE, P2_CURVE_ID, data, Some(256))?;
        match tag1(&name, &response)? {
            [curve] => Ok(*curve),
            other => Err(bad(
                &name,
                format!("curve id of {} bytes, expected 1", other.len()),
            )),
        }
    }

    /// Creates P-256 on the chip (CreateECCurve and its five parameters), as NXP's middleware
    /// does before the first P-256 key. Only called when [`Se050::curve_present`] said no.
    fn create_p256(&mut self) -> Result<(), Se050Error> {
        let curve = CURVE_NIST_P256;
        let name = || "CreateECCurve NIST P-256".to_string();
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &[curve]);
        self.exchange(&name, INS_WRITE, P1_CURVE, P2_CREATE, data, None)?;
        let generator = p256_params::generator();
        let params: [(u8, &[u8]); 5] = [
            (CURVE_PARAM_A, &p256_params::A),
            (CURVE_PARAM_B, &p256_params::B),
            (CURVE_PARAM_G, &generator),
            (CURVE_PARAM_N, &p256_params::ORDER),
            (CURVE_PARAM_PRIME, &p256_params::PRIME),
        ];
        for (param, value) in params {
            let name = || format!("SetECCurveParam NIST P-256 parameter {param:02X}");
            let mut data = Vec::new();
            tlv::push(&mut data, TAG_1, &[curve]);
            tlv::push(&mut data, TAG_2, &[param]);
            tlv::push(&mut data, TAG_3, value);
            self.exchange(&name, INS_WRITE, P1_CURVE, P2_PARAM, data, None)?;
        }
        Ok(())
    }

    /// Generates a key pair on `curve` inside the chip at `id`, restricted by `policy` (empty:
    /// none). Creates the curve first when the chip does not have it.
    pub fn generate_ec_with_policy(
        &mut self,
        id: ObjectId,
        curve: EcCurve,
        policy: &[PolicyEntry],
    ) -> Result<(), Se050Error> {
        id.check_user_writable()?;
        // A chip that refuses ReadECCurveList stops the generation here: NXP's middleware
        // (`sss_se05x_create_curve_if_needed`) returns the refusal too, and no key is made on a
        // guess about the chip's curves.
        if !self.curve_present(curve)? {
            self.create_p256()?;
        }
        let mut data = Vec::new();
        if !policy.is_empty() {
            tlv::push(&mut data, TAG_POLICY, &policy::encode(policy));
        }
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        tlv::push(&mut data, TAG_2, &[curve.id()]);
        let name = || format!("WriteECKey (generate {}) {id}", curve.name());
        self.exchange(
            &name,
            INS_WRITE,
            P1_KEY_PAIR | P1_EC,
            P2_DEFAULT,
            data,
            None,
        )?;
        Ok(())
    }

    /// The public key of the pair at `id` on `curve`: P-256 as `04 || X || Y`, Ed25519 in
    /// RFC 8032 order (the chip's is reversed). An answer of another shape is refused.
    pub fn read_ec_public(&mut self, id: ObjectId, curve: EcCurve) -> Result<Vec<u8>, Se050Error> {
        let mut value = self.read_object(id)?;
        let name = || format!("ReadObject {id}");
        if value.len() != curve.public_len() {
            return Err(bad(
                &name,
                format!(
                    "{} bytes where a {} public key has {}",
                    value.len(),
                    curve.name(),
                    curve.public_len()
                ),
            ));
        }
        match curve {
            EcCurve::NistP256 if value[0] != 0x04 => {
                return Err(bad(
                    &name,
                    format!(
                        "P-256 point starts with {:02X}, not 04 (uncompressed)",
                        value[0]
                    ),
                ))
            }
            EcCurve::NistP256 => {}
            EcCurve::Ed25519 => value.reverse(),
        }
        Ok(value)
    }

    /// P-256 ECDH of the private key at `id` with the peer's uncompressed point `04 || X || Y`:
    /// the shared x coordinate (32 bytes).
    pub fn ecdh_p256(
        &mut self,
        id: ObjectId,
        peer_point: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, Se050Error> {
        if peer_point.len() != 65 || peer_point[0] != 0x04 {
            return Err(Se050Error::InvalidArgument(format!(
                "a P-256 peer key is the 65-byte uncompressed point 04 || X || Y, not {} bytes",
                peer_point.len()
            )));
        }
        let mut data = Vec::with_capacity(6 + 67);
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        tlv::push(&mut data, TAG_2, peer_point);
        let name = || format!("ECDHGenerateSharedSecret (P-256) {id}");
        let response = self.exchange(&name, INS_CRYPTO, P1_EC, P2_DH, data, Some(256))?;
        let value = tag1(&name, &response)?;
        let secret: [u8; 32] = value.try_into().map_err(|_| {
            bad(
                &name,
                format!("shared secret of {} bytes, expected 32", value.len()),
            )
        })?;
        Ok(Zeroizing::new(secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p256_parameters_are_those_of_rustcrypto() {
        use p256::elliptic_curve::bigint::ArrayEncoding;
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::elliptic_curve::Curve;
        let g = p256::AffinePoint::GENERATOR.to_encoded_point(false);
        assert_eq!(g.as_bytes(), p256_params::generator().as_slice());
        let order = p256::NistP256::ORDER.to_be_byte_array();
        assert_eq!(order.as_slice(), p256_params::ORDER);
        // a = p - 3
        let mut a = p256_params::PRIME;
        a[31] -= 3;
        assert_eq!(a, p256_params::A);
    }
}
