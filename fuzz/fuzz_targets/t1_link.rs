//! The host link's reaction to arbitrary chip replies. Two kinds of chip:
//! - `Scripted`: every write is answered with the next fuzzer-made reply (raw bytes, or a
//!   frame with a valid CRC around a fuzzer-chosen PCB and INF). Outcome: an answer or a
//!   clear error, within a bounded time; never a hang, never a panic.
//! - `Faulty`: the virtual SE050 answering a known command, on a bus that NACKs reads and
//!   flips bits (at most one 16-bit burst per frame, which CRC-16 always detects). Outcome:
//!   the right answer or a clear error; never a wrong one (a wrong secret).
#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{ErrorType, I2c, Operation};
use libfuzzer_sys::fuzz_target;
use pkcs11_se050::t1::crc::crc_bytes;
use pkcs11_se050::t1::{ApduTransport, T1Link, T1Options};
use pkcs11_se050::virtual_se050::{
    ApduHandler, Processed, VirtualI2cError, VirtualOptions, VirtualSe050,
};
use pkcs11_se050::wipe::SecretBytes;

#[derive(Arbitrary, Debug)]
enum Reply {
    Raw(Vec<u8>),
    Frame { pcb: u8, inf: Vec<u8> },
    Silence,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Fault {
    Pass,
    Nack,
    /// XOR two adjacent bytes of the read at `at` (header reads: only NAD and PCB).
    Flip {
        at: u8,
        mask: u16,
    },
}

#[derive(Arbitrary, Debug)]
enum Input {
    Scripted {
        open: bool,
        replies: Vec<Reply>,
        command_len: u16,
    },
    Faulty {
        faults: Vec<Fault>,
        command_len: u16,
        response_len: u16,
    },
}

/// No sleeping: the polls still run until the link's time limits pass.
struct Spin;
impl DelayNs for Spin {
    fn delay_ns(&mut self, _ns: u32) {
        std::hint::spin_loop();
    }
}

struct ScriptedChip {
    replies: VecDeque<Reply>,
    current: Vec<u8>,
}

impl ErrorType for ScriptedChip {
    type Error = VirtualI2cError;
}

impl I2c for ScriptedChip {
    fn transaction(&mut self, address: u8, ops: &mut [Operation<'_>]) -> Result<(), Self::Error> {
        let nack = VirtualI2cError {
            address,
            reason: "fuzz: silent",
        };
        for op in ops {
            match op {
                Operation::Write(_) => {
                    self.current = match self.replies.pop_front() {
                        Some(Reply::Raw(bytes)) => bytes,
                        Some(Reply::Frame { pcb, inf }) => {
                            let mut f = vec![0xA5, pcb, inf.len().min(255) as u8];
                            f.extend_from_slice(&inf[..inf.len().min(255)]);
                            let crc = crc_bytes(&f);
                            f.extend_from_slice(&crc);
                            f
                        }
                        Some(Reply::Silence) | None => vec![],
                    }
                }
                Operation::Read(buf) => {
                    if self.current.is_empty() {
                        return Err(nack);
                    }
                    let n = buf.len().min(self.current.len());
                    buf[..n].copy_from_slice(&self.current[..n]);
                    buf[n..].fill(0);
                    self.current.drain(..n);
                }
            }
        }
        Ok(())
    }
}

/// Echo reversed, or `EE hi lo ..`: a response of hi lo bytes; both end in 90 00.
struct Echo;

fn expected(command: &[u8]) -> Vec<u8> {
    let mut out = if command.len() >= 3 && command[0] == 0xEE {
        let n = u16::from_be_bytes([command[1], command[2]]) as usize;
        (0..n).map(|i| (i * 7 + command.len()) as u8).collect()
    } else {
        command.iter().rev().copied().collect::<Vec<_>>()
    };
    out.extend_from_slice(&[0x90, 0x00]);
    out
}

impl ApduHandler for Echo {
    fn process(&mut self, command: &[u8]) -> Processed {
        Processed {
            response: SecretBytes::new(expected(command)),
            busy: Duration::ZERO,
        }
    }
}

struct FaultyBus {
    chip: VirtualSe050,
    faults: VecDeque<Fault>,
    flipped_since_write: bool,
}

impl ErrorType for FaultyBus {
    type Error = VirtualI2cError;
}

impl I2c for FaultyBus {
    fn transaction(&mut self, address: u8, ops: &mut [Operation<'_>]) -> Result<(), Self::Error> {
        for op in ops {
            match op {
                Operation::Write(bytes) => {
                    self.flipped_since_write = false;
                    self.chip.write(address, bytes)?;
                }
                Operation::Read(buf) => {
                    let fault = self.faults.pop_front().unwrap_or(Fault::Pass);
                    if let Fault::Nack = fault {
                        return Err(VirtualI2cError {
                            address,
                            reason: "fuzz: NACK",
                        });
                    }
                    self.chip.read(address, buf)?;
                    if let Fault::Flip { at, mask } = fault {
                        // A header read is 3 bytes: its LEN byte is left alone, since a
                        // changed length moves where the CRC is read from (a different
                        // check than a burst within the checked bytes).
                        let span = if buf.len() == 3 { 2 } else { buf.len() };
                        if !self.flipped_since_write && span >= 2 {
                            let at = at as usize % (span - 1);
                            let [hi, lo] = mask.to_be_bytes();
                            buf[at] ^= hi;
                            buf[at + 1] ^= lo;
                            self.flipped_since_write = hi != 0 || lo != 0;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn command(len: u16) -> Vec<u8> {
    let len = usize::from(len) % 900 + 1;
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29) ^ 0x5C)
        .collect()
}

fn options() -> T1Options {
    T1Options {
        initial_bwt: Duration::from_millis(1),
        poll_interval: Some(Duration::from_micros(100)),
        // Short, so that the silences of a fuzzed chip cost little real time per input.
        max_response_time: Duration::from_millis(30),
        max_retries: 10,
        ..T1Options::default()
    }
}

/// Far beyond max_response_time, so that a loaded machine never trips it: only a hang does.
const HANG: Duration = Duration::from_secs(3);

fuzz_target!(|input: Input| {
    match input {
        Input::Scripted {
            open,
            replies,
            command_len,
        } => {
            let chip = ScriptedChip {
                replies: replies.into_iter().take(64).collect(),
                current: vec![],
            };
            let mut link = if open {
                match T1Link::open(chip, Spin, options()) {
                    Ok(link) => link,
                    Err(e) => return assert!(!e.to_string().is_empty()),
                }
            } else {
                T1Link::new(chip, Spin, options())
            };
            for _ in 0..2 {
                let started = Instant::now();
                let result = link.transceive(&command(command_len));
                assert!(started.elapsed() < HANG, "took {:?}", started.elapsed());
                if let Err(e) = result {
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        Input::Faulty {
            faults,
            command_len,
            response_len,
        } => {
            let chip = VirtualSe050::new(
                Box::new(Echo),
                VirtualOptions {
                    bwt: Duration::from_millis(1),
                    ..VirtualOptions::default()
                },
            );
            let bus = FaultyBus {
                chip,
                faults: faults.into_iter().take(256).collect(),
                flipped_since_write: false,
            };
            let mut link = match T1Link::open(bus, Spin, options()) {
                Ok(link) => link,
                Err(e) => return assert!(!e.to_string().is_empty()),
            };
            let mut commands = vec![command(command_len)];
            let n = (response_len % 1200).to_be_bytes();
            commands.push(vec![0xEE, n[0], n[1], 0x01]);
            for cmd in commands {
                let started = Instant::now();
                match link.transceive(&cmd) {
                    Ok(response) => assert_eq!(&response[..], &expected(&cmd)[..], "wrong answer"),
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
                assert!(started.elapsed() < HANG, "took {:?}", started.elapsed());
            }
        }
    }
});
