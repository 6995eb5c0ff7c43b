//! The cryptography of SCP03 (GlobalPlatform Card Specification v2.3, Amendment D), built on
//! RustCrypto's `aes`, `cmac` and `cbc`: no AES or CMAC of our own.
//!
//! - AES-CMAC (NIST SP 800-38B, RFC 4493) as the MAC and as the PRF of the key derivation;
//! - the NIST SP 800-108 KDF in counter mode with Amendment D's derivation data
//!   (11 bytes 00, the derivation constant, 00, L in bits (2 bytes), the counter i (1 byte), the
//!   context = host challenge || card challenge);
//! - card and host cryptograms (64 bits), session keys S-ENC, S-MAC, S-RMAC (128 bits);
//! - ISO/IEC 9797-1 padding method 2 (80 00 .. 00) and AES-CBC for C-DECRYPTION / R-ENCRYPTION;
//! - the key check value and the DEK encryption of PUT KEY.

use aes::cipher::{
    block_padding::NoPadding, BlockDecryptMut, BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit,
};
use aes::Aes128;
use cmac::{Cmac, Mac};
use zeroize::{Zeroize, Zeroizing};

/// An AES-128 key (SE050 PlatformSCP keys are AES-128).
pub type Key = Zeroizing<[u8; 16]>;

pub const BLOCK: usize = 16;

/// Derivation constants (Amendment D table 4-1).
pub const DERIVE_CARD_CRYPTOGRAM: u8 = 0x00;
pub const DERIVE_HOST_CRYPTOGRAM: u8 = 0x01;
pub const DERIVE_S_ENC: u8 = 0x04;
pub const DERIVE_S_MAC: u8 = 0x06;
pub const DERIVE_S_RMAC: u8 = 0x07;

/// AES-CMAC of the concatenation of `parts`, full 16 bytes.
pub fn cmac(key: &[u8; 16], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Cmac<Aes128> as KeyInit>::new(key.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The SP 800-108 counter-mode KDF with AES-CMAC as PRF and Amendment D's derivation data;
/// `bits` is 64 (cryptograms) or 128 (session keys): one PRF block either way.
pub fn kdf(key: &[u8; 16], constant: u8, bits: u16, context: &[u8]) -> [u8; 16] {
    debug_assert!(bits <= 128);
    let mut data = [0u8; 16];
    data[11] = constant;
    // data[12] is the separation indicator 00.
    data[13..15].copy_from_slice(&bits.to_be_bytes());
    data[15] = 0x01; // counter i: the first (and only) block
    let mut out = cmac(key, &[&data, context]);
    let keep = usize::from(bits / 8);
    out[keep..].zeroize();
    out
}

/// host challenge || card challenge.
pub fn context(host_challenge: &[u8; 8], card_challenge: &[u8; 8]) -> [u8; 16] {
    let mut ctx = [0u8; 16];
    ctx[..8].copy_from_slice(host_challenge);
    ctx[8..].copy_from_slice(card_challenge);
    ctx
}

/// The three session keys of one secure channel session.
pub struct SessionKeys {
    pub s_enc: Key,
    pub s_mac: Key,
    pub s_rmac: Key,
}

impl SessionKeys {
    /// Derived from the static ENC and MAC keys and both challenges.
    pub fn derive(enc: &[u8; 16], mac: &[u8; 16], ctx: &[u8; 16]) -> SessionKeys {
        SessionKeys {
            s_enc: Zeroizing::new(kdf(enc, DERIVE_S_ENC, 128, ctx)),
            s_mac: Zeroizing::new(kdf(mac, DERIVE_S_MAC, 128, ctx)),
            s_rmac: Zeroizing::new(kdf(mac, DERIVE_S_RMAC, 128, ctx)),
        }
    }

    /// The card cryptogram (8 bytes), from S-MAC.
    pub fn card_cryptogram(&self, ctx: &[u8; 16]) -> [u8; 8] {
        first8(&kdf(&self.s_mac, DERIVE_CARD_CRYPTOGRAM, 64, ctx))
    }

    /// The host cryptogram (8 bytes), from S-MAC.
    pub fn host_cryptogram(&self, ctx: &[u8; 16]) -> [u8; 8] {
        first8(&kdf(&self.s_mac, DERIVE_HOST_CRYPTOGRAM, 64, ctx))
    }
}

pub fn first8(block: &[u8; 16]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&block[..8]);
    out
}

/// Constant-time comparison of two MACs or cryptograms.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// ISO/IEC 9797-1 padding method 2: 80, then 00 up to a multiple of 16 (always adds a byte).
pub fn pad(data: &[u8]) -> Zeroizing<Vec<u8>> {
    let padded_len = (data.len() / BLOCK + 1) * BLOCK;
    let mut out = Zeroizing::new(Vec::with_capacity(padded_len));
    out.extend_from_slice(data);
    out.push(0x80);
    out.resize(padded_len, 0x00);
    out
}

/// Removes method-2 padding; `None` when it is not there (a wrong key or a damaged message).
pub fn unpad(data: &[u8]) -> Option<&[u8]> {
    if data.is_empty() || !data.len().is_multiple_of(BLOCK) {
        return None;
    }
    let end = data.iter().rposition(|&b| b != 0x00)?;
    // The padding lies within the last block.
    (data[end] == 0x80 && data.len() - end <= BLOCK).then(|| &data[..end])
}

/// AES-ECB of one block (the IV of C-DECRYPTION / R-ENCRYPTION, key check values).
pub fn encrypt_block(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
    let cipher = Aes128::new(key.into());
    let mut b = aes::Block::clone_from_slice(block);
    cipher.encrypt_block(&mut b);
    b.into()
}

/// AES-CBC encryption of whole blocks in place.
pub fn cbc_encrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) {
    let len = data.len();
    cbc::Encryptor::<Aes128>::new(key.into(), iv.into())
        .encrypt_padded_mut::<NoPadding>(data, len)
        .expect("whole blocks");
}

/// AES-CBC decryption of whole blocks in place; `None` when not a multiple of 16 bytes.
pub fn cbc_decrypt(key: &[u8; 16], iv: &[u8; 16], data: &mut [u8]) -> Option<()> {
    if !data.len().is_multiple_of(BLOCK) {
        return None;
    }
    cbc::Decryptor::<Aes128>::new(key.into(), iv.into())
        .decrypt_padded_mut::<NoPadding>(data)
        .ok()
        .map(|_| ())
}

/// The key check value of a static key: the first 3 bytes of AES(key, 16 x 01)
/// (GP Card Spec v2.3 B.6; NXP's rotation example computes the same).
pub fn key_check_value(key: &[u8; 16]) -> [u8; 3] {
    let out = encrypt_block(key, &[0x01; 16]);
    [out[0], out[1], out[2]]
}

/// A new static key encrypted under the DEK for PUT KEY: one AES block, ECB (= CBC with a zero
/// IV), as NXP's PlatformSCP rotation example does.
pub fn wrap_key(dek: &[u8; 16], key: &[u8; 16]) -> [u8; 16] {
    encrypt_block(dek, key)
}

/// The inverse of [`wrap_key`] (the chip's side of PUT KEY).
pub fn unwrap_key(dek: &[u8; 16], wrapped: &[u8; 16]) -> Key {
    let mut block = Zeroizing::new(*wrapped);
    cbc_decrypt(dek, &[0u8; 16], &mut block[..]).expect("one block");
    block
}

/// Published vectors shared by the tests of this module and of `session`.
#[cfg(test)]
pub(crate) mod tests_support {
    /// pySim's SCP03 AES-128 vectors at security level 0x33:
    /// osmocom/pysim, tests/unittests/test_globalplatform.py, class SCP03_Test_AES128_33
    /// (keyset KEYSET_AES128: ENC 000102..0f, MAC 101112..1f, DEK 202122..2f, KVN 0x30).
    pub mod pysim {
        pub const ENC: &str = "000102030405060708090a0b0c0d0e0f";
        pub const MAC: &str = "101112131415161718191a1b1c1d1e1f";
        pub const DEK: &str = "202122232425262728292a2b2c2d2e2f";
        pub const INIT_UPDATE_CMD: &str = "8050300008fdf38259a1e0de4400";
        pub const INIT_UPDATE_RSP: &str =
            "000000000000000000003003703b1aca81e821f219081cdc01c26b372d000003";
        pub const EXT_AUTH_CMD: &str = "84823300108c36f96bcc00724a4e13ad591d7da3f0";
        pub const GET_EID_CMD_PLAIN: &str = "80E2910006BF3E035C015A00";
        pub const GET_EID_CMD: &str =
            "84e2910018267a85dfe4a98fca6fb0527e0dfecce4914e40401433c87f00";
        pub const GET_EID_RSP_PLAIN: &str = "bf3e125a1089882119900000000000000000000005";
        pub const GET_EID_RSP: &str =
            "f3ba2b1013aa6224f5e1c138d71805c569e5439b47576260b75fc021b25097cb2e68f8a0144975b9";
        /// (plain, wrapped): the four APDU cases sent after GET EID, in that order.
        pub const CASES: [(&str, &str); 4] = [
            ("80F22002", "84f2200208ac6a59024bed84cc"),
            ("80ca006600", "84ca006608409912ad8fb7aed000"),
            (
                "80F220020a4f0212345c054f9f70c5",
                "84f22002185f3dafc3ac14c381536a488bf44e06d056df9d74dbd21e5a",
            ),
            (
                "80f28002024f0000",
                "84f280021865165105be3373347d0424d4400af2ac393f569ec779389e00",
            ),
        ];
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::pysim;
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn key(s: &str) -> [u8; 16] {
        hex(s).try_into().unwrap()
    }

    // RFC 4493 section 4, "Test Vectors": K = 2b7e1516 28aed2a6 abf71588 09cf4f3c.
    // https://www.rfc-editor.org/rfc/rfc4493#section-4
    #[test]
    fn scp03_aes_cmac_rfc4493_vectors() {
        let k = key("2b7e1516 28aed2a6 abf71588 09cf4f3c");
        let msg = hex(
            "6bc1bee2 2e409f96 e93d7e11 7393172a ae2d8a57 1e03ac9c 9eb76fac 45af8e51 \
             30c81c46 a35ce411 e5fbc119 1a0a52ef f69f2445 df4f9b17 ad2b417b e66c3710",
        );
        let cases = [
            (0, "bb1d6929 e9593728 7fa37d12 9b756746"),
            (16, "070a16b4 6b4d4144 f79bdd9d d04a287c"),
            (40, "dfa66747 de9ae630 30ca3261 1497c827"),
            (64, "51f0bebf 7e3b9d92 fc497417 79363cfe"),
        ];
        for (len, expected) in cases {
            assert_eq!(
                cmac(&k, &[&msg[..len]]).to_vec(),
                hex(expected),
                "Mlen = {len}"
            );
        }
        // Split input is the same MAC as whole input.
        assert_eq!(cmac(&k, &[&msg[..7], &msg[7..40]]), cmac(&k, &[&msg[..40]]));
    }

    #[test]
    fn scp03_session_keys_and_cryptograms_match_pysim_vectors() {
        let enc = key(pysim::ENC);
        let mac = key(pysim::MAC);
        let cmd = hex(pysim::INIT_UPDATE_CMD);
        let rsp = hex(pysim::INIT_UPDATE_RSP);
        let host_challenge: [u8; 8] = cmd[5..13].try_into().unwrap();
        let card_challenge: [u8; 8] = rsp[13..21].try_into().unwrap();
        let card_cryptogram = &rsp[21..29];
        let ctx = context(&host_challenge, &card_challenge);
        let keys = SessionKeys::derive(&enc, &mac, &ctx);
        assert_eq!(keys.card_cryptogram(&ctx).to_vec(), card_cryptogram);
        let ext_auth = hex(pysim::EXT_AUTH_CMD);
        assert_eq!(keys.host_cryptogram(&ctx).to_vec(), ext_auth[5..13]);
        // The C-MAC of EXTERNAL AUTHENTICATE (chaining value 16 x 00) checks S-MAC itself.
        let c_mac = cmac(&keys.s_mac, &[&[0u8; 16], &ext_auth[..13]]);
        assert_eq!(c_mac[..8], ext_auth[13..21]);
        // Swapping the roles of the two cryptograms must not verify.
        assert_ne!(keys.host_cryptogram(&ctx).to_vec(), card_cryptogram);
    }

    #[test]
    fn scp03_padding_method_2() {
        assert_eq!(*pad(&[]), {
            let mut v = vec![0u8; 16];
            v[0] = 0x80;
            v
        });
        assert_eq!(pad(&[1; 15]).len(), 16);
        assert_eq!(pad(&[1; 16]).len(), 32);
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).map(|b| b | 1).collect();
            assert_eq!(unpad(&pad(&data)), Some(&data[..]), "len {len}");
        }
        assert_eq!(unpad(&[0u8; 16]), None, "no 80 marker");
        assert_eq!(unpad(&[1u8; 16]), None, "no padding at all");
        let mut two_blocks = vec![0u8; 32];
        two_blocks[3] = 0x80;
        assert_eq!(unpad(&two_blocks), None, "padding longer than a block");
    }

    // FIPS-197 appendix C.1 (AES-128): the block cipher under the KCV, the IVs and key wrapping.
    #[test]
    fn scp03_aes_block_fips197_vector_and_key_wrap() {
        let k = key("000102030405060708090a0b0c0d0e0f");
        let pt = key("00112233445566778899aabbccddeeff");
        assert_eq!(
            encrypt_block(&k, &pt).to_vec(),
            hex("69c4e0d86a7b0430d8cdb78070b4c55a")
        );
        let dek = key(pysim::DEK);
        let wrapped = wrap_key(&dek, &k);
        assert_ne!(wrapped, k);
        assert_eq!(*unwrap_key(&dek, &wrapped), k);
        assert_eq!(key_check_value(&k)[..], encrypt_block(&k, &[1; 16])[..3]);
    }
}
