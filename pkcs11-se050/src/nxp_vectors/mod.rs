//! The host's bytes pinned to NXP's: every command the module sends and every kind of response
//! it parses, compared byte for byte with what NXP's Plug & Trust middleware builds for the same
//! call (its APDU builders, TLV helpers, T=1 framing and SCP03 code), or with logs of NXP's
//! middleware talking to real chips. Each vector names its source beside it; `SOURCES.md` lists
//! them all, and `derive.py` re-states, step by step, the NXP functions the hand-derived
//! vectors (CRCs, SCP03 cryptograms and wrapped commands) come from.
//!
//! NXP's middleware is NXP/plug-and-trust at commit 9721d640e21fa40ca9a3963b89ede078ea410365
//! (v04.07.01 plus an SBOM commit); "NXP" below means that tree unless a log is cited.
//!
//! The host code is driven through its public byte-level interfaces only: `applet::Se050` over
//! a recording [`ApduTransport`] that answers canned, NXP-shaped responses; `t1::frame`'s
//! encoder and decoder; `scp03::session::SecureMessaging` with fixed keys and challenges.
//!
//! Where the host's bytes differ from NXP's the vector pins both and says how; every such
//! difference is listed in `SOURCES.md` ("Where the host differs from NXP").

mod applet_commands;
mod attest;
mod ec_commands;
mod responses;
mod scp03;
mod scp03_model;
mod scp03_transport;
mod t1_frames;
mod t1_link;
mod tlv;

use crate::t1::{ApduTransport, LinkError};
use crate::wipe::SecretBytes;
use std::collections::VecDeque;
use zeroize::Zeroizing;

/// Hex digits, spaces ignored.
pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {text:?}"
    );
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Records every command APDU and answers each with the next canned response.
#[derive(Default)]
pub(crate) struct Recorder {
    pub sent: Vec<Vec<u8>>,
    replies: VecDeque<Vec<u8>>,
}

impl Recorder {
    /// A recorder that answers the SELECT with the SE050E's logged answer, then `replies`.
    pub fn selected(replies: &[&str]) -> Recorder {
        let mut all = vec![responses::SELECT_RESPONSE_SE050E];
        all.extend_from_slice(replies);
        Recorder::answering(&all)
    }

    pub fn answering(replies: &[&str]) -> Recorder {
        Recorder {
            sent: Vec::new(),
            replies: replies.iter().map(|r| hex(r)).collect(),
        }
    }
}

impl ApduTransport for Recorder {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        self.sent.push(command.to_vec());
        let reply = self
            .replies
            .pop_front()
            .unwrap_or_else(|| panic!("no canned reply left for {}", to_hex(command)));
        Ok(Zeroizing::new(reply))
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Asserts equal byte strings, printing both in hex when they differ.
#[track_caller]
pub(crate) fn assert_bytes(what: &str, actual: &[u8], expected: &[u8]) {
    assert!(
        actual == expected,
        "{what}:\n  host     {}\n  expected {}",
        to_hex(actual),
        to_hex(expected)
    );
}

/// A command APDU split by ISO 7816-4's rules (written here, not the host's parser, so that a
/// fault in the host's APDU code cannot hide in the comparison).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split {
    pub header: [u8; 4],
    pub data: Vec<u8>,
    /// Ne as the Le field says (`00` short = 256, `00 00` extended = 65536).
    pub le: Option<usize>,
    pub extended: bool,
}

pub(crate) fn split(apdu: &[u8]) -> Split {
    let header: [u8; 4] = apdu[..4].try_into().expect("a 4-byte header");
    let body = &apdu[4..];
    let short_le = |b: u8| if b == 0 { 256 } else { b as usize };
    let ext_le = |hi: u8, lo: u8| match u16::from_be_bytes([hi, lo]) {
        0 => 65536,
        n => n as usize,
    };
    match body {
        [] => Split {
            header,
            data: vec![],
            le: None,
            extended: false,
        },
        [le] => Split {
            header,
            data: vec![],
            le: Some(short_le(*le)),
            extended: false,
        },
        [0, hi, lo] => Split {
            header,
            data: vec![],
            le: Some(ext_le(*hi, *lo)),
            extended: true,
        },
        [0, hi, lo, rest @ ..] => {
            let lc = u16::from_be_bytes([*hi, *lo]) as usize;
            let le = match &rest[lc..] {
                [] => None,
                [hi, lo] => Some(ext_le(*hi, *lo)),
                other => panic!("extended APDU with {} bytes after its data", other.len()),
            };
            Split {
                header,
                data: rest[..lc].to_vec(),
                le,
                extended: true,
            }
        }
        [lc, rest @ ..] => {
            let lc = *lc as usize;
            let le = match &rest[lc..] {
                [] => None,
                [le] => Some(short_le(*le)),
                other => panic!("short APDU with {} bytes after its data", other.len()),
            };
            Split {
                header,
                data: rest[..lc].to_vec(),
                le,
                extended: false,
            }
        }
    }
}
