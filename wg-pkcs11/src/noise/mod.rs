//! Noise_IKpsk2 as WireGuard frames it: message types and sizes, the handshake, indices.
//!
//! Which functions need the static key (and so run on the handshake worker) is spelled out in
//! `PROTOCOL_API.md`; everything the packet path calls here is static-key free.

pub mod handshake;
pub mod index;
pub mod low_order;
pub mod primitives;
pub mod tai64n;

use std::fmt;

use crate::key::KeyError;

pub use handshake::{consume_initiation, initiation_ephemeral, Identity, ReceivedInitiation};
pub use index::IndexTable;
pub use low_order::is_low_order;
pub use tai64n::Timestamp;

/// Message type of a handshake initiation.
pub const MESSAGE_INITIATION: u8 = 1;
/// Message type of a handshake response.
pub const MESSAGE_RESPONSE: u8 = 2;
/// Message type of a cookie reply.
pub const MESSAGE_COOKIE_REPLY: u8 = 3;
/// Message type of a transport data message.
pub const MESSAGE_TRANSPORT: u8 = 4;

/// Size of a handshake initiation.
pub const INITIATION_LEN: usize = 148;
/// Size of a handshake response.
pub const RESPONSE_LEN: usize = 92;
/// Size of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Type, reserved bytes, receiver index and counter in front of every transport message.
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Bytes a transport message adds to its (padded) plaintext: header and tag.
pub const TRANSPORT_OVERHEAD: usize = TRANSPORT_HEADER_LEN + primitives::TAG_LEN;

/// The four kinds of WireGuard messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Initiation,
    Response,
    CookieReply,
    Transport,
}

/// The kind of `packet`, if it is well framed: a known type byte, three zero bytes, and the exact
/// size of its kind (a transport message: at least header and tag, and a multiple of 16 inside).
/// Anything else is dropped without reply.
pub fn message_type(packet: &[u8]) -> Option<MessageType> {
    if packet.len() < 4 || packet[1..4] != [0, 0, 0] {
        return None;
    }
    match (packet[0], packet.len()) {
        (MESSAGE_INITIATION, INITIATION_LEN) => Some(MessageType::Initiation),
        (MESSAGE_RESPONSE, RESPONSE_LEN) => Some(MessageType::Response),
        (MESSAGE_COOKIE_REPLY, COOKIE_REPLY_LEN) => Some(MessageType::CookieReply),
        (MESSAGE_TRANSPORT, n) if n >= TRANSPORT_OVERHEAD => Some(MessageType::Transport),
        _ => None,
    }
}

/// The receiver index of a response, cookie reply or transport message (bytes 4..8 of a transport
/// message and cookie reply, 8..12 of a response).
pub fn receiver_index(packet: &[u8]) -> Option<u32> {
    let at = match message_type(packet)? {
        MessageType::Initiation => return None,
        MessageType::Response => 8,
        MessageType::CookieReply | MessageType::Transport => 4,
    };
    Some(read_u32(packet, at))
}

/// The sender index of an initiation or response.
pub fn sender_index(packet: &[u8]) -> Option<u32> {
    match message_type(packet)? {
        MessageType::Initiation | MessageType::Response => Some(read_u32(packet, 4)),
        _ => None,
    }
}

pub(crate) fn read_u32(packet: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(packet[at..at + 4].try_into().expect("4 bytes"))
}

/// Why a handshake message was refused (nothing is sent back for any of these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not a well-framed message of the expected type and size.
    Malformed(&'static str),
    /// The static key could not do its Diffie-Hellman (token failure or low-order point).
    Key(KeyError),
    /// An ephemeral Diffie-Hellman gave all zeros: the peer sent a low-order point.
    LowOrderPoint,
    /// An AEAD field did not authenticate (wrong keys, tampered message).
    Decrypt(&'static str),
    /// The initiation came from a public key that is not a configured peer.
    UnknownPeer,
    /// The initiation's timestamp is not newer than the last one accepted from this peer.
    ReplayedTimestamp,
    /// A response arrived that does not answer our pending initiation.
    NoPendingHandshake,
    /// An initiation was sent to this peer less than REKEY_TIMEOUT ago.
    RateLimited,
    /// A cookie reply did not decrypt or answers nothing we sent.
    BadCookieReply,
    /// The peer was removed while its handshake was in progress: its session is discarded.
    PeerRemoved,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed(what) => write!(f, "malformed handshake message: {what}"),
            HandshakeError::Key(e) => write!(f, "static key: {e}"),
            HandshakeError::LowOrderPoint => write!(f, "peer sent a low-order ephemeral key"),
            HandshakeError::Decrypt(what) => write!(f, "{what} does not authenticate"),
            HandshakeError::UnknownPeer => write!(f, "initiation from an unknown public key"),
            HandshakeError::ReplayedTimestamp => {
                write!(
                    f,
                    "initiation timestamp not newer than the last one accepted (replay)"
                )
            }
            HandshakeError::NoPendingHandshake => {
                write!(f, "response does not answer a pending initiation")
            }
            HandshakeError::RateLimited => write!(f, "initiation sent less than REKEY_TIMEOUT ago"),
            HandshakeError::BadCookieReply => write!(f, "cookie reply does not decrypt"),
            HandshakeError::PeerRemoved => write!(f, "the peer was removed during its handshake"),
        }
    }
}

impl std::error::Error for HandshakeError {}

impl From<KeyError> for HandshakeError {
    fn from(e: KeyError) -> Self {
        HandshakeError::Key(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_checked_exactly() {
        let mut init = [0u8; INITIATION_LEN];
        init[0] = 1;
        assert_eq!(message_type(&init), Some(MessageType::Initiation));
        assert_eq!(message_type(&init[..147]), None);
        init[2] = 1;
        assert_eq!(message_type(&init), None, "reserved bytes must be zero");
        let mut resp = [0u8; RESPONSE_LEN];
        resp[0] = 2;
        resp[8..12].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        assert_eq!(receiver_index(&resp), Some(0x1234_5678));
        let mut t = [0u8; 32];
        t[0] = 4;
        assert_eq!(message_type(&t), Some(MessageType::Transport));
        assert_eq!(message_type(&t[..31]), None);
        t[0] = 5;
        assert_eq!(message_type(&t), None);
        assert_eq!(message_type(&[]), None);
        let mut c = [0u8; COOKIE_REPLY_LEN];
        c[0] = 3;
        assert_eq!(message_type(&c), Some(MessageType::CookieReply));
        assert_eq!(message_type(&c[..63]), None);
    }
}
