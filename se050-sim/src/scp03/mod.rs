//! The virtual SE050's side of PlatformSCP03, wrapped around the applet handler from outside:
//! INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, wrapped commands unwrapped and checked, responses
//! wrapped, PUT KEY; and the "Platform SCP required" state. Any SE050 driver that speaks
//! PlatformSCP03 as NXP's middleware does works against it.
//!
//! Fidelity notes (the real chip's behaviour, where not public, as chosen here):
//! - INITIALIZE UPDATE answers 10 bytes of key diversification data (zeros), key information
//!   (KVN, 03, 00), a random card challenge and the card cryptogram: 29 bytes, one of the two
//!   lengths NXP's middleware accepts. An unknown key version answers 6A88.
//! - EXTERNAL AUTHENTICATE takes only security level 0x33 (what NXP's middleware asks for and
//!   what "Platform SCP required" demands; others answer 6A86); a wrong host cryptogram or MAC
//!   answers 6300 (GP: authentication failed).
//! - A wrapped command whose C-MAC fails closes the session and answers 6982, as does a wrapped
//!   command with no session open. A plain command closes an open session. A SELECT closes it.
//! - With "Platform SCP required" every plain applet command (CLA 0x80) answers 6982. NXP says
//!   such a chip refuses them (Se05x_API_SetPlatformSCPRequest documentation) without naming the
//!   status word; 6982 (security status not satisfied) is the ISO 7816-4 meaning. SELECT stays
//!   plain: NXP's middleware selects the applet before opening the channel.
//! - PUT KEY (`80 D8 KVN 81`, inside the channel) replaces the key set; the keys persist next
//!   to the state file (`STATE.scp03-keys`, NXP's key file format plus a `KVN` line), so every
//!   process on the same virtual chip sees them, and the new keys apply from the next session.
//! - Secure messaging: channel.rs (its counter rule: NXP's middleware's, see there).
//!
//! ```text
//! mod.rs      PlatformScp03: the command dispatch, key set, PUT KEY persistence
//! crypto.rs   AES-CMAC, the Amendment D KDF, padding, CBC, key check values
//! channel.rs  card-side secure messaging of one open channel
//! keys.rs     the static key set and its file
//! put_key.rs  PUT KEY's data field
//! ```

pub mod channel;
pub mod crypto;
pub mod keys;
pub mod put_key;

use crate::wire::apdu::CommandApdu;
use crate::{ApduHandler, Processed};
use channel::Channel;
use crypto::SessionKeys;
pub use keys::{CardKeys, DEFAULT_KVN};

/// The security level the chip takes: C-MAC, C-DECRYPTION, R-MAC, R-ENCRYPTION (Amendment D
/// table 7-1: 0x33), what NXP's middleware asks for.
pub const SECURITY_LEVEL: u8 = 0x33;

use rand_core::{OsRng, RngCore};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// The chip's key set and where it persists.
struct ChipKeys {
    keys: CardKeys,
    kvn: u8,
    file: Option<PathBuf>,
}

impl ChipKeys {
    /// The persisted key set if there is one, else the initial one.
    fn reload(&mut self) {
        let Some(path) = &self.file else { return };
        match std::fs::read_to_string(path).map(Zeroizing::new) {
            Ok(text) => match CardKeys::from_file_text(&text) {
                Ok((kvn, keys)) => {
                    self.kvn = kvn;
                    self.keys = keys;
                }
                Err(why) => log::error!("virtual SE050: {}: {why}", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::error!("virtual SE050: {}: {e}", path.display()),
        }
    }

    fn save(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let text = self.keys.to_file_text(self.kvn);
        let temp = path.with_extension("scp03-keys.new");
        write_private(&temp, text.as_bytes()).map_err(|e| e.to_string())?;
        std::fs::rename(&temp, path).map_err(|e| e.to_string())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The file where a virtual chip whose state is `state` keeps its PlatformSCP keys.
pub fn key_state_path(state: &Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".scp03-keys");
    PathBuf::from(name)
}

/// What the host started with INITIALIZE UPDATE.
struct Pending {
    keys: SessionKeys,
    ctx: [u8; 16],
}

/// Counters of the chip's secure channel, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChipScp03Stats {
    pub sessions_opened: u64,
    pub authentication_failures: u64,
    pub mac_failures: u64,
    pub plain_refused: u64,
    pub keys_replaced: u64,
}

/// PlatformSCP03 in front of an applet handler.
pub struct PlatformScp03 {
    inner: Box<dyn ApduHandler>,
    keys: ChipKeys,
    required: bool,
    pending: Option<Pending>,
    session: Option<Channel>,
    stats: ChipScp03Stats,
}

fn status(sw: u16) -> Processed {
    Processed {
        response: Zeroizing::new(sw.to_be_bytes().to_vec()),
        busy: Duration::ZERO,
    }
}

fn answer(data: &[u8]) -> Processed {
    Processed {
        response: crate::wire::apdu::response(data, crate::wire::apdu::StatusWord::OK),
        busy: Duration::ZERO,
    }
}

impl PlatformScp03 {
    /// `inner` behind PlatformSCP03 with the key set `initial` (version `kvn`) until a PUT KEY
    /// replaces it; `key_file`: where replaced keys persist (None: in memory). `required`:
    /// plain applet commands are refused.
    pub fn new(
        inner: Box<dyn ApduHandler>,
        initial: impl Into<CardKeys>,
        kvn: u8,
        key_file: Option<PathBuf>,
        required: bool,
    ) -> Self {
        let mut keys = ChipKeys {
            keys: initial.into(),
            kvn,
            file: key_file,
        };
        keys.reload();
        PlatformScp03 {
            inner,
            keys,
            required,
            pending: None,
            session: None,
            stats: ChipScp03Stats::default(),
        }
    }

    pub fn stats(&self) -> ChipScp03Stats {
        self.stats
    }

    /// The chip's current key set (tests).
    pub fn current_keys(&self) -> (u8, &CardKeys) {
        (self.keys.kvn, &self.keys.keys)
    }

    fn close(&mut self) {
        self.session = None;
        self.pending = None;
    }

    fn initialize_update(&mut self, apdu: &CommandApdu) -> Processed {
        self.close();
        self.keys.reload();
        if apdu.p1 != 0 && apdu.p1 != self.keys.kvn {
            return status(0x6A88);
        }
        let Ok(host_challenge) = <[u8; 8]>::try_from(&apdu.data[..]) else {
            return status(0x6700);
        };
        let mut card_challenge = [0u8; 8];
        OsRng.fill_bytes(&mut card_challenge);
        self.begin(&host_challenge, card_challenge)
    }

    /// INITIALIZE UPDATE's answer with a given card challenge (the tests' published vectors).
    fn begin(&mut self, host_challenge: &[u8; 8], card_challenge: [u8; 8]) -> Processed {
        let mut ctx = [0u8; 16];
        ctx[..8].copy_from_slice(host_challenge);
        ctx[8..].copy_from_slice(&card_challenge);
        let keys = SessionKeys::derive(&self.keys.keys.enc, &self.keys.keys.mac, &ctx);
        // Key diversification data (10, zeros here), key information (KVN, SCP03, i = 00),
        // card challenge, card cryptogram (Amendment D 7.1.1.6).
        let mut data = vec![0u8; 10];
        data.extend_from_slice(&[self.keys.kvn, 0x03, 0x00]);
        data.extend_from_slice(&card_challenge);
        data.extend_from_slice(&keys.cryptogram(crypto::CARD_CRYPTOGRAM, &ctx));
        self.pending = Some(Pending { keys, ctx });
        answer(&data)
    }

    fn external_authenticate(&mut self, command: &[u8], apdu: &CommandApdu) -> Processed {
        let Some(pending) = self.pending.take() else {
            return status(0x6985);
        };
        if apdu.p1 != SECURITY_LEVEL {
            return status(0x6A86);
        }
        if apdu.data.len() != 16 || command.len() < 21 {
            return status(0x6700);
        }
        // The first C-MAC chains from 16 zero bytes, over `84 82 33 00 10` and the cryptogram.
        let mac = crypto::cmac(&pending.keys.s_mac, &[&[0u8; 16], &command[..13]]);
        let host_cryptogram = pending
            .keys
            .cryptogram(crypto::HOST_CRYPTOGRAM, &pending.ctx);
        if !crypto::same(&mac[..8], &apdu.data[8..16])
            || !crypto::same(&host_cryptogram, &apdu.data[..8])
        {
            self.stats.authentication_failures += 1;
            return status(0x6300);
        }
        self.session = Some(Channel::open(pending.keys, mac));
        self.stats.sessions_opened += 1;
        status(0x9000)
    }

    fn secured(&mut self, command: &[u8]) -> Processed {
        let Some(session) = self.session.as_mut() else {
            return status(0x6982);
        };
        let plain = match session.unwrap_command(command) {
            Ok(plain) => plain,
            Err(e) => {
                log::debug!("virtual SE050: wrapped command refused ({e:?}): session closed");
                self.stats.mac_failures += 1;
                self.close();
                return status(0x6982);
            }
        };
        let processed = if plain.get(..2) == Some(&[0x80, put_key::INS_PUT_KEY]) {
            self.put_key(&plain)
        } else {
            self.inner.process(&plain)
        };
        let response = match self.session.as_mut() {
            Some(session) => session.wrap_response(&processed.response),
            None => processed.response,
        };
        Processed {
            response,
            busy: processed.busy,
        }
    }

    fn put_key(&mut self, plain: &[u8]) -> Processed {
        let Ok(apdu) = CommandApdu::parse(plain) else {
            return status(0x6700);
        };
        if apdu.p1 != self.keys.kvn {
            return status(0x6A88);
        }
        if apdu.p2 != put_key::P2_MULTIPLE_KEYS {
            return status(0x6A86);
        }
        match put_key::parse(&apdu.data, &self.keys.keys.dek) {
            Ok((kvn, keys, response)) => {
                let previous = (self.keys.kvn, self.keys.keys.clone());
                self.keys.kvn = kvn;
                self.keys.keys = keys;
                if let Err(why) = self.keys.save() {
                    log::error!("virtual SE050: cannot save the new PlatformSCP keys: {why}");
                    (self.keys.kvn, self.keys.keys) = previous;
                    return status(0x6581);
                }
                self.stats.keys_replaced += 1;
                answer(&response)
            }
            Err(sw) => status(sw),
        }
    }
}

impl ApduHandler for PlatformScp03 {
    fn process(&mut self, command: &[u8]) -> Processed {
        let Ok(apdu) = CommandApdu::parse(command) else {
            if command.first().is_some_and(|cla| cla & 0x84 == 0x84) {
                return status(0x6700);
            }
            return self.inner.process(command);
        };
        match (apdu.cla, apdu.ins) {
            (0x80, 0x50) => self.initialize_update(&apdu),
            (0x84, 0x82) => self.external_authenticate(command, &apdu),
            (cla, _) if cla & 0x84 == 0x84 => self.secured(command),
            (0x00, 0xA4) => {
                self.close();
                self.inner.process(command)
            }
            (cla, _) => {
                self.close();
                if self.required && cla & 0x80 != 0 {
                    self.stats.plain_refused += 1;
                    return status(0x6982);
                }
                self.inner.process(command)
            }
        }
    }

    fn reset(&mut self) {
        self.close();
        self.inner.reset();
    }
}

#[cfg(test)]
#[path = "vectors_tests.rs"]
mod vectors_tests;
