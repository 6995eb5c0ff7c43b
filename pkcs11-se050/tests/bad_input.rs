//! Every parser of bytes from outside the process (the bus, the chip, the host, the state file)
//! fed thousands of random and mutated inputs: each must answer with a value or a clear error,
//! never a panic. The inputs come from a fixed-seed PRNG, so a failure repeats; the panic
//! message names the input that caused it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};
use pkcs11_se050::apdu::{tlv, CommandApdu, ResponseApdu, Tlvs};
use pkcs11_se050::applet::protocol::*;
use pkcs11_se050::applet::{ObjectId, Se050};
use pkcs11_se050::t1::atr::REAL_SE050_ATR;
use pkcs11_se050::t1::{ApduTransport, Atr, Frame, LinkError, Pcb, SKind, T1Link, T1Options};
use pkcs11_se050::virtual_se050::applet::{InProcessTransport, VirtualApplet};
use pkcs11_se050::virtual_se050::store::{ChipState, Store};
use pkcs11_se050::virtual_se050::{ApduHandler, VirtualOptions, VirtualSe050};
use zeroize::Zeroizing;

/// xorshift64*: reproducible, spread enough to reach every branch of a length check.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.byte()).collect()
    }

    /// A valid input damaged the ways a bus or an attacker damages one: bytes changed,
    /// inserted, removed, the end cut off or extended; lengths set to their extremes.
    fn mutate(&mut self, valid: &[u8]) -> Vec<u8> {
        let mut out = valid.to_vec();
        for _ in 0..=self.below(3) {
            let at = if out.is_empty() {
                0
            } else {
                self.below(out.len())
            };
            match self.below(7) {
                0 if !out.is_empty() => out[at] ^= 1 << self.below(8),
                1 if !out.is_empty() => out[at] = self.byte(),
                2 if !out.is_empty() => {
                    out[at] = [0x00, 0x7F, 0x80, 0x81, 0x82, 0x83, 0xFF][self.below(7)]
                }
                3 => out.insert(at, self.byte()),
                4 if !out.is_empty() => {
                    out.remove(at);
                }
                5 => out.truncate(at),
                _ => {
                    let tail = self.bytes(8);
                    out.extend(tail)
                }
            }
        }
        out
    }

    /// Half random bytes, half mutations of one of `valid`.
    fn input(&mut self, valid: &[Vec<u8>], max_len: usize) -> Vec<u8> {
        if valid.is_empty() || self.below(2) == 0 {
            self.bytes(max_len)
        } else {
            let pick = self.below(valid.len());
            self.mutate(&valid[pick])
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `check` on `input`; a panic becomes a test failure that names the input.
fn must_not_panic(what: &str, input: &[u8], check: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(check)).is_err() {
        panic!("{what} panicked on input {}", hex(input));
    }
}

fn error_text<E: std::fmt::Display>(what: &str, input: &[u8], e: E) {
    let text = e.to_string();
    assert!(
        !text.trim().is_empty(),
        "{what}: empty error on {}",
        hex(input)
    );
}

const ROUNDS: usize = 20_000;

#[test]
fn t1_frame_decode_never_panics() {
    let mut rng = Rng::new(1);
    let valid: Vec<Vec<u8>> = (0..32)
        .map(|i| {
            let inf = rng.bytes(if i % 4 == 0 { 254 } else { 16 });
            let pcb = [
                Pcb::I {
                    ns: (i & 1) as u8,
                    more: i % 3 == 0,
                },
                Pcb::S {
                    kind: SKind::Wtx,
                    response: false,
                },
            ][i % 2];
            Frame::to_host(pcb, &inf).encode().to_vec()
        })
        .collect();
    let mut decoded = 0;
    for _ in 0..ROUNDS {
        let input = rng.input(&valid, 300);
        must_not_panic("Frame::decode", &input, || match Frame::decode(&input) {
            Ok(frame) => {
                // What decodes is exactly what was sent: nothing is silently dropped.
                assert_eq!(*frame.encode(), input, "re-encoding a decoded frame");
                decoded += 1;
            }
            Err(e) => error_text("Frame::decode", &input, e),
        });
    }
    assert!(
        decoded > 0,
        "no mutation was a valid frame: the test proves nothing"
    );
}

#[test]
fn atr_parse_never_panics() {
    let mut rng = Rng::new(2);
    let valid = vec![REAL_SE050_ATR.to_vec()];
    for _ in 0..ROUNDS {
        let input = rng.input(&valid, 64);
        must_not_panic("Atr::parse", &input, || {
            if let Err(e) = Atr::parse(&input) {
                error_text("Atr::parse", &input, e)
            }
        });
    }
}

#[test]
fn tlv_parse_never_panics_and_keeps_values_inside_the_input() {
    let mut rng = Rng::new(3);
    let valid: Vec<Vec<u8>> = [0usize, 1, 127, 128, 255, 256, 300]
        .iter()
        .map(|&len| {
            let mut out = Vec::new();
            tlv::push(&mut out, TAG_1, &[1, 2, 3, 4]);
            tlv::push(&mut out, TAG_2, &vec![0xAB; len]);
            out
        })
        .collect();
    for _ in 0..ROUNDS {
        let input = rng.input(&valid, 400);
        must_not_panic("Tlvs::parse", &input, || match Tlvs::parse(&input) {
            Ok(tlvs) => {
                let covered: usize = tlvs.iter().map(|(_, v)| tlv::encoded_len(v.len())).sum();
                assert!(covered <= input.len());
                let _ = tlvs.require_u32(TAG_1);
                let _ = tlvs.require_u16(TAG_1);
                let _ = tlvs.require_array::<32>(TAG_2);
            }
            Err(e) => error_text("Tlvs::parse", &input, e),
        });
    }
}

#[test]
fn command_and_response_apdu_parse_never_panic() {
    let mut rng = Rng::new(4);
    let valid: Vec<Vec<u8>> = [0usize, 1, 255, 256, 1000]
        .iter()
        .flat_map(|&len| {
            [None, Some(1), Some(256), Some(65536)]
                .map(|le| CommandApdu::new(CLA_IOT, INS_READ, 0, 0, vec![0x41; len], le).encode())
        })
        .collect();
    for _ in 0..ROUNDS {
        let input = rng.input(&valid, 1100);
        must_not_panic("CommandApdu::parse", &input, || {
            if let Err(e) = CommandApdu::parse(&input) {
                error_text("CommandApdu::parse", &input, e)
            }
        });
        must_not_panic(
            "ResponseApdu::parse",
            &input,
            || match ResponseApdu::parse(&input) {
                Ok(response) => assert_eq!(response.data.len() + 2, input.len()),
                Err(e) => error_text("ResponseApdu::parse", &input, e),
            },
        );
    }
}

#[test]
fn state_file_parse_never_panics() {
    let mut rng = Rng::new(5);
    let mut chip = Se050::select(InProcessTransport::new(VirtualApplet::in_memory())).unwrap();
    chip.generate_x25519(ObjectId::new(0x100).unwrap()).unwrap();
    chip.write_binary(ObjectId::new(0x101).unwrap(), b"label")
        .unwrap();
    let state = chip.into_transport().handler.state().serialize();
    let valid = vec![state.to_vec(), ChipState::fresh().serialize().to_vec()];
    for _ in 0..ROUNDS / 4 {
        let input = rng.input(&valid, 600);
        must_not_panic("ChipState::deserialize", &input, || {
            if let Err(e) = ChipState::deserialize(&input) {
                error_text("ChipState::deserialize", &input, e)
            }
        });
    }
}

/// Commands the applet knows, so that mutations reach deep into its handlers.
fn valid_commands() -> Vec<Vec<u8>> {
    let id = |n: u32| {
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &n.to_be_bytes());
        data
    };
    let with = |n: u32, tag: u8, value: &[u8]| {
        let mut data = id(n);
        tlv::push(&mut data, tag, value);
        data
    };
    let apdu =
        |ins, p1, p2, data: Vec<u8>, le| CommandApdu::new(CLA_IOT, ins, p1, p2, data, le).encode();
    let mut ecdh = id(0x100);
    tlv::push(&mut ecdh, TAG_2, &[9; 32]);
    vec![
        select_command().encode(),
        apdu(INS_MGMT, P1_DEFAULT, P2_VERSION, vec![], Some(256)),
        apdu(
            INS_WRITE,
            P1_EC | P1_KEY_PAIR,
            P2_DEFAULT,
            with(0x200, TAG_2, &[CURVE_X25519]),
            None,
        ),
        apdu(INS_READ, P1_DEFAULT, P2_DEFAULT, id(0x100), Some(256)),
        apdu(INS_CRYPTO, P1_EC, P2_DH, ecdh, Some(256)),
        apdu(INS_MGMT, P1_DEFAULT, P2_EXIST, id(0x100), Some(256)),
        apdu(INS_MGMT, P1_DEFAULT, P2_TYPE, id(0x100), Some(256)),
        apdu(INS_MGMT, P1_DEFAULT, P2_DELETE_OBJECT, id(0x300), None),
        apdu(
            INS_READ,
            P1_DEFAULT,
            P2_LIST,
            with(0, TAG_2, &[TYPE_FILTER_ALL]),
            Some(256),
        ),
        apdu(
            INS_MGMT,
            P1_DEFAULT,
            P2_RANDOM,
            with(0, TAG_1, &[0, 16]),
            Some(256),
        ),
        apdu(
            INS_WRITE,
            P1_BINARY,
            P2_DEFAULT,
            with(0x300, TAG_4, b"hello"),
            None,
        ),
        apdu(INS_READ, P1_DEFAULT, P2_SIZE, id(0x300), Some(256)),
    ]
}

#[test]
fn virtual_applet_answers_every_command_with_a_status_word_and_keeps_a_loadable_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("chip.state");
    let mut chip = Se050::select(InProcessTransport::new(
        VirtualApplet::open(&state, Duration::ZERO).unwrap(),
    ))
    .unwrap();
    let key = ObjectId::new(0x100).unwrap();
    chip.generate_x25519(key).unwrap();
    let mut applet = chip.into_transport().handler;

    let mut rng = Rng::new(6);
    let valid = valid_commands();
    let mut successes = 0;
    for round in 0..ROUNDS / 2 {
        let input = rng.input(&valid, 300);
        must_not_panic("VirtualApplet::process", &input, || {
            let response = applet.process(&input).response;
            assert!(response.len() >= 2, "no status word for {}", hex(&input));
            let sw =
                u16::from_be_bytes([response[response.len() - 2], response[response.len() - 1]]);
            assert!(
                sw == 0x9000 || (sw >> 8) >= 0x61,
                "status word {sw:04x} is not one a chip sends"
            );
            successes += usize::from(sw == 0x9000);
        });
        if round % 500 == 0 {
            applet.reset();
        }
        if round % 20 == 0 {
            // Random bytes deselect the applet now and then; select it again so that the
            // mutations keep reaching the command handlers.
            applet.process(&valid[0]);
        }
    }
    assert!(
        successes > 100,
        "only {successes} commands got through: the mutations stay shallow"
    );
    // Whatever the commands did, the file holds exactly the chip's state and loads again.
    let reloaded = Store::open(&state).expect("the state file still loads");
    assert_eq!(
        *reloaded.state().serialize(),
        *applet.state().serialize(),
        "the state file differs from the chip's state"
    );
}

/// An applet driver whose chip answers with damaged responses now and then.
struct DamagingTransport {
    inner: InProcessTransport<VirtualApplet>,
    rng: Rng,
}

impl ApduTransport for &mut DamagingTransport {
    fn transceive(&mut self, command: &[u8]) -> Result<Zeroizing<Vec<u8>>, LinkError> {
        let response = self.inner.transceive(command)?;
        Ok(match self.rng.below(3) {
            0 => response,
            1 => Zeroizing::new(self.rng.mutate(&response)),
            _ => {
                // Well-formed TLVs and a success status with random contents.
                let mut out = Vec::new();
                for _ in 0..self.rng.below(4) {
                    let tag = [TAG_1, TAG_2, TAG_3, TAG_4][self.rng.below(4)];
                    let value = self.rng.bytes(40);
                    tlv::push(&mut out, tag, &value);
                }
                out.extend_from_slice(&[0x90, 0x00]);
                Zeroizing::new(out)
            }
        })
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

#[test]
fn applet_driver_turns_damaged_responses_into_errors() {
    let mut chip = Se050::select(InProcessTransport::new(VirtualApplet::in_memory())).unwrap();
    chip.generate_x25519(ObjectId::new(0x100).unwrap()).unwrap();
    chip.write_binary(ObjectId::new(0x101).unwrap(), &[7; 600])
        .unwrap();
    let transport = chip.into_transport();
    let mut driver = DamagingTransport {
        inner: transport,
        rng: Rng::new(7),
    };
    let key = ObjectId::new(0x100).unwrap();
    let file = ObjectId::new(0x101).unwrap();
    let mut errors = 0;
    for round in 0..2000 {
        let mut result = |outcome: Result<(), String>| {
            if let Err(text) = outcome {
                assert!(!text.trim().is_empty());
                errors += 1;
            }
        };
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let chip = Se050::select(&mut driver);
            let Ok(mut chip) = chip else {
                result(chip.map(drop).map_err(|e| e.to_string()));
                return;
            };
            let s = |e: pkcs11_se050::applet::Se050Error| e.to_string();
            result(chip.get_version().map(drop).map_err(s));
            result(chip.read_x25519_public(key).map(drop).map_err(s));
            result(chip.ecdh_x25519(key, &[9; 32]).map(drop).map_err(s));
            result(chip.exists(key).map(drop).map_err(s));
            result(chip.list_ids().map(drop).map_err(s));
            result(chip.read_type(key).map(drop).map_err(s));
            result(chip.get_random(32).map(drop).map_err(s));
            result(chip.read_binary(file).map(drop).map_err(s));
            result(chip.read_size(file).map(drop).map_err(s));
            result(chip.unique_id().map(drop).map_err(s));
        }));
        assert!(
            caught.is_ok(),
            "the applet driver panicked in round {round}"
        );
    }
    assert!(
        errors > 0,
        "no damaged response was noticed: the test proves nothing"
    );
}

/// A bus whose chip answers garbage: random bytes, frames with a valid CRC and random
/// contents, or a NACK.
struct GarbageBus {
    rng: Rng,
}

#[derive(Debug)]
struct Nack;

impl embedded_hal::i2c::Error for Nack {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
    }
}

impl ErrorType for GarbageBus {
    type Error = Nack;
}

impl I2c for GarbageBus {
    fn transaction(&mut self, _: u8, operations: &mut [Operation<'_>]) -> Result<(), Nack> {
        for op in operations {
            if let Operation::Read(buf) = op {
                match self.rng.below(8) {
                    0 => return Err(Nack),
                    1..=3 => {
                        // A header that promises a plausible frame, so reads go on to the body.
                        let pcb = [0x00, 0x40, 0x20, 0x80, 0x90, 0xC0, 0xE0, 0xC3, 0xE7]
                            [self.rng.below(9)];
                        let frame = [0xA5, pcb, self.rng.below(8) as u8];
                        for (i, b) in buf.iter_mut().enumerate() {
                            *b = frame.get(i).copied().unwrap_or_else(|| self.rng.byte());
                        }
                    }
                    _ => buf.iter_mut().for_each(|b| *b = self.rng.byte()),
                }
            }
        }
        Ok(())
    }
}

struct Sleep;

impl DelayNs for Sleep {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(ns.into()));
    }
}

#[test]
fn t1_link_fed_garbage_returns_clear_errors_in_bounded_time() {
    let options = T1Options {
        initial_bwt: Duration::from_millis(2),
        poll_interval: Some(Duration::from_micros(200)),
        max_response_time: Duration::from_millis(200),
        ..T1Options::default()
    };
    for seed in 0..200u64 {
        let bus = GarbageBus {
            rng: Rng::new(seed + 100),
        };
        let started = std::time::Instant::now();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let mut link = T1Link::new(bus, Sleep, options.clone());
            for _ in 0..3 {
                let _ = link
                    .resync()
                    .map_err(|e| assert!(!e.to_string().is_empty()));
                let _ = link.get_atr();
                match link.transceive(&[0x80, 0x04, 0x00, 0x20, 0x00]) {
                    Ok(response) => assert!(!response.is_empty()),
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
            }
        }));
        assert!(
            caught.is_ok(),
            "the T=1 link panicked on garbage (seed {seed})"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "garbage kept the link busy for {:?} (seed {seed})",
            started.elapsed()
        );
    }
}

#[test]
fn virtual_chip_fed_garbage_frames_never_panics_and_still_answers() {
    let mut chip = VirtualSe050::new(
        Box::new(VirtualApplet::in_memory()),
        VirtualOptions {
            bwt: Duration::from_millis(5),
            ..VirtualOptions::default()
        },
    );
    let address = VirtualOptions::default().address;
    let mut rng = Rng::new(8);
    let valid: Vec<Vec<u8>> = [
        Frame::to_se(
            Pcb::S {
                kind: SKind::Resynch,
                response: false,
            },
            &[],
        ),
        Frame::to_se(Pcb::I { ns: 0, more: false }, &valid_commands()[0]),
        Frame::to_se(Pcb::I { ns: 1, more: true }, &[0x80; 254]),
    ]
    .iter()
    .map(|frame| frame.encode().to_vec())
    .collect();
    for _ in 0..ROUNDS / 2 {
        let input = rng.input(&valid, 300);
        must_not_panic("VirtualSe050 write", &input, || {
            let _ = chip.write(address, &input);
            let mut reply = vec![0u8; rng.below(260)];
            let _ = chip.read(address, &mut reply);
        });
    }
    // After all that, a host that resynchronises gets proper answers.
    let mut link = T1Link::open(chip, Sleep, T1Options::default()).expect("the chip still answers");
    let response = link
        .transceive(&valid_commands()[0])
        .expect("SELECT after garbage");
    assert_eq!(&response[response.len() - 2..], &[0x90, 0x00]);
}
