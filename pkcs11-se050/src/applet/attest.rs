//! The attested read (ReadObject with INS_ATTEST, `80 22 00 00`): an object's public part and
//! attributes, the chip's unique id and the caller's freshness value, signed by the attestation
//! key NXP provisions, and that key's certificate as stored on the chip.
//!
//! Sources (NXP/plug-and-trust @ 9721d640): `se05x_APDU_impl.h` `Se05x_API_ReadObject_W_Attst`
//! (applet 3.x) / `_V2` (7.2+): tags 41 object id, [42 offset, 43 length: left out at 0,
//! `TLVSET_U16Optional`], 45 attestation key id, 46 attestation algorithm, 47 freshness (16),
//! sent Case 4 extended; `fsl_sss_se05x_apis.c` `sss_se05x_key_store_get_key_attst`
//! (`kSE05x_AttestationAlgo_EC_SHA_256` = 0x21 for an ECC attestation key) and
//! `SSS_SE05X_RESID_ATTESTATION_KEY` (0xF0000012, the ECC key; its certificate is the binary
//! file 0xF0000013, AN12436). The answer is kept as the chip returned it (its TLVs, and the
//! status word 9000 that let it through): the verifier (wg-pkcs11's `attestation`) parses it
//! and checks what the signature covers; this layer only checks it is an answer at all.

use super::*;
use crate::apdu::command::CommandApdu;

/// kSE05x_INS_READ | kSE05x_INS_ATTEST.
pub const INS_READ_WITH_ATTESTATION: u8 = 0x22;
/// SSS_SE05X_RESID_ATTESTATION_KEY: the ECC (NIST P-256) attestation key NXP provisions.
pub const ATTESTATION_KEY: u32 = 0xF000_0012;
/// Its certificate (X.509 DER in a binary file), AN12436.
pub const ATTESTATION_CERTIFICATE: u32 = 0xF000_0013;
/// kSE05x_AttestationAlgo_EC_SHA_256.
pub const ATTESTATION_ALGO_EC_SHA_256: u8 = 0x21;

/// A chunk whose answer (`41 82 HH LL` + data) fits 256 bytes.
const SESSION_READ_CHUNK: usize = 252;

/// One attested read, as exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedRead {
    /// The applet's major version (3: values-only signature; 7: the 7.2 layout).
    pub applet_major: u8,
    /// The command APDU as sent to the applet (inside a UserID session: the inner command).
    pub command: Vec<u8>,
    /// The chip's answer: its data, then 90 00.
    pub response: Vec<u8>,
}

/// The attested ReadObject command for `id`, as NXP's builder makes it (Le: the most the
/// applet answers, as for ReadObject).
pub fn attested_read_command(id: ObjectId, freshness: &[u8; 16]) -> CommandApdu {
    let mut data = Vec::with_capacity(33);
    tlv::push(&mut data, TAG_1, &id.to_be_bytes());
    tlv::push(&mut data, 0x45, &ATTESTATION_KEY.to_be_bytes());
    tlv::push(&mut data, 0x46, &[ATTESTATION_ALGO_EC_SHA_256]);
    tlv::push(&mut data, 0x47, freshness);
    CommandApdu::new(
        CLA_IOT,
        INS_READ_WITH_ATTESTATION,
        P1_DEFAULT,
        P2_DEFAULT,
        data,
        Some(MAX_APDU_PAYLOAD),
    )
}

impl<T: ApduTransport> Se050<T> {
    /// The attested read of `id` with the caller's `freshness`.
    pub fn read_with_attestation(
        &mut self,
        id: ObjectId,
        freshness: &[u8; 16],
    ) -> Result<AttestedRead, Se050Error> {
        let apdu = attested_read_command(id, freshness);
        let command = apdu.wire().to_vec();
        let name = || format!("ReadObject with attestation {id}");
        let data = self.send(&name, &apdu)?;
        Tlvs::parse(&data).map_err(|e| bad(&name, e.to_string()))?;
        let mut response = data.to_vec();
        response.extend_from_slice(&[0x90, 0x00]);
        Ok(AttestedRead {
            applet_major: self.version().major,
            command,
            response,
        })
    }

    /// The attestation key's certificate chain as the chip holds it (its certificate). Read
    /// in chunks whose answer fits a short Le, because inside a UserID session every answer
    /// comes back through ProcessSessionCmd, which the host sends with Le 256 (session.rs).
    pub fn attestation_certificates(&mut self) -> Result<Vec<Vec<u8>>, Se050Error> {
        let id = ObjectId::new(ATTESTATION_CERTIFICATE).expect("not 0");
        let size = self.read_size(id)?;
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let offset = out.len();
            let chunk = (size - offset).min(SESSION_READ_CHUNK);
            let mut data = Vec::new();
            tlv::push(&mut data, TAG_1, &id.to_be_bytes());
            tlv::push(&mut data, TAG_2, &(offset as u16).to_be_bytes());
            tlv::push(&mut data, TAG_3, &(chunk as u16).to_be_bytes());
            let name = || format!("ReadObject {id} at offset {offset}");
            self.read_chunk(&name, INS_READ, P2_DEFAULT, data, chunk, &mut out)?;
        }
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_bytes() {
        let id = ObjectId::new(0x7000_0010).unwrap();
        let apdu = attested_read_command(id, &[0xA5; 16]);
        let mut expected = vec![0x80, 0x22, 0x00, 0x00, 0x00, 0x00, 0x21];
        expected.extend_from_slice(&[0x41, 0x04, 0x70, 0x00, 0x00, 0x10]);
        expected.extend_from_slice(&[0x45, 0x04, 0xF0, 0x00, 0x00, 0x12]);
        expected.extend_from_slice(&[0x46, 0x01, 0x21, 0x47, 0x10]);
        expected.extend_from_slice(&[0xA5; 16]);
        expected.extend_from_slice(&[0x03, 0x79]);
        assert_eq!(apdu.wire().to_vec(), expected);
    }
}
