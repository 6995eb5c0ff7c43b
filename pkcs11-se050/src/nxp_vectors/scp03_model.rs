//! NXP's PlatformSCP03 steps restated on RustCrypto's primitives, to play the card against the
//! host's `Scp03Transport` (whose host challenge is random, so no fixed vector covers its
//! handshake). Written from NXP's functions, not from the host's scp03 code:
//! `nxScp03_setDerivationData` / `nxScp03_Generate_SessionKey` (KDF), `nxScp03_GP_ExternalAuthenticate`,
//! `se05x_Transform_scp` (wrap, no applet session), `nxpSCP03_Get_ResponseICV` and the
//! counter rule of `nxpSCP03_Decrypt_ResponseAPDU`. `model_reproduces_the_pinned_session`
//! checks it against `derive.py`'s pinned bytes.

use aes::cipher::{block_padding::NoPadding, BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit};
use aes::Aes128;
use cmac::{Cmac, Mac};

pub(super) fn cmac(key: &[u8; 16], data: &[u8]) -> [u8; 16] {
    let mut mac = <Cmac<Aes128> as KeyInit>::new(key.into());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// 11 x 00, constant, 00, L (bits, 2 bytes), 01, context.
fn kdf(key: &[u8; 16], constant: u8, bits: u16, context: &[u8]) -> [u8; 16] {
    let mut input = vec![0u8; 11];
    input.extend_from_slice(&[constant, 0x00]);
    input.extend_from_slice(&bits.to_be_bytes());
    input.push(0x01);
    input.extend_from_slice(context);
    cmac(key, &input)
}

fn aes_block(key: &[u8; 16], block: [u8; 16]) -> [u8; 16] {
    let mut b = aes::Block::from(block);
    Aes128::new(key.into()).encrypt_block(&mut b);
    b.into()
}

fn cbc_encrypt_padded(key: &[u8; 16], iv: [u8; 16], data: &[u8]) -> Vec<u8> {
    let mut buf = data.to_vec();
    buf.push(0x80);
    while !buf.len().is_multiple_of(16) {
        buf.push(0x00);
    }
    let len = buf.len();
    cbc::Encryptor::<Aes128>::new(key.into(), &iv.into())
        .encrypt_padded_mut::<NoPadding>(&mut buf, len)
        .expect("whole blocks");
    buf
}

/// One open session as NXP's host code and the card both track it.
pub(super) struct NxpSession {
    s_enc: [u8; 16],
    s_mac: [u8; 16],
    s_rmac: [u8; 16],
    pub mcv: [u8; 16],
    pub counter: u128,
    /// The card cryptogram the card sends, and NXP's EXTERNAL AUTHENTICATE.
    pub card_cryptogram: [u8; 8],
    pub external_authenticate: Vec<u8>,
}

impl NxpSession {
    pub fn open(enc: &[u8; 16], mac: &[u8; 16], host: &[u8], card: &[u8]) -> NxpSession {
        let ctx = [host, card].concat();
        let s_mac = kdf(mac, 0x06, 128, &ctx);
        let mut external_authenticate = vec![0x84, 0x82, 0x33, 0x00, 0x10];
        external_authenticate.extend_from_slice(&kdf(&s_mac, 0x01, 64, &ctx)[..8]);
        let mcv = cmac(&s_mac, &[&[0u8; 16][..], &external_authenticate].concat());
        external_authenticate.extend_from_slice(&mcv[..8]);
        NxpSession {
            s_enc: kdf(enc, 0x04, 128, &ctx),
            s_mac,
            s_rmac: kdf(mac, 0x07, 128, &ctx),
            mcv,
            counter: 1,
            card_cryptogram: kdf(&s_mac, 0x00, 64, &ctx)[..8].try_into().unwrap(),
            external_authenticate,
        }
    }

    /// `se05x_Transform_scp` without an applet session: NXP's wire bytes.
    pub fn wrap(&mut self, header: [u8; 4], data: &[u8], hasle: bool) -> Vec<u8> {
        let encrypted = if data.is_empty() {
            Vec::new()
        } else {
            let iv = aes_block(&self.s_enc, self.counter.to_be_bytes());
            cbc_encrypt_padded(&self.s_enc, iv, data)
        };
        let lc = encrypted.len() + 8;
        let mut out = vec![header[0] | 0x04, header[1], header[2], header[3]];
        if lc < 0xFF && !hasle {
            out.push(lc as u8);
        } else {
            out.extend_from_slice(&[0x00, (lc >> 8) as u8, lc as u8]);
        }
        out.extend_from_slice(&encrypted);
        self.mcv = cmac(&self.s_mac, &[&self.mcv[..], &out].concat());
        out.extend_from_slice(&self.mcv[..8]);
        if hasle {
            out.extend_from_slice(&[0x00, 0x00]);
        }
        out
    }

    /// The card taking a wrapped command: its C-MAC (over chaining value, header, Lc as sent,
    /// encrypted data) must verify; it becomes the chaining value.
    pub fn receive(&mut self, command: &[u8]) {
        let split = super::split(command);
        let lc_len = if split.extended { 3 } else { 1 };
        let macd_len = 4 + lc_len + split.data.len() - 8;
        let mac = cmac(&self.s_mac, &[&self.mcv[..], &command[..macd_len]].concat());
        assert_eq!(
            mac[..8],
            split.data[split.data.len() - 8..],
            "C-MAC of {command:02X?}"
        );
        self.mcv = mac;
    }

    /// The card's answer `data || 90 00` to the command just wrapped, then NXP's counter step.
    pub fn answer(&mut self, data: &[u8], command_had_data: bool) -> Vec<u8> {
        let counter = if command_had_data {
            self.counter
        } else {
            self.counter - 1
        };
        let mut block = counter.to_be_bytes();
        block[0] = 0x80;
        let mut out = if data.is_empty() {
            Vec::new()
        } else {
            cbc_encrypt_padded(&self.s_enc, aes_block(&self.s_enc, block), data)
        };
        let rmac = cmac(&self.s_rmac, &[&self.mcv[..], &out, &[0x90, 0x00]].concat());
        out.extend_from_slice(&rmac[..8]);
        out.extend_from_slice(&[0x90, 0x00]);
        if command_had_data {
            self.counter += 1;
        }
        out
    }
}
