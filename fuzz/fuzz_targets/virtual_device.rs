//! The virtual SE050's device side, fed arbitrary host traffic: raw bytes, frames with a
//! valid CRC around any PCB and INF, and APDUs for its applet (after a SELECT, in I-blocks
//! with the right sequence numbers, chained when long). The chip must answer or refuse,
//! never panic, and never buffer more of a command than the chip's APDU buffer.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use embedded_hal::i2c::I2c;
use libfuzzer_sys::fuzz_target;
use pkcs11_se050::apdu::command::CommandApdu;
use pkcs11_se050::applet::protocol::select_command;
use pkcs11_se050::t1::crc::crc_bytes;
use pkcs11_se050::virtual_se050::applet::VirtualApplet;
use pkcs11_se050::virtual_se050::{ApduHandler, VirtualOptions, VirtualSe050, MAX_COMMAND_APDU};

#[derive(Arbitrary, Debug)]
enum HostOp {
    Raw(Vec<u8>),
    Frame {
        pcb: u8,
        inf: Vec<u8>,
    },
    /// An applet APDU in I-blocks: CLA 80, the instruction, and TLVs.
    Apdu {
        ins: u8,
        p1: u8,
        p2: u8,
        tlvs: Vec<(u8, Vec<u8>)>,
        le: Option<u16>,
    },
    Read(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Also run each APDU straight through the applet (no T=1 in between).
    direct: bool,
    ops: Vec<HostOp>,
}

const ADDRESS: u8 = 0x48;

fn frame(pcb: u8, inf: &[u8]) -> Vec<u8> {
    let inf = &inf[..inf.len().min(255)];
    let mut f = vec![0x5A, pcb, inf.len() as u8];
    f.extend_from_slice(inf);
    let crc = crc_bytes(&f);
    f.extend_from_slice(&crc);
    f
}

/// Read and drop whatever the chip has to say (header, then the rest).
fn drain(chip: &mut VirtualSe050) {
    let mut header = [0u8; 3];
    if chip.read(ADDRESS, &mut header).is_ok() {
        let mut rest = vec![0u8; header[2] as usize + 2];
        let _ = chip.read(ADDRESS, &mut rest);
    }
}

fn apdu_bytes(ins: u8, p1: u8, p2: u8, tlvs: &[(u8, Vec<u8>)], le: Option<u16>) -> Vec<u8> {
    let mut data = Vec::new();
    for (tag, value) in tlvs.iter().take(8) {
        pkcs11_se050::apdu::tlv::push(&mut data, *tag, &value[..value.len().min(600)]);
    }
    data.truncate(1200);
    // Ne is 1..=65536 (CommandApdu::encode refuses 0: a caller bug, not chip input).
    CommandApdu::new(0x80, ins, p1, p2, data, le.map(|ne| usize::from(ne).max(1))).encode()
}

fuzz_target!(|input: Input| {
    let mut chip = VirtualSe050::new(
        Box::new(VirtualApplet::in_memory()),
        VirtualOptions {
            bwt: Duration::from_millis(1),
            ..VirtualOptions::default()
        },
    );
    let mut direct = VirtualApplet::in_memory();
    let select = select_command().encode();
    let _ = direct.process(&select);
    let mut ns = 0u8;
    for apdu in [select] {
        let _ = chip.write(ADDRESS, &frame(ns << 6, &apdu));
        ns ^= 1;
        drain(&mut chip);
    }
    for op in input.ops.into_iter().take(32) {
        match op {
            HostOp::Raw(bytes) => {
                let _ = chip.write(ADDRESS, &bytes);
            }
            HostOp::Frame { pcb, inf } => {
                let _ = chip.write(ADDRESS, &frame(pcb, &inf));
            }
            HostOp::Apdu {
                ins,
                p1,
                p2,
                tlvs,
                le,
            } => {
                let apdu = apdu_bytes(ins, p1, p2, &tlvs, le);
                if input.direct {
                    let _ = direct.process(&apdu);
                }
                let chunks: Vec<&[u8]> = apdu.chunks(254).collect();
                for (i, chunk) in chunks.iter().enumerate() {
                    let more = i + 1 < chunks.len();
                    let _ = chip.write(ADDRESS, &frame((ns << 6) | (u8::from(more) << 5), chunk));
                    ns ^= 1;
                    drain(&mut chip);
                }
            }
            HostOp::Read(len) => {
                let mut buf = vec![0u8; usize::from(len) % 300];
                let _ = chip.read(ADDRESS, &mut buf);
            }
        }
        assert!(chip.buffered_command_len() <= MAX_COMMAND_APDU);
    }
});
