//! The chip's link driven with hand-written UM11225 frames (no host driver involved).

use super::*;
use crate::wire::crc;

/// An applet that answers every command with its own bytes reversed and 9000.
struct Mirror;

impl ApduHandler for Mirror {
    fn process(&mut self, command: &[u8]) -> Processed {
        let mut data = command.to_vec();
        data.reverse();
        Processed {
            response: wire::apdu::response(&data, wire::apdu::StatusWord::OK),
            busy: Duration::ZERO,
        }
    }
}

fn chip() -> VirtualSe050 {
    VirtualSe050::new(Box::new(Mirror), VirtualOptions::default())
}

fn exchange(chip: &mut VirtualSe050, frame: &[u8], answer_len: usize) -> Vec<u8> {
    chip.write(DEFAULT_ADDRESS, frame).unwrap();
    let mut answer = vec![0u8; answer_len];
    chip.read(DEFAULT_ADDRESS, &mut answer).unwrap();
    answer
}

fn with_crc(mut frame: Vec<u8>) -> Vec<u8> {
    let check = crc::on_wire(&frame);
    frame.extend_from_slice(&check);
    frame
}

#[test]
fn resynch_get_atr_and_an_i_block_by_hand() {
    let mut chip = chip();
    // S(RESYNCH request) -> S(RESYNCH response): A5 E0 00 CRC.
    let answer = exchange(&mut chip, &[0x5A, 0xC0, 0x00, 0xFF, 0xFC], 5);
    assert_eq!(answer, with_crc(vec![0xA5, 0xE0, 0x00]));
    // S(GET ATR request) -> S(GET ATR response) with the 35-byte ATR.
    let answer = exchange(&mut chip, &[0x5A, 0xC7, 0x00, 0xF7, 0xB1], 3 + 35 + 2);
    assert_eq!(answer[..3], [0xA5, 0xE7, 35]);
    assert_eq!(answer[3..38], atr::SE050_ATR);
    // I(0, no more) carrying `80 04 00 20` -> I(0) carrying `20 00 04 80 90 00`.
    let answer = exchange(
        &mut chip,
        &with_crc(vec![0x5A, 0x00, 0x04, 0x80, 0x04, 0x00, 0x20]),
        11,
    );
    assert_eq!(
        answer,
        with_crc(vec![0xA5, 0x00, 0x06, 0x20, 0x00, 0x04, 0x80, 0x90, 0x00])
    );
    // The next command carries N(S) = 1; the chip's next I-block N(S) = 1 (PCB 0x40).
    let answer = exchange(&mut chip, &with_crc(vec![0x5A, 0x40, 0x01, 0xAB]), 8);
    assert_eq!(answer, with_crc(vec![0xA5, 0x40, 0x03, 0xAB, 0x90, 0x00]));
}

#[test]
fn a_frame_whose_crc_bytes_are_swapped_is_answered_with_r_crc_error() {
    let mut chip = chip();
    // RESYNCH with its CRC high byte first: damaged for a UM11225 chip.
    let answer = exchange(&mut chip, &[0x5A, 0xC0, 0x00, 0xFC, 0xFF], 5);
    assert_eq!(
        answer,
        with_crc(vec![0xA5, 0x81, 0x00]),
        "R(N(R)=0, CRC error)"
    );
    assert_eq!(chip.stats().bad_frames_received, 1);
}

#[test]
fn a_chained_command_is_acknowledged_block_by_block() {
    let mut chip = chip();
    // I(0, more) with 2 bytes -> R(N(R)=1): A5 90 00.
    let answer = exchange(&mut chip, &with_crc(vec![0x5A, 0x20, 0x02, 0x80, 0x04]), 5);
    assert_eq!(answer, with_crc(vec![0xA5, 0x90, 0x00]));
    // I(1, last) with the rest -> the whole command mirrored.
    let answer = exchange(&mut chip, &with_crc(vec![0x5A, 0x40, 0x02, 0x00, 0x20]), 11);
    assert_eq!(
        answer,
        with_crc(vec![0xA5, 0x00, 0x06, 0x20, 0x00, 0x04, 0x80, 0x90, 0x00])
    );
}
