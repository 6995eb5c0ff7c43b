//! Secure messaging of one SCP03 session at security level 0x33 (C-MAC, C-DECRYPTION, R-MAC,
//! R-ENCRYPTION), both directions: the host's (wrap commands, unwrap responses) and the card's
//! (unwrap commands, wrap responses, used by the virtual SE050).
//!
//! The rules, from GP Amendment D and, where it leaves room, from NXP's plug-and-trust
//! middleware (hostlib/hostLib/libCommon/nxScp/nxScp03_Com.c and se05x/src/se05x_tlv.c), which
//! is what real SE050s are driven with:
//! - C-MAC = AES-CMAC(S-MAC, MAC chaining value || CLA|04 INS P1 P2 || Lc (data + 8) || data),
//!   8 bytes sent; the full 16 bytes become the next chaining value.
//! - C-DECRYPTION: the data field, padded (ISO 9797-1 method 2), AES-CBC under S-ENC with
//!   IV = AES(S-ENC, counter). No data field, nothing to encrypt.
//! - R-MAC = AES-CMAC(S-RMAC, chaining value || response data || SW), 8 bytes after the data.
//!   R-ENCRYPTION: IV = AES(S-ENC, counter with its first byte set to 80).
//! - Error status words (all but 9000, 62xx, 63xx) come alone, without R-MAC (Amendment D
//!   v1.1.1 6.2.5); a bare 9000 is refused.
//! - The encryption counter starts at 1 after EXTERNAL AUTHENTICATE. Here the sources disagree
//!   ([`CounterRule`]): NXP's middleware, which drives real SE050s, increments it only after a
//!   command that had a data field, and the response to a command without data uses counter - 1
//!   (nxpSCP03_Decrypt_ResponseAPDU, nxpSCP03_Get_ResponseICV in nxScp03_Com.c); pySim's
//!   published SCP03 vectors (osmocom/pysim tests/unittests/test_globalplatform.py) increment it
//!   for every command, with or without data (their case-3 APDU after two data-less ones only
//!   verifies that way: see the tests). The SE050 transport and the virtual SE050 follow NXP.

use super::crypto::{self, SessionKeys, BLOCK};
use super::Scp03Error;
use crate::apdu::CommandApdu;
use crate::wipe::SecretBytes;
use zeroize::Zeroizing;

/// When the encryption counter goes up (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterRule {
    /// After each command with a data field; a data-less command's response uses counter - 1.
    /// NXP's middleware for the SE05x: what real chips do.
    DataCommandsOnly,
    /// After every command (pySim's GlobalPlatform implementation).
    EveryCommand,
}

/// The secure-messaging state of one open session.
pub struct SecureMessaging {
    keys: SessionKeys,
    rule: CounterRule,
    mcv: [u8; 16],
    counter: u128,
    /// Whether the command now waiting for its response had a data field.
    pending_had_data: bool,
}

/// A status word that carries R-MAC (and data) under SCP03: success and warnings.
pub fn is_protected_sw(sw1: u8, sw2: u8) -> bool {
    (sw1, sw2) == (0x90, 0x00) || sw1 == 0x62 || sw1 == 0x63
}

/// The Lc field of a command with `len` data bytes.
fn lc_field(extended: bool, len: usize) -> Vec<u8> {
    if extended {
        vec![0x00, (len >> 8) as u8, len as u8]
    } else {
        vec![len as u8]
    }
}

impl SecureMessaging {
    /// A session opened by EXTERNAL AUTHENTICATE whose C-MAC was `ext_auth_cmac` (the first
    /// chaining value).
    pub fn new(keys: SessionKeys, ext_auth_cmac: [u8; 16]) -> Self {
        Self::with_rule(keys, ext_auth_cmac, CounterRule::DataCommandsOnly)
    }

    /// A session whose encryption counter follows `rule`.
    pub fn with_rule(keys: SessionKeys, ext_auth_cmac: [u8; 16], rule: CounterRule) -> Self {
        SecureMessaging {
            keys,
            rule,
            mcv: ext_auth_cmac,
            counter: 1,
            pending_had_data: false,
        }
    }

    fn command_iv(&self) -> [u8; 16] {
        crypto::encrypt_block(&self.keys.s_enc, &self.counter.to_be_bytes())
    }

    fn response_iv(&self, command_had_data: bool) -> [u8; 16] {
        let counter = if command_had_data || self.rule == CounterRule::EveryCommand {
            self.counter
        } else {
            self.counter.wrapping_sub(1)
        };
        let mut block = counter.to_be_bytes();
        block[0] = 0x80;
        crypto::encrypt_block(&self.keys.s_enc, &block)
    }

    fn c_mac(&mut self, cla: u8, header: [u8; 3], lc: &[u8], data: &[u8]) -> [u8; 8] {
        let mac = crypto::cmac(&self.keys.s_mac, &[&self.mcv, &[cla], &header, lc, data]);
        self.mcv = mac;
        crypto::first8(&mac)
    }

    fn r_mac(&self, data: &[u8], sw: &[u8]) -> [u8; 8] {
        crypto::first8(&crypto::cmac(&self.keys.s_rmac, &[&self.mcv, data, sw]))
    }

    fn after_response(&mut self) {
        if self.pending_had_data || self.rule == CounterRule::EveryCommand {
            self.counter = self.counter.wrapping_add(1);
        }
        self.pending_had_data = false;
    }

    // ---- host side ----

    /// The command as it goes on the bus: CLA | 04, data encrypted, C-MAC appended. `Le`, when
    /// present, asks for the most its form allows (the response grows by padding and R-MAC).
    pub fn wrap_command(&mut self, plain: &[u8]) -> Result<Vec<u8>, Scp03Error> {
        let apdu = CommandApdu::parse(plain)
            .map_err(|e| Scp03Error::Protocol(format!("cannot wrap the command: {e}")))?;
        let mut body: Zeroizing<Vec<u8>> = if apdu.data.is_empty() {
            Zeroizing::new(Vec::new())
        } else {
            let mut padded = crypto::pad(&apdu.data);
            let iv = self.command_iv();
            crypto::cbc_encrypt(&self.keys.s_enc, &iv, &mut padded);
            padded
        };
        let lc_len = body.len() + 8;
        let le = apdu.le;
        let extended = apdu.extended || lc_len > 255 || le.is_some_and(|ne| ne > 256);
        if lc_len > crate::apdu::command::EXTENDED_MAX_DATA {
            return Err(Scp03Error::Protocol(format!(
                "command data of {} bytes is too long to wrap",
                apdu.data.len()
            )));
        }
        let cla = apdu.cla | 0x04;
        let lc = lc_field(extended, lc_len);
        let mac = self.c_mac(cla, [apdu.ins, apdu.p1, apdu.p2], &lc, &body);
        body.extend_from_slice(&mac);
        let mut out = Vec::with_capacity(4 + lc.len() + body.len() + 3);
        out.extend_from_slice(&[cla, apdu.ins, apdu.p1, apdu.p2]);
        out.extend_from_slice(&lc);
        out.extend_from_slice(&body);
        if le.is_some() {
            out.extend_from_slice(if extended { &[0x00, 0x00] } else { &[0x00] });
        }
        self.pending_had_data = !apdu.data.is_empty();
        Ok(out)
    }

    /// The plain response (data || SW) of the wrapped command sent last: R-MAC checked, data
    /// decrypted. Any failure is a [`Scp03Error`]: the caller must drop the session.
    pub fn unwrap_response(&mut self, response: &[u8]) -> Result<SecretBytes, Scp03Error> {
        let had_data = self.pending_had_data;
        let result = self.unwrap_response_inner(response, had_data);
        self.after_response();
        result
    }

    fn unwrap_response_inner(
        &self,
        response: &[u8],
        had_data: bool,
    ) -> Result<SecretBytes, Scp03Error> {
        let n = response.len();
        if n < 2 {
            return Err(Scp03Error::Protocol(format!(
                "a response of {n} bytes has no status word"
            )));
        }
        let sw = [response[n - 2], response[n - 1]];
        if !is_protected_sw(sw[0], sw[1]) {
            if n != 2 {
                return Err(Scp03Error::Protocol(format!(
                    "error status {:02X}{:02X} came with {} bytes of data",
                    sw[0],
                    sw[1],
                    n - 2
                )));
            }
            return Ok(Zeroizing::new(sw.to_vec()));
        }
        if n < 10 {
            return Err(Scp03Error::ResponseMac(format!(
                "status {:02X}{:02X} came without its R-MAC",
                sw[0], sw[1]
            )));
        }
        let body = &response[..n - 10];
        let mac = &response[n - 10..n - 2];
        if !crypto::equal(&self.r_mac(body, &sw), mac) {
            return Err(Scp03Error::ResponseMac(
                "the response's R-MAC does not verify".into(),
            ));
        }
        let mut out = crate::wipe::with_capacity(body.len() + 2);
        if !body.is_empty() {
            if !body.len().is_multiple_of(BLOCK) {
                return Err(Scp03Error::Protocol(format!(
                    "encrypted response data of {} bytes is not whole AES blocks",
                    body.len()
                )));
            }
            let mut plain = Zeroizing::new(body.to_vec());
            let iv = self.response_iv(had_data);
            crypto::cbc_decrypt(&self.keys.s_enc, &iv, &mut plain).expect("whole blocks");
            let data = crypto::unpad(&plain).ok_or_else(|| {
                Scp03Error::Protocol("the decrypted response has no valid padding".into())
            })?;
            crate::wipe::extend(&mut out, data);
        }
        crate::wipe::extend(&mut out, &sw);
        Ok(out)
    }

    // ---- card side (the virtual SE050) ----

    /// The plain command inside a wrapped one (CLA without bit 04), its C-MAC checked. An
    /// error means the chip must close the session. The plain command may carry a PIN: wiped
    /// when dropped.
    pub fn unwrap_command(&mut self, wrapped: &[u8]) -> Result<SecretBytes, Scp03Error> {
        let apdu = CommandApdu::parse(wrapped)
            .map_err(|e| Scp03Error::Protocol(format!("wrapped command: {e}")))?;
        if apdu.data.len() < 8 {
            return Err(Scp03Error::CommandMac("the command has no C-MAC".into()));
        }
        let (body, mac) = apdu.data.split_at(apdu.data.len() - 8);
        let lc = lc_field(apdu.extended, apdu.data.len());
        let saved = self.mcv;
        let expected = self.c_mac(apdu.cla, [apdu.ins, apdu.p1, apdu.p2], &lc, body);
        if !crypto::equal(&expected, mac) {
            self.mcv = saved;
            return Err(Scp03Error::CommandMac(
                "the command's C-MAC does not verify".into(),
            ));
        }
        let data = if body.is_empty() {
            Vec::new()
        } else {
            if !body.len().is_multiple_of(BLOCK) {
                return Err(Scp03Error::Protocol(
                    "encrypted data is not whole blocks".into(),
                ));
            }
            let mut plain = Zeroizing::new(body.to_vec());
            let iv = self.command_iv();
            crypto::cbc_decrypt(&self.keys.s_enc, &iv, &mut plain).expect("whole blocks");
            crypto::unpad(&plain)
                .ok_or_else(|| Scp03Error::Protocol("decrypted command has no padding".into()))?
                .to_vec()
        };
        self.pending_had_data = !data.is_empty();
        let inner = CommandApdu {
            cla: apdu.cla & !0x04,
            ins: apdu.ins,
            p1: apdu.p1,
            p2: apdu.p2,
            le: apdu.le,
            extended: apdu.extended,
            data,
        };
        Ok(inner.wire())
    }

    /// The response to the command unwrapped last, as the card sends it.
    pub fn wrap_response(&mut self, plain: &[u8]) -> SecretBytes {
        let had_data = self.pending_had_data;
        let n = plain.len();
        let (data, sw) = if n >= 2 {
            (&plain[..n - 2], [plain[n - 2], plain[n - 1]])
        } else {
            (&[][..], [0x6F, 0x00])
        };
        let out = if is_protected_sw(sw[0], sw[1]) {
            let mut body = if data.is_empty() {
                Zeroizing::new(Vec::new())
            } else {
                let mut padded = crypto::pad(data);
                let iv = self.response_iv(had_data);
                crypto::cbc_encrypt(&self.keys.s_enc, &iv, &mut padded);
                padded
            };
            let mac = self.r_mac(&body, &sw);
            body.extend_from_slice(&mac);
            body.extend_from_slice(&sw);
            body
        } else {
            Zeroizing::new(sw.to_vec())
        };
        self.after_response();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::crypto::{context, SessionKeys};
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    use super::super::crypto::tests_support::pysim;

    fn pysim_session() -> SecureMessaging {
        pysim_session_with(CounterRule::DataCommandsOnly)
    }

    /// The session of pySim's SCP03_Test_AES128_33 right after EXTERNAL AUTHENTICATE.
    fn pysim_session_with(rule: CounterRule) -> SecureMessaging {
        let enc: [u8; 16] = hex(pysim::ENC).try_into().unwrap();
        let mac: [u8; 16] = hex(pysim::MAC).try_into().unwrap();
        let cmd = hex(pysim::INIT_UPDATE_CMD);
        let rsp = hex(pysim::INIT_UPDATE_RSP);
        let ctx = context(
            &cmd[5..13].try_into().unwrap(),
            &rsp[13..21].try_into().unwrap(),
        );
        let keys = SessionKeys::derive(&enc, &mac, &ctx);
        let ext = hex(pysim::EXT_AUTH_CMD);
        let mcv = crypto::cmac(&keys.s_mac, &[&[0u8; 16], &ext[..13]]);
        assert_eq!(mcv[..8], ext[13..21]);
        SecureMessaging::with_rule(keys, mcv, rule)
    }

    /// osmocom/pysim tests/unittests/test_globalplatform.py, SCP03_Test_AES128_33: GET EID
    /// wrapped (C-MAC + C-DECRYPTION), its response unwrapped (R-MAC + R-ENCRYPTION), then the four
    /// APDU cases wrapped, in the order the test runs them.
    #[test]
    fn scp03_wrap_and_unwrap_match_pysim_level_33_vectors() {
        let mut host = pysim_session_with(CounterRule::EveryCommand);
        let wrapped = host.wrap_command(&hex(pysim::GET_EID_CMD_PLAIN)).unwrap();
        assert_eq!(wrapped, hex(pysim::GET_EID_CMD));
        let mut response = hex(pysim::GET_EID_RSP);
        response.extend_from_slice(&[0x90, 0x00]);
        let plain = host.unwrap_response(&response).unwrap();
        let mut expected = hex(pysim::GET_EID_RSP_PLAIN);
        expected.extend_from_slice(&[0x90, 0x00]);
        assert_eq!(*plain, expected);
        for (plain, wrapped) in pysim::CASES {
            assert_eq!(
                host.wrap_command(&hex(plain)).unwrap(),
                hex(wrapped),
                "{plain}"
            );
            // pySim's test sends no responses for these; a bare error SW keeps the sequence.
            host.unwrap_response(&[0x6A, 0x80]).unwrap();
        }
    }

    /// Under NXP's rule (the SE050's) the same sequence agrees up to the first command with data
    /// after data-less ones, and differs exactly there: the counter is all that differs.
    #[test]
    fn scp03_nxp_counter_rule_differs_from_pysim_only_after_dataless_commands() {
        let mut host = pysim_session_with(CounterRule::DataCommandsOnly);
        let wrapped = host.wrap_command(&hex(pysim::GET_EID_CMD_PLAIN)).unwrap();
        assert_eq!(wrapped, hex(pysim::GET_EID_CMD));
        let mut response = hex(pysim::GET_EID_RSP);
        response.extend_from_slice(&[0x90, 0x00]);
        host.unwrap_response(&response).unwrap();
        for (i, (plain, wrapped)) in pysim::CASES.into_iter().enumerate() {
            let got = host.wrap_command(&hex(plain)).unwrap();
            assert_eq!(got == hex(wrapped), i < 2, "case {}", i + 1);
            host.unwrap_response(&[0x6A, 0x80]).unwrap();
        }
    }

    #[test]
    fn scp03_card_side_reads_what_the_host_wrote_and_the_reverse() {
        let mut host = pysim_session();
        let mut card = pysim_session();
        for (plain, _) in pysim::CASES
            .iter()
            .chain([(pysim::GET_EID_CMD_PLAIN, "")].iter())
        {
            let wrapped = host.wrap_command(&hex(plain)).unwrap();
            let inner = card.unwrap_command(&wrapped).unwrap();
            let original = CommandApdu::parse(&hex(plain)).unwrap();
            let got = CommandApdu::parse(&inner).unwrap();
            assert_eq!(
                (got.cla, got.ins, got.p1, got.p2, &got.data),
                (
                    original.cla,
                    original.ins,
                    original.p1,
                    original.p2,
                    &original.data
                )
            );
            let answer = [&[0x11u8; 33][..], &[0x90, 0x00]].concat();
            let on_bus = card.wrap_response(&answer);
            assert!(
                !on_bus.windows(33).any(|w| w == &answer[..33]),
                "data in clear"
            );
            assert_eq!(*host.unwrap_response(&on_bus).unwrap(), answer);
        }
    }

    #[test]
    fn scp03_any_flipped_bit_is_refused() {
        let mut host = pysim_session();
        let mut card = pysim_session();
        let wrapped = host.wrap_command(&hex(pysim::GET_EID_CMD_PLAIN)).unwrap();
        // Every bit but those of Le (the last byte), which C-MAC does not cover (Amendment D).
        for bit in 0..(wrapped.len() - 1) * 8 {
            let mut bad = wrapped.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let err = pysim_session().unwrap_command(&bad).unwrap_err();
            assert!(
                err.to_string().contains("secure channel"),
                "bit {bit}: {err}"
            );
        }
        card.unwrap_command(&wrapped).unwrap();
        let response = card.wrap_response(&[1, 2, 3, 0x90, 0x00]);
        for bit in 0..response.len() * 8 {
            let mut bad = response.to_vec();
            bad[bit / 8] ^= 1 << (bit % 8);
            let mut h = pysim_session();
            h.wrap_command(&hex(pysim::GET_EID_CMD_PLAIN)).unwrap();
            let err = h.unwrap_response(&bad).unwrap_err();
            assert!(err.to_string().contains("secure channel"), "{err}");
        }
        // A bare 9000 (a response stripped of its R-MAC) is refused too.
        let mut h = pysim_session();
        h.wrap_command(&hex(pysim::GET_EID_CMD_PLAIN)).unwrap();
        assert!(h.unwrap_response(&[0x90, 0x00]).is_err());
    }
}
