//! Secure messaging of one open channel at security level 0x33 (C-MAC, C-DECRYPTION, R-MAC,
//! R-ENCRYPTION), from the card's side (GP Card Specification v2.3 Amendment D, 6.2.4-6.2.7):
//!
//! - a command arrives as `CLA|04 INS P1 P2 Lc [encrypted data] C-MAC(8) [Le]`; the C-MAC is
//!   AES-CMAC(S-MAC, MAC chaining value || CLA INS P1 P2 || Lc || encrypted data), whose 16
//!   bytes become the next chaining value (the first one is EXTERNAL AUTHENTICATE's);
//! - the data is AES-CBC under S-ENC with IV = AES(S-ENC, encryption counter as 16 bytes
//!   big-endian), padded by ISO/IEC 9797-1 method 2; an empty data field is not encrypted;
//! - the response data is encrypted the same way with IV = AES(S-ENC, the counter with its first
//!   byte set to 80) (Amendment D 6.2.7), then `R-MAC = AES-CMAC(S-RMAC, chaining value ||
//!   encrypted data || SW)`, 8 bytes, follows the data; a status word other than 9000, 62xx or
//!   63xx goes alone, without data or R-MAC (Amendment D 6.2.5).
//!
//! The encryption counter starts at 1 when the channel opens. When it goes up, the sources
//! disagree: Amendment D increments it for every command (pySim's published SCP03 vectors do
//! so), while NXP's middleware for the SE05x increments it only after a command that carried a
//! data field, and decrypts the response to a data-less command with the previous value
//! (nxScp03_Com.c: nxpSCP03_Encrypt_CommandAPDU, nxpSCP03_Get_ResponseICV). That middleware is
//! what real SE050s are driven with, so a real SE050 counts its way: this chip does too. (Which
//! of the two a host uses is what the host's own tests pin; here the rule is one of the chip's
//! facts, written once, and a host counting otherwise fails against it.)

use super::crypto::{self, SessionKeys};
use crate::wipe::{self, SecretBytes};
use crate::wire::apdu::CommandApdu;
use zeroize::Zeroizing;

/// Why a wrapped command was refused; the channel must then be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The bytes are not an APDU, or carry no C-MAC.
    Malformed,
    /// The C-MAC does not verify.
    BadMac,
    /// The decrypted data has no method-2 padding.
    BadPadding,
}

/// The card side of one open channel.
pub struct Channel {
    keys: SessionKeys,
    chaining: [u8; 16],
    /// The encryption counter of the next command with data.
    counter: u128,
    /// Whether the command being answered carried data.
    command_had_data: bool,
}

impl Channel {
    /// A channel opened by EXTERNAL AUTHENTICATE whose full C-MAC was `first_chaining`.
    pub fn open(keys: SessionKeys, first_chaining: [u8; 16]) -> Channel {
        Channel {
            keys,
            chaining: first_chaining,
            counter: 1,
            command_had_data: false,
        }
    }

    fn iv(&self, counter: u128, response: bool) -> [u8; 16] {
        let mut block = counter.to_be_bytes();
        if response {
            block[0] = 0x80;
        }
        crypto::encrypt_block(&self.keys.s_enc, &block)
    }

    /// The plain command inside `wrapped` (CLA without bit 04, Lc of the plain data, Le kept).
    pub fn unwrap_command(&mut self, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, Refused> {
        let apdu = CommandApdu::parse(wrapped).map_err(|_| Refused::Malformed)?;
        if apdu.data.len() < 8 {
            return Err(Refused::Malformed);
        }
        let (encrypted, mac) = apdu.data.split_at(apdu.data.len() - 8);
        // The MAC covers the header and the Lc field exactly as they came.
        let lc_field_len = if apdu.extended { 3 } else { 1 };
        let header_and_lc = &wrapped[..4 + lc_field_len];
        let full = crypto::cmac(
            &self.keys.s_mac,
            &[&self.chaining, header_and_lc, encrypted],
        );
        if !crypto::same(&full[..8], mac) {
            return Err(Refused::BadMac);
        }
        self.chaining = full;
        self.command_had_data = !encrypted.is_empty();
        let mut plain_data = Zeroizing::new(Vec::new());
        if !encrypted.is_empty() {
            let mut buffer = Zeroizing::new(encrypted.to_vec());
            let iv = self.iv(self.counter, false);
            crypto::cbc_decrypt(&self.keys.s_enc, &iv, &mut buffer).ok_or(Refused::BadPadding)?;
            let data = crypto::unpad(&buffer).ok_or(Refused::BadPadding)?;
            plain_data.extend_from_slice(data);
        }
        let plain = CommandApdu {
            cla: apdu.cla & !0x04,
            ins: apdu.ins,
            p1: apdu.p1,
            p2: apdu.p2,
            data: plain_data.to_vec(),
            le: apdu.le,
            extended: apdu.extended,
        };
        let bytes = Zeroizing::new(plain.encode());
        // `plain.data` is a copy of the plain command data: wipe it.
        let mut data = plain.data;
        zeroize::Zeroize::zeroize(&mut data);
        Ok(bytes)
    }

    /// The response to the command just unwrapped, protected (`response` is data || SW).
    pub fn wrap_response(&mut self, response: &[u8]) -> SecretBytes {
        let counter = if self.command_had_data {
            self.counter
        } else {
            self.counter.wrapping_sub(1)
        };
        if self.command_had_data {
            self.counter = self.counter.wrapping_add(1);
        }
        let (data, sw) = response.split_at(response.len().saturating_sub(2));
        let protected = sw == [0x90, 0x00] || matches!(sw.first(), Some(0x62 | 0x63));
        if !protected || sw.len() != 2 {
            return Zeroizing::new(sw.to_vec());
        }
        let mut out = wipe::with_capacity(data.len() + 16 + 10);
        if !data.is_empty() {
            let mut body = crypto::pad(data);
            let iv = self.iv(counter, true);
            crypto::cbc_encrypt(&self.keys.s_enc, &iv, &mut body);
            wipe::extend(&mut out, &body);
        }
        let r_mac = crypto::cmac(&self.keys.s_rmac, &[&self.chaining, &out, sw]);
        wipe::extend(&mut out, &r_mac[..8]);
        wipe::extend(&mut out, sw);
        out
    }
}
