//! mac1, mac2 and cookie replies: WireGuard's defence against handshake floods.
//!
//! mac1 proves the sender knows our public key (nothing is ever sent in reply to a bad mac1).
//! Under load (the device decides when) an initiation must also carry a valid mac2: a MAC keyed
//! with a cookie we gave its source address in a cookie reply. Cookies are MAC(secret, address)
//! under a secret that changes every two minutes, so nothing per sender is stored.
//! None of this touches the static private key: it runs on the packet path.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use parking_lot::Mutex;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::noise::primitives::{hash, mac, verify_mac};
use crate::noise::{
    message_type, read_u32, sender_index, HandshakeError, MessageType, COOKIE_REPLY_LEN,
    MESSAGE_COOKIE_REPLY,
};

/// "mac1----"
pub const LABEL_MAC1: &[u8] = b"mac1----";
/// "cookie--"
pub const LABEL_COOKIE: &[u8] = b"cookie--";
/// The checker's secret changes this often; a received cookie is used this long at most.
pub const COOKIE_SECRET_MAX_AGE: Duration = Duration::from_secs(120);
/// A received cookie is dropped this much before its secret may have changed.
pub const COOKIE_SECRET_LATENCY: Duration = Duration::from_secs(5);

const MAC_LEN: usize = 16;
const COOKIE_NONCE: usize = 8;
const COOKIE_SEALED: usize = 32;

/// mac1 and mac2 are the last 32 bytes of an initiation or response.
fn mac_offsets(msg: &[u8]) -> Option<(usize, usize)> {
    match message_type(msg)? {
        MessageType::Initiation | MessageType::Response => {
            Some((msg.len() - 2 * MAC_LEN, msg.len() - MAC_LEN))
        }
        _ => None,
    }
}

/// The bytes a cookie is bound to: the source IP address and port.
fn address_bytes(src: &SocketAddr) -> ([u8; 18], usize) {
    let mut out = [0u8; 18];
    match src {
        SocketAddr::V4(a) => {
            out[..4].copy_from_slice(&a.ip().octets());
            out[4..6].copy_from_slice(&a.port().to_be_bytes());
            (out, 6)
        }
        SocketAddr::V6(a) => {
            out[..16].copy_from_slice(&a.ip().octets());
            out[16..18].copy_from_slice(&a.port().to_be_bytes());
            (out, 18)
        }
    }
}

/// The receiving side: checks mac1/mac2 of messages to us and makes cookie replies.
pub struct CookieChecker {
    /// (mac1 key, cookie key), both derived from our public key: replaced with it
    /// ([`CookieChecker::set_public_key`]) when the interface's key is rotated.
    keys: parking_lot::RwLock<([u8; 32], [u8; 32])>,
    /// The rotating secret cookies are made with, and when it was made.
    secret: Mutex<Option<(Instant, Zeroizing<[u8; 32]>)>>,
}

impl CookieChecker {
    /// The checker for messages to the interface whose public key is `our_public`.
    pub fn new(our_public: &[u8; 32]) -> CookieChecker {
        CookieChecker {
            keys: parking_lot::RwLock::new(Self::keys_of(our_public)),
            secret: Mutex::new(None),
        }
    }

    fn keys_of(our_public: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
        (
            hash(&[LABEL_MAC1, our_public]),
            hash(&[LABEL_COOKIE, our_public]),
        )
    }

    /// Our public key changed (key rotation): from now on only messages made for the new key
    /// pass mac1, and cookie replies are sealed under the new key's cookie key.
    pub fn set_public_key(&self, our_public: &[u8; 32]) {
        *self.keys.write() = Self::keys_of(our_public);
    }

    /// Whether `msg` is a well-framed initiation or response with a valid mac1. If not, drop it
    /// and send nothing.
    pub fn check_mac1(&self, msg: &[u8]) -> bool {
        let Some((mac1, mac2)) = mac_offsets(msg) else {
            return false;
        };
        let mac1_key = self.keys.read().0;
        verify_mac(&mac1_key, &[&msg[..mac1]], &msg[mac1..mac2])
    }

    fn cookie_for(&self, src: &SocketAddr, now: Instant) -> [u8; 16] {
        let mut secret = self.secret.lock();
        let fresh = matches!(*secret, Some((born, _)) if now.saturating_duration_since(born) < COOKIE_SECRET_MAX_AGE);
        if !fresh {
            let mut s = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(&mut *s);
            *secret = Some((now, s));
        }
        let (_, key) = secret.as_ref().expect("just set");
        let (addr, len) = address_bytes(src);
        mac(&**key, &[&addr[..len]])
    }

    /// Whether `msg` (with a valid mac1) carries a mac2 made with the cookie of `src`.
    pub fn check_mac2(&self, msg: &[u8], src: SocketAddr, now: Instant) -> bool {
        let Some((_, mac2)) = mac_offsets(msg) else {
            return false;
        };
        let cookie = self.cookie_for(&src, now);
        verify_mac(&cookie, &[&msg[..mac2]], &msg[mac2..])
    }

    /// A cookie reply to `msg` (an initiation or response from `src` whose mac1 was valid): the
    /// cookie for `src`, sealed under our cookie key with `msg`'s mac1 as associated data.
    pub fn create_cookie_reply(
        &self,
        msg: &[u8],
        src: SocketAddr,
        now: Instant,
    ) -> Option<[u8; COOKIE_REPLY_LEN]> {
        let (mac1, mac2) = mac_offsets(msg)?;
        let receiver = sender_index(msg)?;
        let mut reply = [0u8; COOKIE_REPLY_LEN];
        reply[0] = MESSAGE_COOKIE_REPLY;
        reply[4..8].copy_from_slice(&receiver.to_le_bytes());
        OsRng.fill_bytes(&mut reply[COOKIE_NONCE..COOKIE_NONCE + 24]);
        let cookie = self.cookie_for(&src, now);
        let (head, sealed) = reply.split_at_mut(COOKIE_NONCE + 24);
        sealed[..MAC_LEN].copy_from_slice(&cookie);
        let cookie_key = self.keys.read().1;
        let tag = XChaCha20Poly1305::new(Key::from_slice(&cookie_key))
            .encrypt_in_place_detached(
                XNonce::from_slice(&head[COOKIE_NONCE..]),
                &msg[mac1..mac2],
                &mut sealed[..MAC_LEN],
            )
            .ok()?;
        sealed[MAC_LEN..COOKIE_SEALED].copy_from_slice(&tag);
        Some(reply)
    }
}

/// The sending side, one per peer: adds mac1/mac2 to our handshake messages and keeps the
/// cookie the peer last gave us.
pub struct CookieState {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    cookie: Option<([u8; 16], Instant)>,
    last_mac1: Option<[u8; 16]>,
}

impl CookieState {
    /// The state for messages to the peer whose public key is `peer_public`.
    pub fn new(peer_public: &[u8; 32]) -> CookieState {
        CookieState {
            mac1_key: hash(&[LABEL_MAC1, peer_public]),
            cookie_key: hash(&[LABEL_COOKIE, peer_public]),
            cookie: None,
            last_mac1: None,
        }
    }

    /// Fill in mac1 and mac2 of an initiation or response we are about to send.
    pub fn add_macs(&mut self, msg: &mut [u8], now: Instant) {
        let Some((mac1, mac2)) = mac_offsets(msg) else {
            return;
        };
        let m1 = mac(&self.mac1_key, &[&msg[..mac1]]);
        msg[mac1..mac2].copy_from_slice(&m1);
        self.last_mac1 = Some(m1);
        let m2 = match self.cookie {
            Some((cookie, received))
                if now.saturating_duration_since(received)
                    < COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY =>
            {
                mac(&cookie, &[&msg[..mac2]])
            }
            _ => [0u8; 16],
        };
        msg[mac2..].copy_from_slice(&m2);
    }

    /// Take the cookie out of a cookie reply to the last message we sent this peer.
    pub fn consume_cookie_reply(
        &mut self,
        reply: &[u8],
        now: Instant,
    ) -> Result<(), HandshakeError> {
        if message_type(reply) != Some(MessageType::CookieReply) {
            return Err(HandshakeError::Malformed("not a 64-byte cookie reply"));
        }
        let last_mac1 = self.last_mac1.ok_or(HandshakeError::BadCookieReply)?;
        let mut cookie = [0u8; 16];
        cookie.copy_from_slice(&reply[COOKIE_NONCE + 24..COOKIE_NONCE + 24 + MAC_LEN]);
        XChaCha20Poly1305::new(Key::from_slice(&self.cookie_key))
            .decrypt_in_place_detached(
                XNonce::from_slice(&reply[COOKIE_NONCE..COOKIE_NONCE + 24]),
                &last_mac1,
                &mut cookie,
                Tag::from_slice(&reply[COOKIE_NONCE + 24 + MAC_LEN..]),
            )
            .map_err(|_| HandshakeError::BadCookieReply)?;
        self.cookie = Some((cookie, now));
        // A reply answers one message; another one for the same mac1 is not accepted.
        self.last_mac1 = None;
        Ok(())
    }
}

/// The receiver index of a cookie reply (the sender index of the message it answers).
pub fn cookie_reply_receiver(reply: &[u8]) -> Option<u32> {
    (message_type(reply)? == MessageType::CookieReply).then(|| read_u32(reply, 4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::{INITIATION_LEN, RESPONSE_LEN};

    fn initiation(sender: u32) -> [u8; INITIATION_LEN] {
        let mut m = [0u8; INITIATION_LEN];
        m[0] = 1;
        m[4..8].copy_from_slice(&sender.to_le_bytes());
        for (i, b) in m[8..116].iter_mut().enumerate() {
            *b = i as u8;
        }
        m
    }

    /// Key rotation: after `set_public_key`, only messages made for the new key pass mac1, and
    /// cookie replies are sealed under the new key's cookie key.
    #[test]
    fn a_new_public_key_replaces_the_mac1_and_cookie_keys() {
        let (old, new) = ([7u8; 32], [9u8; 32]);
        let checker = CookieChecker::new(&old);
        let now = Instant::now();
        let mut for_old = initiation(5);
        CookieState::new(&old).add_macs(&mut for_old, now);
        let mut for_new = initiation(6);
        let mut sender_of_new = CookieState::new(&new);
        sender_of_new.add_macs(&mut for_new, now);
        assert!(checker.check_mac1(&for_old) && !checker.check_mac1(&for_new));
        checker.set_public_key(&new);
        assert!(
            !checker.check_mac1(&for_old),
            "the old key's mac1 still passes"
        );
        assert!(
            checker.check_mac1(&for_new),
            "the new key's mac1 does not pass"
        );
        let src: SocketAddr = "10.0.0.1:5".parse().unwrap();
        let reply = checker.create_cookie_reply(&for_new, src, now).unwrap();
        assert!(
            sender_of_new.consume_cookie_reply(&reply, now).is_ok(),
            "the cookie reply is not sealed under the new key's cookie key"
        );
    }

    #[test]
    fn mac1_needs_the_right_public_key() {
        let ours = [7u8; 32];
        let checker = CookieChecker::new(&ours);
        let now = Instant::now();
        let mut m = initiation(5);
        assert!(!checker.check_mac1(&m), "no mac1");
        CookieState::new(&ours).add_macs(&mut m, now);
        assert!(checker.check_mac1(&m));
        let mut other = initiation(5);
        CookieState::new(&[8u8; 32]).add_macs(&mut other, now);
        assert!(!checker.check_mac1(&other));
        m[50] ^= 1;
        assert!(!checker.check_mac1(&m), "covered bytes changed");
        assert!(!checker.check_mac1(&m[..100]));
        let mut r = [0u8; RESPONSE_LEN];
        r[0] = 2;
        CookieState::new(&ours).add_macs(&mut r, now);
        assert!(checker.check_mac1(&r));
    }

    #[test]
    fn cookie_exchange_gives_a_valid_mac2_for_that_address_only() {
        let ours = [7u8; 32];
        let checker = CookieChecker::new(&ours);
        let mut sender = CookieState::new(&ours);
        let now = Instant::now();
        let src: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let mut m = initiation(42);
        sender.add_macs(&mut m, now);
        assert!(!checker.check_mac2(&m, src, now), "no cookie yet");
        let reply = checker.create_cookie_reply(&m, src, now).unwrap();
        assert_eq!(cookie_reply_receiver(&reply), Some(42));
        sender.consume_cookie_reply(&reply, now).unwrap();
        assert_eq!(
            sender.consume_cookie_reply(&reply, now),
            Err(HandshakeError::BadCookieReply),
            "a reply is used once"
        );
        let mut m = initiation(43);
        sender.add_macs(&mut m, now);
        assert!(checker.check_mac1(&m));
        assert!(checker.check_mac2(&m, src, now));
        assert!(!checker.check_mac2(&m, "192.0.2.1:51821".parse().unwrap(), now));
        assert!(!checker.check_mac2(&m, "[2001:db8::1]:51820".parse().unwrap(), now));
        // The cookie expires with the checker's secret.
        let later = now + COOKIE_SECRET_MAX_AGE;
        assert!(!checker.check_mac2(&m, src, later));
        let mut m = initiation(44);
        sender.add_macs(&mut m, now + COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY);
        assert_eq!(&m[132..], &[0u8; 16], "a stale cookie is not used");
    }

    #[test]
    fn forged_or_misdirected_cookie_replies_are_refused() {
        let ours = [7u8; 32];
        let checker = CookieChecker::new(&ours);
        let mut sender = CookieState::new(&ours);
        let now = Instant::now();
        let src: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        let mut m = initiation(1);
        sender.add_macs(&mut m, now);
        let mut reply = checker.create_cookie_reply(&m, src, now).unwrap();
        reply[40] ^= 1;
        assert_eq!(
            sender.consume_cookie_reply(&reply, now),
            Err(HandshakeError::BadCookieReply)
        );
        // A reply to a message we did not send (other mac1) does not decrypt.
        let reply = checker
            .create_cookie_reply(&initiation(9), src, now)
            .unwrap();
        assert_eq!(
            sender.consume_cookie_reply(&reply, now),
            Err(HandshakeError::BadCookieReply)
        );
        assert!(matches!(
            sender.consume_cookie_reply(&reply[..63], now),
            Err(HandshakeError::Malformed(_))
        ));
        assert!(checker
            .create_cookie_reply(&[4, 0, 0, 0], src, now)
            .is_none());
    }
}
