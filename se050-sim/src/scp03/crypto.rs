//! The card side's cryptography for SCP03 (GlobalPlatform Card Specification v2.3 Amendment D),
//! on RustCrypto's `aes`, `cmac` and `cbc`:
//!
//! - AES-CMAC (NIST SP 800-38B; RFC 4493) for C-MAC, R-MAC and as the PRF of the KDF;
//! - the KDF of Amendment D 6.2.2: NIST SP 800-108 in counter mode, one PRF call per 128 bits,
//!   on the derivation data `label(11 x 00 || constant) || 00 || L (2 bytes, bits) || i (1 byte)
//!   || context`, the context being host challenge || card challenge;
//! - derivation constants (Amendment D table 6-1): 00 card cryptogram, 01 host cryptogram,
//!   04 S-ENC, 06 S-MAC, 07 S-RMAC;
//! - ISO/IEC 9797-1 padding method 2 and AES-CBC for C-DECRYPTION / R-ENCRYPTION;
//! - the AES key check value (GP Card Specification B.6: AES of 16 bytes 01, first 3 bytes).

use aes::cipher::{
    block_padding::NoPadding, BlockDecrypt, BlockDecryptMut, BlockEncrypt, BlockEncryptMut,
    KeyInit, KeyIvInit,
};
use aes::Aes128;
use cmac::{Cmac, Mac};
use zeroize::Zeroizing;

/// An AES-128 key (SE050 PlatformSCP03 keys are AES-128).
pub type Key = Zeroizing<[u8; 16]>;

pub const CARD_CRYPTOGRAM: u8 = 0x00;
pub const HOST_CRYPTOGRAM: u8 = 0x01;
pub const S_ENC: u8 = 0x04;
pub const S_MAC: u8 = 0x06;
pub const S_RMAC: u8 = 0x07;

/// AES-CMAC over the concatenation of `parts`.
pub fn cmac(key: &[u8; 16], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Cmac<Aes128> as KeyInit>::new(key.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// One output block of the Amendment D KDF; `bits` (64 or 128) is L, also the bytes kept.
pub fn derive(key: &[u8; 16], constant: u8, bits: u16, context: &[u8; 16]) -> Zeroizing<[u8; 16]> {
    let [l_hi, l_lo] = bits.to_be_bytes();
    let mut data = [0u8; 16];
    data[11] = constant;
    data[12] = 0x00; // separation indicator
    data[13] = l_hi;
    data[14] = l_lo;
    data[15] = 0x01; // i: the first block
    let mut out = Zeroizing::new(cmac(key, &[&data, context]));
    let keep = usize::from(bits / 8).min(16);
    out[keep..].fill(0);
    out
}

/// The session keys of one channel, from the static ENC and MAC keys.
pub struct SessionKeys {
    pub s_enc: Key,
    pub s_mac: Key,
    pub s_rmac: Key,
}

impl SessionKeys {
    pub fn derive(enc: &[u8; 16], mac: &[u8; 16], context: &[u8; 16]) -> SessionKeys {
        SessionKeys {
            s_enc: derive(enc, S_ENC, 128, context),
            s_mac: derive(mac, S_MAC, 128, context),
            s_rmac: derive(mac, S_RMAC, 128, context),
        }
    }

    /// A cryptogram (64 bits) under S-MAC.
    pub fn cryptogram(&self, constant: u8, context: &[u8; 16]) -> [u8; 8] {
        let block = derive(&self.s_mac, constant, 64, context);
        block[..8].try_into().expect("8 bytes")
    }
}

/// Equality that reads every byte (MACs, cryptograms).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn encrypt_block(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
    let mut b = aes::Block::from(*block);
    Aes128::new(key.into()).encrypt_block(&mut b);
    b.into()
}

pub fn decrypt_block(key: &[u8; 16], block: &[u8; 16]) -> Zeroizing<[u8; 16]> {
    let mut b = aes::Block::from(*block);
    Aes128::new(key.into()).decrypt_block(&mut b);
    let out = Zeroizing::new(b.into());
    b.fill(0);
    out
}

/// ISO/IEC 9797-1 method 2: 80 then 00s to a whole number of blocks (always at least 80).
pub fn pad(data: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity((data.len() / 16 + 1) * 16));
    out.extend_from_slice(data);
    out.push(0x80);
    while out.len() % 16 != 0 {
        out.push(0x00);
    }
    out
}

/// The data before method-2 padding; None when the padding is not there.
pub fn unpad(padded: &[u8]) -> Option<&[u8]> {
    if padded.is_empty() || !padded.len().is_multiple_of(16) {
        return None;
    }
    let marker = padded.iter().rposition(|&b| b != 0)?;
    (padded[marker] == 0x80 && padded.len() - marker <= 16).then(|| &padded[..marker])
}

/// AES-CBC encryption of whole blocks in place.
pub fn cbc_encrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    let n = data.len();
    cbc::Encryptor::<Aes128>::new(key.into(), iv.into())
        .encrypt_padded_mut::<NoPadding>(data, n)
        .expect("whole blocks");
}

/// AES-CBC decryption of whole blocks in place; None when not whole blocks.
pub fn cbc_decrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) -> Option<()> {
    if !data.len().is_multiple_of(16) {
        return None;
    }
    cbc::Decryptor::<Aes128>::new(key.into(), iv.into())
        .decrypt_padded_mut::<NoPadding>(data)
        .ok()
        .map(drop)
}

/// The key check value of an AES key.
pub fn check_value(key: &[u8; 16]) -> [u8; 3] {
    let out = encrypt_block(key, &[0x01; 16]);
    [out[0], out[1], out[2]]
}

#[cfg(test)]
pub(crate) fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4493_aes_cmac_vectors() {
        // RFC 4493 section 4, K = 2b7e1516 28aed2a6 abf71588 09cf4f3c.
        let key: [u8; 16] = hex("2b7e151628aed2a6abf7158809cf4f3c").try_into().unwrap();
        let m = hex(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
             30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        );
        assert_eq!(
            cmac(&key, &[]).to_vec(),
            hex("bb1d6929e95937287fa37d129b756746")
        );
        assert_eq!(
            cmac(&key, &[&m[..16]]).to_vec(),
            hex("070a16b46b4d4144f79bdd9dd04a287c")
        );
        assert_eq!(
            cmac(&key, &[&m[..40]]).to_vec(),
            hex("dfa66747de9ae63030ca32611497c827")
        );
        assert_eq!(
            cmac(&key, &[&m[..20], &m[20..]]).to_vec(),
            hex("51f0bebf7e3b9d92fc49741779363cfe")
        );
    }

    #[test]
    fn padding_by_hand() {
        assert_eq!(pad(&[]).to_vec(), [vec![0x80], vec![0; 15]].concat());
        assert_eq!(pad(&[1; 16]).len(), 32);
        assert_eq!(unpad(&pad(&[1, 2, 3])), Some(&[1, 2, 3][..]));
        assert_eq!(unpad(&[0; 16]), None);
        assert_eq!(
            unpad(&[[0x80].as_slice(), &[0; 31]].concat()),
            None,
            "more than a block"
        );
    }

    #[test]
    fn key_check_value_and_block_round_trip() {
        let key = [0x40u8; 16];
        let block = [7u8; 16];
        assert_eq!(*decrypt_block(&key, &encrypt_block(&key, &block)), block);
        assert_eq!(check_value(&key), encrypt_block(&key, &[1; 16])[..3]);
    }
}
