//! One session's transport keys: counters, padding, and AEAD in place (ring's ChaCha20-Poly1305).
//!
//! Shared as `Arc<Keypair>` by every thread of the data path: the send counter is an atomic, the
//! receive replay window sits behind its own small lock, taken only after a packet authenticated.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};

use crate::noise::handshake::SessionKeys;
use crate::noise::{MESSAGE_TRANSPORT, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use crate::replay::ReplayWindow;
use crate::secret_mem::{after_keyed_call, Locked};
use crate::timers::{
    KEEPALIVE_TIMEOUT, REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME, REKEY_AFTER_MESSAGES,
    REKEY_AFTER_TIME, REKEY_TIMEOUT,
};

const TAG_LEN: usize = 16;

/// Why a transport message could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// The session is older than REJECT_AFTER_TIME or used REJECT_AFTER_MESSAGES counters.
    Expired,
    /// The buffer cannot hold header, padded plaintext and tag.
    BufferTooSmall,
    /// Not a transport message of this session.
    Malformed,
    /// The tag did not authenticate.
    Decrypt,
    /// The counter was already received or fell out of the replay window.
    Replayed,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportError::Expired => "session expired (REJECT_AFTER_TIME or _MESSAGES)",
            TransportError::BufferTooSmall => "buffer too small for a transport message",
            TransportError::Malformed => "malformed transport message",
            TransportError::Decrypt => "transport message does not authenticate",
            TransportError::Replayed => "transport counter replayed or too old",
        })
    }
}

impl std::error::Error for TransportError {}

/// The transport keys and counters of one session.
pub struct Keypair {
    local_index: u32,
    remote_index: u32,
    is_initiator: bool,
    /// The public key of our static key in the handshake that made this session: after a key
    /// switch, only sessions of the new key prove that peers accept it (`rotate`).
    static_public: [u8; 32],
    birth: Instant,
    /// In locked, non-dumpable memory, wiped when the session is dropped (retired, or its peer
    /// removed): ring's keys do not zeroize themselves (see `secret_mem::Locked`).
    send_key: Locked<LessSafeKey>,
    receive_key: Locked<LessSafeKey>,
    send_counter: AtomicU64,
    replay: Mutex<ReplayWindow>,
    /// Cleared when the peer drops the session (rotation, key zeroing), so copies of the Arc
    /// held elsewhere stop working at once.
    valid: AtomicBool,
}

fn aead_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte ChaCha20 key"))
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Plaintext length after padding to a multiple of 16 (a keepalive stays empty).
pub fn padded_len(len: usize) -> usize {
    len.div_ceil(16) * 16
}

impl Keypair {
    /// The session a handshake just derived, born `now`, made by a static key not recorded
    /// (all zeros: it never counts as a given key's session; for a peer outside a device).
    pub fn new(keys: &SessionKeys, now: Instant) -> Keypair {
        Keypair::made_with(keys, [0; 32], now)
    }

    /// The session a handshake with our static key `static_public` just derived, born `now`.
    pub fn made_with(keys: &SessionKeys, static_public: [u8; 32], now: Instant) -> Keypair {
        Keypair {
            local_index: keys.local_index,
            remote_index: keys.remote_index,
            is_initiator: keys.is_initiator,
            static_public,
            birth: now,
            send_key: Locked::new(|| aead_key(&keys.send)),
            receive_key: Locked::new(|| aead_key(&keys.receive)),
            send_counter: AtomicU64::new(0),
            replay: Mutex::new(ReplayWindow::new()),
            valid: AtomicBool::new(true),
        }
    }

    /// The index peers put in messages to us for this session.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// The index we put in messages to the peer.
    pub fn remote_index(&self) -> u32 {
        self.remote_index
    }

    /// Whether we initiated the handshake that made this session.
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// The public key of our static key in the handshake that made this session.
    pub fn static_public(&self) -> [u8; 32] {
        self.static_public
    }

    /// When the session was derived.
    pub fn birth(&self) -> Instant {
        self.birth
    }

    /// Counters used for sending so far.
    pub fn sent_messages(&self) -> u64 {
        self.send_counter.load(Ordering::Relaxed)
    }

    fn expired(&self, now: Instant) -> bool {
        !self.valid.load(Ordering::Relaxed)
            || now.saturating_duration_since(self.birth) >= REJECT_AFTER_TIME
    }

    /// The peer dropped this session: refuse to seal or open anything with it from now on.
    pub fn invalidate(&self) {
        self.valid.store(false, Ordering::Relaxed);
    }

    /// Whether the session is still one of its peer's (not rotated out or zeroed).
    pub fn is_valid(&self) -> bool {
        self.valid.load(Ordering::Relaxed)
    }

    /// Whether the session may still send: young enough and counters left.
    pub fn can_send(&self, now: Instant) -> bool {
        !self.expired(now) && self.sent_messages() < REJECT_AFTER_MESSAGES
    }

    /// Seal `buf[16..16 + len]` (the plaintext, placed there by the caller) into a transport
    /// message in `buf`: header, plaintext padded to 16 (not beyond the buffer), tag. Returns the
    /// message's length. A keepalive is `len == 0`.
    pub fn encrypt(
        &self,
        buf: &mut [u8],
        len: usize,
        now: Instant,
    ) -> Result<usize, TransportError> {
        if buf.len() < TRANSPORT_OVERHEAD + len {
            return Err(TransportError::BufferTooSmall);
        }
        let counter = self.reserve_counters(1, now)?;
        self.seal(buf, len, counter)
    }

    /// Take `n` consecutive send counters for messages sealed later with [`Keypair::seal`],
    /// possibly on several threads: the messages are numbered in the order the caller sends
    /// them, whichever thread seals which. Refuses the whole run when the session expired or
    /// the run would reach REJECT_AFTER_MESSAGES, so no counter is ever used twice.
    pub fn reserve_counters(&self, n: u64, now: Instant) -> Result<u64, TransportError> {
        if self.expired(now) {
            return Err(TransportError::Expired);
        }
        let first = self.send_counter.fetch_add(n, Ordering::Relaxed);
        if first.saturating_add(n) > REJECT_AFTER_MESSAGES {
            // Leave the counter saturated so no later call reuses a nonce either.
            self.send_counter
                .store(REJECT_AFTER_MESSAGES, Ordering::Relaxed);
            return Err(TransportError::Expired);
        }
        Ok(first)
    }

    /// Seal `buf[16..16 + len]` with `counter`, which the caller took from
    /// [`Keypair::reserve_counters`] and uses exactly once.
    pub fn seal(&self, buf: &mut [u8], len: usize, counter: u64) -> Result<usize, TransportError> {
        if buf.len() < TRANSPORT_OVERHEAD + len {
            return Err(TransportError::BufferTooSmall);
        }
        let padded = padded_len(len).min(buf.len() - TRANSPORT_OVERHEAD);
        buf[TRANSPORT_HEADER_LEN + len..TRANSPORT_HEADER_LEN + padded].fill(0);
        buf[..4].copy_from_slice(&[MESSAGE_TRANSPORT, 0, 0, 0]);
        buf[4..8].copy_from_slice(&self.remote_index.to_le_bytes());
        buf[8..16].copy_from_slice(&counter.to_le_bytes());
        let body = &mut buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + padded];
        let tag: Tag = after_keyed_call(|| {
            self.send_key
                .seal_in_place_separate_tag(nonce(counter), Aad::empty(), body)
        })
        .map_err(|_| TransportError::BufferTooSmall)?;
        let end = TRANSPORT_HEADER_LEN + padded;
        buf[end..end + TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(end + TAG_LEN)
    }

    /// Open the transport message `buf` in place. On success the plaintext (still padded; the IP
    /// header inside gives the real length) is `buf[16..16 + n]` and `n` is returned; `n == 0` is
    /// a keepalive. The counter is checked against the replay window after authentication.
    pub fn decrypt(&self, buf: &mut [u8], now: Instant) -> Result<usize, TransportError> {
        let (n, counter) = self.open(buf, now)?;
        if !self.accept_counter(counter) {
            return Err(TransportError::Replayed);
        }
        Ok(n)
    }

    /// Authenticate and decrypt the transport message `buf` in place, without looking at the
    /// replay window: returns the plaintext length and the message's counter, which the caller
    /// must pass to [`Keypair::accept_counter`], in arrival order, before using the plaintext.
    /// Split so that several threads can open a batch and one thread then checks the counters
    /// in order, as the kernel's receive path does.
    pub fn open(&self, buf: &mut [u8], now: Instant) -> Result<(usize, u64), TransportError> {
        if buf.len() < TRANSPORT_OVERHEAD
            || buf[..4] != [MESSAGE_TRANSPORT, 0, 0, 0]
            || buf[4..8] != self.local_index.to_le_bytes()
        {
            return Err(TransportError::Malformed);
        }
        if self.expired(now) {
            return Err(TransportError::Expired);
        }
        let counter = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(TransportError::Replayed);
        }
        let n = buf.len() - TRANSPORT_OVERHEAD;
        after_keyed_call(|| {
            self.receive_key
                .open_in_place(
                    nonce(counter),
                    Aad::empty(),
                    &mut buf[TRANSPORT_HEADER_LEN..],
                )
                .map(|_| ())
        })
        .map_err(|_| TransportError::Decrypt)?;
        Ok((n, counter))
    }

    /// The replay check of an authenticated message's counter: true the first time a counter
    /// inside the window is seen, false for a repeat or one that fell out of the window.
    pub fn accept_counter(&self, counter: u64) -> bool {
        self.replay.lock().check_and_update(counter)
    }

    /// Whether sending should start a new handshake: too many messages, or (initiator only)
    /// older than REKEY_AFTER_TIME.
    pub fn needs_rekey_on_send(&self, now: Instant) -> bool {
        self.sent_messages() >= REKEY_AFTER_MESSAGES
            || (self.is_initiator && now.saturating_duration_since(self.birth) >= REKEY_AFTER_TIME)
    }

    /// Whether receiving should start a new handshake: an initiator's session nearing
    /// REJECT_AFTER_TIME (so the tunnel does not stall when only the responder sends).
    pub fn needs_rekey_on_receive(&self, now: Instant) -> bool {
        self.is_initiator
            && now.saturating_duration_since(self.birth)
                >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
    }

    #[cfg(test)]
    pub(crate) fn set_send_counter(&self, value: u64) {
        self.send_counter.store(value, Ordering::Relaxed);
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod stack_tests;
