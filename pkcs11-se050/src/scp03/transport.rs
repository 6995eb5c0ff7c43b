//! `Scp03Transport<T>`: PlatformSCP03 between the applet commands and the link below.
//!
//! Opening the channel, as NXP's middleware does it with a real SE050: the IoT applet is
//! SELECTed in plain first, and INITIALIZE UPDATE / EXTERNAL AUTHENTICATE follow with the
//! applet selected (plug-and-trust: `SM_I2CConnect` selects the applet in
//! hostlib/hostLib/libCommon/infra/sm_connect.c, then `sss_se05x_session_open` in
//! sss/src/se05x/fsl_sss_se05x_apis.c calls `nxScp03_AuthenticateChannel`). Inside the channel
//! every applet command goes with CLA 0x84, i.e. its own CLA with bit 04 set
//! (`se05x_Transform_scp` in hostlib/hostLib/se05x/src/se05x_tlv.c: "Pad CLA byte with 0x04").
//!
//! The transport is transparent: whatever command comes from above (applet commands, UserID
//! sessions' wrapped commands) is wrapped and its response unwrapped. A SELECT from above opens
//! the channel anew (a SELECT ends a secure channel session on the chip).
//!
//! Fail closed: on a cryptogram or MAC error, a link error (which may have been a chip reset) or
//! a resync after another process used the chip, the channel is dropped and opened again before
//! the next command; nothing is ever sent in plain but SELECT and INITIALIZE UPDATE.
//!
//! The retry rule (applet/resend.rs, docs/pins-and-scp03.md, "The module's retry rule"): a bare 6982 / 6D00 to
//! a wrapped command carries no R-MAC. It may mean the chip lost the channel (a reset: nothing
//! was run), that the chip refused the command itself (a wrong PIN), or that someone on the bus
//! forged it after the chip ran the command. The channel is dropped either way; only a command
//! that changes nothing on the chip (`resend::may_resend`) is sent once more in a new channel.
//! Any other command's 6982 / 6D00 goes up as its answer: counted as failed, never replayed.

use super::crypto::{self, SessionKeys};
use super::keys::StaticKeys;
use super::owner::ChannelOwner;
use super::session::SecureMessaging;
use super::Scp03Error;
use crate::applet::protocol::select_command;
use crate::applet::resend::may_resend;
use crate::t1::{ApduTransport, LinkError};
use crate::wipe::SecretBytes;
use rand_core::{OsRng, RngCore};

/// Security level 0x33: C-MAC, C-DECRYPTION, R-MAC, R-ENCRYPTION.
pub const SECURITY_LEVEL: u8 = 0x33;

/// What the channel cost so far (for tests and the benchmark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scp03Stats {
    /// Channels opened (SELECT + INITIALIZE UPDATE + EXTERNAL AUTHENTICATE each).
    pub handshakes: u64,
    /// Channels dropped after an error.
    pub dropped_on_error: u64,
    /// Commands sent inside the channel.
    pub wrapped_commands: u64,
    /// Commands sent once more after a bare 6982 / 6D00 (reads and ECDH only).
    pub resent: u64,
    /// Commands answered a bare 6982 / 6D00 and not sent again: they change the chip's state.
    pub not_resent: u64,
}

pub struct Scp03Transport<T> {
    inner: T,
    keys: StaticKeys,
    kvn: u8,
    session: Option<SecureMessaging>,
    owner: Option<ChannelOwner>,
    stats: Scp03Stats,
}

fn scp(e: Scp03Error) -> LinkError {
    LinkError::SecureChannel(e)
}

fn sw_of(response: &[u8]) -> u16 {
    match response {
        [.., a, b] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    }
}

impl<T: ApduTransport> Scp03Transport<T> {
    /// A channel with the static `keys` of key version `kvn`, opened at the first command.
    pub fn new(inner: T, keys: StaticKeys, kvn: u8) -> Self {
        Scp03Transport {
            inner,
            keys,
            kvn,
            session: None,
            owner: None,
            stats: Scp03Stats::default(),
        }
    }

    /// Keeps the channel across exchanges while no other process opened one (see owner.rs).
    pub fn with_owner(mut self, owner: ChannelOwner) -> Self {
        self.owner = Some(owner);
        self
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    pub fn stats(&self) -> Scp03Stats {
        self.stats
    }

    pub fn is_open(&self) -> bool {
        self.session.is_some()
    }

    pub fn kvn(&self) -> u8 {
        self.kvn
    }

    pub fn keys(&self) -> &StaticKeys {
        &self.keys
    }

    /// Uses `keys` from the next channel on (after a rotation the chip accepted).
    pub fn set_keys(&mut self, keys: StaticKeys) {
        self.keys = keys;
        self.drop_channel();
    }

    fn drop_channel(&mut self) {
        self.session = None;
        if let Some(owner) = &mut self.owner {
            owner.release();
        }
    }

    /// SELECT (the given command) in plain, then the handshake; answers the SELECT's response.
    fn open(&mut self, select: &[u8]) -> Result<SecretBytes, LinkError> {
        self.drop_channel();
        let response = self.inner.transceive(select)?;
        if sw_of(&response) != 0x9000 {
            return Ok(response);
        }
        self.handshake()?;
        Ok(response)
    }

    fn handshake(&mut self) -> Result<(), LinkError> {
        let mut host_challenge = [0u8; 8];
        OsRng.fill_bytes(&mut host_challenge);
        let mut initialize_update = vec![0x80, 0x50, self.kvn, 0x00, 0x08];
        initialize_update.extend_from_slice(&host_challenge);
        initialize_update.push(0x00);
        let response = self.inner.transceive(&initialize_update)?;
        let sw = sw_of(&response);
        if sw != 0x9000 {
            return Err(scp(Scp03Error::HandshakeRefused {
                command: "INITIALIZE UPDATE",
                sw,
            }));
        }
        let data = &response[..response.len() - 2];
        // 10 key diversification data, 3 key information, 8 card challenge, 8 card cryptogram,
        // and 3 sequence counter when the challenge is pseudo-random (NXP accepts 29 or 32).
        if data.len() != 29 && data.len() != 32 {
            return Err(scp(Scp03Error::Protocol(format!(
                "INITIALIZE UPDATE answered {} bytes, expected 29 or 32",
                data.len()
            ))));
        }
        let (card_kvn, protocol) = (data[10], data[11]);
        if protocol != 0x03 {
            return Err(scp(Scp03Error::Protocol(format!(
                "the chip offers secure channel protocol {protocol:02X}, not SCP03"
            ))));
        }
        if self.kvn != 0 && card_kvn != self.kvn {
            return Err(scp(Scp03Error::Protocol(format!(
                "the chip answered with key version {card_kvn:#04x}, asked for {:#04x}",
                self.kvn
            ))));
        }
        let card_challenge: [u8; 8] = data[13..21].try_into().expect("8 bytes");
        let ctx = crypto::context(&host_challenge, &card_challenge);
        let keys = SessionKeys::derive(&self.keys.enc, &self.keys.mac, &ctx);
        if !crypto::equal(&keys.card_cryptogram(&ctx), &data[21..29]) {
            return Err(scp(Scp03Error::CardCryptogram { kvn: card_kvn }));
        }
        let mut external_authenticate = vec![0x84, 0x82, SECURITY_LEVEL, 0x00, 0x10];
        external_authenticate.extend_from_slice(&keys.host_cryptogram(&ctx));
        // The first C-MAC is computed with a chaining value of 16 x 00 (Amendment D 6.2.4).
        let mac = crypto::cmac(&keys.s_mac, &[&[0u8; 16], &external_authenticate]);
        external_authenticate.extend_from_slice(&mac[..8]);
        let response = self.inner.transceive(&external_authenticate)?;
        let sw = sw_of(&response);
        if sw != 0x9000 {
            return Err(scp(Scp03Error::HandshakeRefused {
                command: "EXTERNAL AUTHENTICATE",
                sw,
            }));
        }
        self.session = Some(SecureMessaging::new(keys, mac));
        self.stats.handshakes += 1;
        if let Some(owner) = &mut self.owner {
            owner.claim();
        }
        log::debug!("SCP03 secure channel opened (key version {card_kvn:#04x}, level 33)");
        Ok(())
    }

    fn ensure_open(&mut self) -> Result<(), LinkError> {
        if self.session.is_some() {
            return Ok(());
        }
        let response = self.open(&select_command().encode())?;
        if self.session.is_none() {
            return Err(scp(Scp03Error::Protocol(format!(
                "cannot select the IoT applet to open the channel: status {:04X}",
                sw_of(&response)
            ))));
        }
        Ok(())
    }

    fn exchange(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        let session = self.session.as_mut().expect("opened");
        let wrapped = session.wrap_command(command).map_err(scp)?;
        self.stats.wrapped_commands += 1;
        let raw = self.inner.transceive(&wrapped)?;
        let session = self.session.as_mut().expect("opened");
        session.unwrap_response(&raw).map_err(scp)
    }

    fn exchange_or_drop(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        self.ensure_open()?;
        let result = self.exchange(command);
        if let Err(e) = &result {
            log::warn!("{e}: the SCP03 secure channel is dropped and opened again");
            self.stats.dropped_on_error += 1;
            self.drop_channel();
        }
        result
    }
}

impl<T: ApduTransport> ApduTransport for Scp03Transport<T> {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        let is_select = command.len() >= 2 && command[0] == 0x00 && command[1] == 0xA4;
        if is_select {
            let result = self.open(command);
            if result.is_err() {
                self.stats.dropped_on_error += 1;
                self.drop_channel();
            }
            return result;
        }
        let response = self.exchange_or_drop(command)?;
        let sw = sw_of(&response);
        if response.len() == 2 && matches!(sw, 0x6982 | 0x6D00) {
            // The chip may have lost the channel: the next command opens a new one.
            self.drop_channel();
            if !may_resend(command) {
                self.stats.not_resent += 1;
                log::warn!(
                    "SCP03 secure channel: the SE050 answered {sw:04X} (no R-MAC: a lost channel, \
                     a refusal, or forged on the bus) to a command that changes the chip's state: \
                     not sent again, reported as failed"
                );
                return Ok(response);
            }
            log::info!(
                "SCP03 secure channel: the SE050 answered {sw:04X} (session or applet selection \
                 lost, e.g. a reset) to a command that changes nothing on the chip: opening the \
                 channel again and sending it once more"
            );
            self.stats.resent += 1;
            return self.exchange_or_drop(command);
        }
        Ok(response)
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        let result = self.inner.resync();
        let keep = result.is_ok()
            && self.session.is_some()
            && self.owner.as_ref().is_some_and(ChannelOwner::still_ours);
        if !keep {
            self.drop_channel();
        }
        result
    }
}
