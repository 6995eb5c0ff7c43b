//! The frames `T1Link` writes on the bus, recorded, against NXP's sequence: `phNxpEseProto7816_Open`
//! with an interface reset (T1oI2C_UM11225) sends RESYNCH then GET ATR; then each APDU goes in
//! I-blocks whose N(S) alternates from 0, chained at the IFSC (254) with the chip's R-block in
//! between (`phNxpEseProto7816_SendIframe`, `phNxpEseProto7816_SetNextIframeContxt`). The chip's
//! frames carry NXP's CRC (derive.py).

use super::*;
use crate::t1::atr::REAL_SE050_ATR;
use crate::t1::link::{T1Link, T1Options};
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};

#[derive(Debug)]
struct Nack;

impl embedded_hal::i2c::Error for Nack {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
    }
}

/// Records each write and answers it with the next frame, read as a byte stream.
struct RecordingBus {
    writes: Vec<Vec<u8>>,
    replies: VecDeque<Vec<u8>>,
    current: Vec<u8>,
}

impl ErrorType for RecordingBus {
    type Error = Nack;
}

impl I2c for RecordingBus {
    fn transaction(&mut self, _: u8, operations: &mut [Operation<'_>]) -> Result<(), Nack> {
        for op in operations {
            match op {
                Operation::Write(bytes) => {
                    self.writes.push(bytes.to_vec());
                    self.current = self.replies.pop_front().ok_or(Nack)?;
                }
                Operation::Read(buf) => {
                    if self.current.len() < buf.len() {
                        return Err(Nack);
                    }
                    buf.copy_from_slice(&self.current[..buf.len()]);
                    self.current.drain(..buf.len());
                }
            }
        }
        Ok(())
    }
}

struct NoDelay;

impl DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}

#[test]
fn link_writes_nxp_frames_for_open_select_and_a_chained_command() {
    let mut atr_response = hex("A5 E7 23");
    atr_response.extend_from_slice(&REAL_SE050_ATR);
    atr_response.extend_from_slice(&hex("2A 8D"));
    let bus = RecordingBus {
        writes: Vec::new(),
        replies: [
            hex("A5 E0 00 3F 19"),
            atr_response,
            hex("A5 00 09 0702003F9FFFFF9000 C2 76"),
            hex("A5 80 00 6A 7C"),
            hex("A5 40 02 9000 B5 B9"),
        ]
        .into_iter()
        .collect(),
        current: Vec::new(),
    };
    let mut link = T1Link::open(bus, NoDelay, T1Options::default()).unwrap();
    let select = hex("00A4040010A000000396545300000001030000000000");
    let answer = link.transceive(&select).unwrap();
    assert_bytes("SELECT answer", &answer, &hex("0702003F9FFFFF9000"));
    let apdu: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    assert_bytes("answer", &link.transceive(&apdu).unwrap(), &hex("9000"));

    let writes = &link.bus().writes;
    assert_eq!(writes.len(), 5);
    assert_bytes("RESYNCH request", &writes[0], &hex("5A C0 00 FF FC"));
    assert_bytes("GET ATR request", &writes[1], &hex("5A C7 00 F7 B1"));
    assert_bytes(
        "I(0) SELECT",
        &writes[2],
        &hex("5A 00 16 00A4040010A000000396545300000001030000000000 A8 C8"),
    );
    assert_bytes("I(1, M) header", &writes[3][..3], &hex("5A 60 FE"));
    assert_bytes("I(1, M) INF", &writes[3][3..257], &apdu[..254]);
    assert_bytes("I(1, M) CRC", &writes[3][257..], &hex("B8 4E"));
    let mut rest = hex("5A 00 2E");
    rest.extend_from_slice(&apdu[254..]);
    rest.extend_from_slice(&hex("CC 75"));
    assert_bytes("I(0) rest", &writes[4], &rest);
}
