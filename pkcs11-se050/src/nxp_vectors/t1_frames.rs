//! T=1 over I2C frames, host encoder and decoder against NXP's framing
//! (hostlib/hostLib/libCommon/smCom/T1oI2C/phNxpEseProto7816_3.c, built with T1oI2C_UM11225):
//! - `phNxpEseProto7816_ComputeCRC`: CRC-16 reflected 0x8408, init FFFF, final XOR FFFF, then
//!   byte-swapped for UM11225; `SendIframe` / `SendSFrame` / `sendRframe` store `crc >> 8`
//!   then `crc & FF`: the CRC goes out least significant byte first.
//! - `SendIframe`: NAD 5A (SEND_PACKET_SOF), PCB = N(S) << 6 | 0x20 when chained
//!   (PH_PROTO_7816_CHAINING), LEN one byte, INF.
//! - `SendSFrame`: PCB C0 | type for requests (RESYNCH 00, GET ATR 07, interface soft reset 0F,
//!   chip reset 06, END OF APDU 05), E3 for the WTX response with LEN 1, INF 01.
//! - `sendRframe`: `5A 80 00` | N(R) << 4 (N(R) = received N(S) ^ 1) | 01 parity / 02 other
//!   error.
//! - `phNxpEseProto7816_CheckCRC` reads a frame from the chip the same way (NAD A5).
//!
//! The bytes below are `derive.py`'s output. Four of them are also in
//! /work/shared/notes/se050.md, gathered independently (RESYNCH, soft reset, GET ATR, R-ACK).

use super::*;
use crate::t1::frame::{Frame, Pcb, RError, SKind};

fn s_request(kind: SKind) -> Frame {
    Frame::to_se(
        Pcb::S {
            kind,
            response: false,
        },
        &[],
    )
}

#[test]
fn s_block_requests_are_nxp_sendsframe() {
    let vectors = [
        (SKind::Resynch, "5A C0 00 FF FC"),
        (SKind::GetAtr, "5A C7 00 F7 B1"),
        (SKind::SoftReset, "5A CF 00 37 7F"),
        (SKind::ChipReset, "5A C6 00 2F A8"),
        (SKind::EndOfApduSession, "5A C5 00 47 82"),
    ];
    for (kind, nxp) in vectors {
        assert_bytes(&format!("{kind:?}"), &s_request(kind).encode(), &hex(nxp));
    }
}

/// NXP answers every WTX request with INF 01 (`SendSFrame`, WTX_RSP); the host echoes the
/// multiplier asked for, which for a request of 01 is the same frame.
#[test]
fn wtx_response_is_nxp_sendsframe_wtx_rsp() {
    let frame = Frame::to_se(
        Pcb::S {
            kind: SKind::Wtx,
            response: true,
        },
        &[0x01],
    );
    assert_bytes(
        "S(WTX response)",
        &frame.encode(),
        &hex("5A E3 01 01 F2 1B"),
    );
}

#[test]
fn r_blocks_are_nxp_sendrframe() {
    let r = |nr, error| Frame::to_se(Pcb::R { nr, error }, &[]).encode();
    assert_bytes(
        "R-ACK after I(0)",
        &r(1, RError::None),
        &hex("5A 90 00 08 2F"),
    );
    assert_bytes(
        "R-ACK after I(1)",
        &r(0, RError::None),
        &hex("5A 80 00 99 BA"),
    );
    assert_bytes("R-NAK CRC", &r(1, RError::Crc), &hex("5A 91 00 D0 36"));
    assert_bytes("R-NAK other", &r(0, RError::Other), &hex("5A 82 00 29 89"));
}

/// The SELECT in the first I-block after a RESYNCH (N(S) = 0).
#[test]
fn i_block_is_nxp_sendiframe() {
    let select = hex("00A4040010A000000396545300000001030000000000");
    let frame = Frame::to_se(Pcb::I { ns: 0, more: false }, &select);
    assert_bytes(
        "I(0) SELECT",
        &frame.encode(),
        &hex("5A 00 16 00A4040010A000000396545300000001030000000000 A8 C8"),
    );
}

/// A 300-byte command chained at IFSC 254: I(N(S), M) with 254 bytes, then the rest.
#[test]
fn chained_i_blocks_are_nxp_sendiframe() {
    let apdu: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    let first = Frame::to_se(Pcb::I { ns: 1, more: true }, &apdu[..254]).encode();
    assert_bytes("I(1, M) header", &first[..3], &hex("5A 60 FE"));
    assert_bytes("I(1, M) CRC", &first[257..], &hex("B8 4E"));
    assert_eq!(first.len(), 259);
    let rest = Frame::to_se(Pcb::I { ns: 0, more: false }, &apdu[254..]).encode();
    let mut expected = hex("5A 00 2E");
    expected.extend_from_slice(&apdu[254..]);
    expected.extend_from_slice(&hex("CC 75"));
    assert_bytes("I(0) rest", &rest, &expected);
}

/// Frames from the chip, CRC as `phNxpEseProto7816_CheckCRC` checks it. The ATR is the one
/// NXP's middleware logged from a real SE050 (community.nxp.com, thread 1191062 "SE050 key
/// rotation demo", "sss:INFO :atr (Len=35)"), the same as `t1::atr::REAL_SE050_ATR`.
#[test]
fn chip_frames_decode_with_nxp_crc() {
    let atr = hex(
        "00 A0 00 00 03 96 04 03 E8 00 FE 02 0B 03 E8 08 01 00 00 00 00 64 00 00 0A 4A 43 4F 50 \
         34 20 41 54 50 4F",
    );
    assert_eq!(atr, crate::t1::atr::REAL_SE050_ATR);
    let mut frame = hex("A5 E7 23");
    frame.extend_from_slice(&atr);
    frame.extend_from_slice(&hex("2A 8D"));
    let decoded = Frame::decode(&frame).unwrap();
    assert_eq!(
        decoded.pcb,
        Pcb::S {
            kind: SKind::GetAtr,
            response: true
        }
    );
    assert_eq!(&decoded.inf[..], &atr[..]);

    let vectors = [
        (
            "A5 E0 00 3F 19",
            Pcb::S {
                kind: SKind::Resynch,
                response: true,
            },
            "",
        ),
        (
            "A5 00 02 90 00 02 AF",
            Pcb::I { ns: 0, more: false },
            "9000",
        ),
        (
            "A5 C3 01 01 1B DD",
            Pcb::S {
                kind: SKind::Wtx,
                response: false,
            },
            "01",
        ),
    ];
    for (bytes, pcb, inf) in vectors {
        let decoded = Frame::decode(&hex(bytes)).unwrap_or_else(|e| panic!("{bytes}: {e}"));
        assert_eq!(
            (decoded.pcb, &decoded.inf[..]),
            (pcb, &hex(inf)[..]),
            "{bytes}"
        );
        // The CRC bytes swapped are refused.
        let mut swapped = hex(bytes);
        let n = swapped.len();
        swapped.swap(n - 2, n - 1);
        assert!(
            Frame::decode(&swapped).is_err(),
            "{bytes} with its CRC swapped"
        );
    }
}
