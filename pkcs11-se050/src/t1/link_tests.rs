//! The host link against the virtual chip's device side, byte for byte over the
//! embedded-hal `I2c` seam: chaining, WTX, NACK polling, and injected faults.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use embedded_hal::i2c::{ErrorType, I2c, Operation};

use super::frame::{Frame, Pcb, SKind};
use super::link::{T1Link, T1Options};
use super::test_chip::CountingDelay;
use super::{ApduTransport, LinkError};
use crate::virtual_se050::{
    ApduHandler, Direction, FaultHandle, Processed, VirtualOptions, VirtualSe050, MAX_COMMAND_APDU,
};
use crate::wipe::SecretBytes;

/// Answers every command deterministically so a test can tell a right response
/// from a wrong one: `EE hi lo ..` asks for a response of `hi lo` bytes, anything
/// else is echoed reversed; both end in 90 00.
struct TestApplet {
    busy: Duration,
    calls: Arc<AtomicU64>,
    resets: Arc<AtomicU64>,
}

fn expected_response(command: &[u8]) -> SecretBytes {
    let mut out = if command.len() >= 3 && command[0] == 0xEE {
        let n = u16::from_be_bytes([command[1], command[2]]) as usize;
        (0..n).map(|i| (i * 7 + command.len()) as u8).collect()
    } else {
        command.iter().rev().copied().collect::<Vec<_>>()
    };
    out.extend_from_slice(&[0x90, 0x00]);
    SecretBytes::new(out)
}

impl ApduHandler for TestApplet {
    fn process(&mut self, command: &[u8]) -> Processed {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Processed {
            response: expected_response(command),
            busy: self.busy,
        }
    }

    fn reset(&mut self) {
        self.resets.fetch_add(1, Ordering::SeqCst);
    }
}

struct Rig {
    link: T1Link<VirtualSe050, CountingDelay>,
    faults: FaultHandle,
    calls: Arc<AtomicU64>,
    resets: Arc<AtomicU64>,
    delays: Arc<AtomicU32>,
}

fn chip(
    busy: Duration,
    bwt: Duration,
    seed: u64,
) -> (VirtualSe050, Arc<AtomicU64>, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let resets = Arc::new(AtomicU64::new(0));
    let applet = TestApplet {
        busy,
        calls: calls.clone(),
        resets: resets.clone(),
    };
    let options = VirtualOptions {
        bwt,
        faults: FaultHandle::new(seed),
        ..VirtualOptions::default()
    };
    (VirtualSe050::new(Box::new(applet), options), calls, resets)
}

fn rig_with(busy: Duration, bwt: Duration, seed: u64, options: T1Options) -> Rig {
    let (se, calls, resets) = chip(busy, bwt, seed);
    let faults = se.faults();
    let delay = CountingDelay::default();
    let delays = delay.0.clone();
    let link = T1Link::open(se, delay, options).expect("open link to the virtual chip");
    Rig {
        link,
        faults,
        calls,
        resets,
        delays,
    }
}

fn rig(busy: Duration, bwt: Duration) -> Rig {
    rig_with(busy, bwt, 1, T1Options::default())
}

fn apdu(len: usize, salt: u8) -> Vec<u8> {
    let mut cmd = vec![0x80, 0x01, 0x02, salt];
    cmd.extend((0..len.saturating_sub(4)).map(|i| (i as u8).wrapping_mul(31) ^ salt));
    cmd
}

#[test]
fn open_reads_the_real_atr() {
    let r = rig(Duration::ZERO, Duration::from_millis(1000));
    let atr = r.link.atr().expect("ATR read at open");
    assert_eq!(atr.bwt, Duration::from_millis(1000));
    assert_eq!(atr.ifsc, 254);
    assert_eq!(atr.historical_text(), Some("JCOP4 ATPO"));
}

#[test]
fn short_apdu_needs_no_sleep_when_the_chip_answers_at_once() {
    let mut r = rig(Duration::ZERO, Duration::from_millis(1000));
    let before = r.delays.load(Ordering::SeqCst);
    let cmd = [0x00, 0xA4, 0x04, 0x00];
    for _ in 0..20 {
        assert_eq!(r.link.transceive(&cmd).unwrap(), expected_response(&cmd));
    }
    assert_eq!(
        r.delays.load(Ordering::SeqCst),
        before,
        "slept although the chip was ready"
    );
    assert_eq!(r.calls.load(Ordering::SeqCst), 20);
}

#[test]
fn chaining_in_both_directions() {
    let mut r = rig(Duration::ZERO, Duration::from_millis(1000));
    for len in [253, 254, 255, 508, 509, 889, MAX_COMMAND_APDU] {
        let cmd = apdu(len, len as u8);
        let response = r.link.transceive(&cmd).unwrap();
        assert_eq!(response, expected_response(&cmd), "len {len}");
    }
    // A short command asking for a long response: chained only from the chip.
    let mut cmd = vec![0xEE, 0x04, 0x00];
    cmd.push(0x01);
    assert_eq!(r.link.transceive(&cmd).unwrap(), expected_response(&cmd));
    let stats = r.link.bus().stats();
    assert_eq!(stats.bad_frames_received, 0);
    assert!(stats.frames_sent > 20, "{stats:?}");
}

#[test]
fn wtx_requests_are_honoured() {
    // The command takes 40 ms, the chip's BWT is 5 ms: it must ask for more time.
    let mut r = rig(Duration::from_millis(40), Duration::from_millis(5));
    let started = Instant::now();
    let cmd = apdu(300, 9);
    assert_eq!(r.link.transceive(&cmd).unwrap(), expected_response(&cmd));
    assert!(started.elapsed() >= Duration::from_millis(40));
    let stats = r.link.bus().stats();
    assert!(stats.wtx_requests >= 5, "{stats:?}");
    assert_eq!(stats.protocol_errors, 0, "{stats:?}");
}

#[test]
fn polls_while_the_chip_is_busy() {
    let mut r = rig(Duration::from_millis(8), Duration::from_millis(200));
    let before = r.delays.load(Ordering::SeqCst);
    let cmd = apdu(10, 3);
    assert_eq!(r.link.transceive(&cmd).unwrap(), expected_response(&cmd));
    assert!(r.delays.load(Ordering::SeqCst) > before);
    assert!(r.link.bus().stats().nacks > 0);
}

#[test]
fn absent_chip_is_not_responding_naming_address_and_time() {
    let (se, _, _) = chip(Duration::ZERO, Duration::from_millis(1000), 1);
    let options = T1Options {
        address: 0x49,
        initial_bwt: Duration::from_millis(20),
        ..T1Options::default()
    };
    let started = Instant::now();
    let err = T1Link::open(se, CountingDelay::default(), options)
        .err()
        .expect("nothing answers at 0x49");
    assert!(started.elapsed() < Duration::from_secs(1));
    match &err {
        LinkError::NotResponding {
            address, waited, ..
        } => {
            assert_eq!(*address, 0x49);
            assert!(*waited >= Duration::from_millis(20));
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("0x49") && text.contains("not responding"),
        "{text}"
    );
}

#[test]
fn nack_storm_longer_than_the_bound_is_a_clear_error() {
    let mut r = rig(Duration::ZERO, Duration::from_millis(10));
    r.faults.nack_next_polls(1_000_000);
    let started = Instant::now();
    let err = r.link.transceive(&apdu(10, 1)).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, LinkError::NotResponding { address: 0x48, .. }),
        "{err}"
    );
    // Once the storm is over the link works again.
    r.faults.clear();
    let cmd = apdu(10, 2);
    assert_eq!(r.link.transceive(&cmd).unwrap(), expected_response(&cmd));
}

#[test]
fn short_nack_storm_is_ridden_out() {
    let mut r = rig(Duration::ZERO, Duration::from_millis(50));
    r.faults.nack_next_polls(10);
    let cmd = apdu(10, 2);
    assert_eq!(r.link.transceive(&cmd).unwrap(), expected_response(&cmd));
}

#[test]
fn chip_busy_forever_ends_in_a_response_timeout() {
    let options = T1Options {
        max_response_time: Duration::from_millis(150),
        ..T1Options::default()
    };
    let mut r = rig_with(
        Duration::from_secs(3600),
        Duration::from_millis(5),
        1,
        options,
    );
    let started = Instant::now();
    let err = r.link.transceive(&apdu(10, 1)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match err {
        LinkError::ResponseTimeout { wtx_requests, .. } => assert!(wtx_requests > 5),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn each_single_fault_is_recovered_exactly() {
    type Inject = fn(&FaultHandle);
    let cases: [(&str, Inject); 6] = [
        ("corrupt to SE", |f| {
            f.corrupt_next_frames(Direction::HostToSe, 1)
        }),
        ("corrupt to host", |f| {
            f.corrupt_next_frames(Direction::SeToHost, 1)
        }),
        ("drop to SE", |f| f.drop_next_frames(Direction::HostToSe, 1)),
        ("drop to host", |f| {
            f.drop_next_frames(Direction::SeToHost, 1)
        }),
        ("corrupt 3 each way", |f| {
            f.corrupt_next_frames(Direction::HostToSe, 3);
            f.corrupt_next_frames(Direction::SeToHost, 3)
        }),
        ("nack storm", |f| f.nack_next_polls(5)),
    ];
    for (name, inject) in cases {
        for len in [10, 600] {
            let mut r = rig(Duration::ZERO, Duration::from_millis(10));
            let cmd = apdu(len, 7);
            inject(&r.faults);
            let response = r.link.transceive(&cmd);
            assert_eq!(
                response.as_ref().ok(),
                Some(&expected_response(&cmd)),
                "{name}, len {len}: {response:?}"
            );
            assert_eq!(
                r.calls.load(Ordering::SeqCst),
                1,
                "{name}: command run more than once"
            );
            assert!(r.faults.injected() > 0, "{name}: fault never happened");
        }
    }
}

#[test]
fn reset_mid_apdu_gives_a_clear_error_then_recovers() {
    for len in [600, 10] {
        // Busy long enough that the reset lands while the chip works on the command.
        let mut r = rig(Duration::from_millis(3), Duration::from_millis(10));
        r.faults.reset_mid_apdu();
        let cmd = apdu(len, 1);
        match r.link.transceive(&cmd) {
            Ok(response) => panic!("len {len}: answered {response:02x?} across a reset"),
            Err(e) => {
                let text = e.to_string();
                assert!(!text.is_empty());
            }
        }
        assert!(r.resets.load(Ordering::SeqCst) >= 1);
        let cmd = apdu(len, 2);
        assert_eq!(r.link.transceive(&cmd).unwrap(), expected_response(&cmd));
    }
}

/// Tiny deterministic generator for the fault schedule.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_faults_never_give_a_wrong_answer_or_hang() {
    let started = Instant::now();
    let (mut ok, mut errors) = (0, 0);
    for seed in 1..=60u64 {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let busy = Duration::from_millis(next(&mut rng) % 3);
        let mut r = rig_with(busy, Duration::from_millis(4), seed, T1Options::default());
        let mut executed_ok = 0u64;
        for round in 0..6u8 {
            let f = &r.faults;
            for _ in 0..(next(&mut rng) % 4) {
                match next(&mut rng) % 6 {
                    0 => {
                        f.corrupt_next_frames(Direction::HostToSe, 1 + (next(&mut rng) % 2) as u32)
                    }
                    1 => {
                        f.corrupt_next_frames(Direction::SeToHost, 1 + (next(&mut rng) % 2) as u32)
                    }
                    2 => f.drop_next_frames(Direction::HostToSe, 1),
                    3 => f.drop_next_frames(Direction::SeToHost, 1),
                    4 => f.nack_next_polls((next(&mut rng) % 20) as u32),
                    _ => f.reset_mid_apdu(),
                }
            }
            let len = [5usize, 200, 254, 255, 700][(next(&mut rng) % 5) as usize];
            let cmd = if next(&mut rng).is_multiple_of(3) {
                vec![0xEE, 0x02, (next(&mut rng) % 0x40) as u8, round]
            } else {
                apdu(len, round ^ seed as u8)
            };
            let t = Instant::now();
            match r.link.transceive(&cmd) {
                Ok(response) => {
                    assert_eq!(
                        response,
                        expected_response(&cmd),
                        "seed {seed} round {round}: wrong answer"
                    );
                    ok += 1;
                    executed_ok += 1;
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    if std::env::var_os("T1_FAULT_LOG").is_some() {
                        eprintln!("seed {seed} round {round}: {e}");
                    }
                    errors += 1;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "seed {seed}: exchange took {:?}",
                t.elapsed()
            );
            r.faults.clear();
        }
        // Never more executions than commands sent, and never fewer than the answers.
        let calls = r.calls.load(Ordering::SeqCst);
        assert!(
            calls <= 6 && calls >= executed_ok,
            "seed {seed}: {calls} executions"
        );
        // The link is usable again once the faults are gone.
        let cmd = apdu(300, 0x55);
        assert_eq!(
            r.link.transceive(&cmd).unwrap(),
            expected_response(&cmd),
            "seed {seed}"
        );
    }
    eprintln!("random faults: {ok} exact answers, {errors} clear errors");
    assert!(
        ok > errors,
        "{ok} ok, {errors} errors: recovery hardly works"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn random_corruptions_and_drops_are_always_recovered() {
    // Bus noise alone (no resets, no long storms) must never cost an answer.
    for seed in 1..=40u64 {
        let mut rng = seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1;
        let mut r = rig_with(
            Duration::from_millis(next(&mut rng) % 2),
            Duration::from_millis(4),
            seed,
            T1Options::default(),
        );
        for round in 0..5u8 {
            for _ in 0..(1 + next(&mut rng) % 3) {
                let direction = if next(&mut rng).is_multiple_of(2) {
                    Direction::HostToSe
                } else {
                    Direction::SeToHost
                };
                if next(&mut rng).is_multiple_of(3) {
                    r.faults.drop_next_frames(direction, 1);
                } else {
                    r.faults
                        .corrupt_next_frames(direction, 1 + (next(&mut rng) % 2) as u32);
                }
            }
            let cmd = apdu(
                [8usize, 254, 255, 600][(next(&mut rng) % 4) as usize],
                round,
            );
            let response = r.link.transceive(&cmd);
            assert_eq!(
                response.as_ref().ok(),
                Some(&expected_response(&cmd)),
                "seed {seed} round {round}: {response:?}"
            );
            r.faults.clear();
        }
        assert_eq!(
            r.calls.load(Ordering::SeqCst),
            5,
            "seed {seed}: a command ran twice or not at all"
        );
    }
}

/// Records every frame the host writes.
struct Recorder<I> {
    inner: I,
    writes: Vec<Vec<u8>>,
}

impl<I: ErrorType> ErrorType for Recorder<I> {
    type Error = I::Error;
}

impl<I: I2c> I2c for Recorder<I> {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        for op in operations.iter() {
            if let Operation::Write(bytes) = op {
                self.writes.push(bytes.to_vec());
            }
        }
        self.inner.transaction(address, operations)
    }
}

#[test]
fn known_frames_on_the_wire() {
    let (se, resets, _) = chip(Duration::ZERO, Duration::from_millis(1000), 1);
    let _ = resets;
    let bus = Recorder {
        inner: se,
        writes: vec![],
    };
    let mut link = T1Link::open(bus, CountingDelay::default(), T1Options::default()).unwrap();
    assert_eq!(link.bus().writes[0], [0x5A, 0xC0, 0x00, 0xFF, 0xFC]);
    assert_eq!(link.bus().writes[1], [0x5A, 0xC7, 0x00, 0xF7, 0xB1]);
    let atr = link.soft_reset().unwrap();
    assert_eq!(atr.ifsc, 254);
    assert_eq!(link.bus().writes[2], [0x5A, 0xCF, 0x00, 0x37, 0x7F]);
    // A response of three blocks: the host acknowledges N(S)=0 with R(1), N(S)=1 with R(0).
    let cmd = [0xEE, 0x02, 0x58, 0x00];
    assert_eq!(link.transceive(&cmd).unwrap(), expected_response(&cmd));
    let writes = &link.bus().writes;
    assert!(
        writes.contains(&vec![0x5A, 0x80, 0x00, 0x99, 0xBA]),
        "{writes:02x?}"
    );
}

#[test]
fn soft_reset_resets_the_applet() {
    let mut r = rig(Duration::ZERO, Duration::from_millis(1000));
    r.link.soft_reset().unwrap();
    assert_eq!(r.resets.load(Ordering::SeqCst), 1);
    r.link.chip_reset().unwrap();
    assert_eq!(r.resets.load(Ordering::SeqCst), 2);
    r.link.end_apdu_session().unwrap();
    let cmd = apdu(20, 1);
    assert_eq!(r.link.transceive(&cmd).unwrap(), expected_response(&cmd));
}

// --- the device side alone, driven byte by byte -------------------------------

fn write_frame(se: &mut VirtualSe050, frame: &Frame) {
    se.write(0x48, &frame.encode()).unwrap();
}

fn read_frame_bytewise(se: &mut VirtualSe050) -> Frame {
    let mut bytes = vec![];
    let mut header = [0u8; 3];
    for b in header.iter_mut() {
        let mut one = [0u8];
        se.read(0x48, &mut one).unwrap();
        *b = one[0];
    }
    bytes.extend_from_slice(&header);
    for _ in 0..header[2] as usize + 2 {
        let mut one = [0u8];
        se.read(0x48, &mut one).unwrap();
        bytes.push(one[0]);
    }
    Frame::decode(&bytes).unwrap()
}

#[test]
fn device_serves_a_frame_across_single_byte_reads() {
    let (mut se, _, _) = chip(Duration::ZERO, Duration::from_millis(1000), 1);
    write_frame(
        &mut se,
        &Frame::to_se(
            Pcb::S {
                kind: SKind::GetAtr,
                response: false,
            },
            &[],
        ),
    );
    let reply = read_frame_bytewise(&mut se);
    assert_eq!(reply.nad, 0xA5);
    assert_eq!(*reply.inf, super::atr::REAL_SE050_ATR);
    // Nothing more to read: the chip NACKs.
    assert!(se.read(0x48, &mut [0u8; 3]).is_err());
    // Other addresses never answer; an empty write probes the address only.
    assert!(se.write(0x49, &[0]).is_err());
    se.write(0x48, &[]).unwrap();
    assert_eq!(se.stats().bad_frames_received, 0);
}

#[test]
fn device_nacks_while_busy_and_never_runs_a_repeated_block_twice() {
    let (mut se, calls, _) = chip(Duration::from_millis(20), Duration::from_millis(1000), 1);
    let block = Frame::to_se(Pcb::I { ns: 0, more: false }, &[1, 2, 3, 4]);
    write_frame(&mut se, &block);
    assert!(se.read(0x48, &mut [0u8; 3]).is_err(), "answered while busy");
    assert!(
        se.write(0x48, &[0x5A]).is_err(),
        "accepted a write while busy"
    );
    std::thread::sleep(Duration::from_millis(25));
    let first = read_frame_bytewise(&mut se);
    assert_eq!(first.inf, expected_response(&[1, 2, 3, 4]));
    // The host repeats the block (as if it lost the answer): same answer, no re-run.
    write_frame(&mut se, &block);
    let again = read_frame_bytewise(&mut se);
    assert_eq!(again, first);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// The command of a fault case: `len` bytes to the chip, or (`response`) a short command
/// asking for a 528-byte answer, so that chaining is exercised in each direction.
fn fault_case_command(len: usize, response: bool) -> Vec<u8> {
    if response {
        vec![0xEE, 0x02, 0x10, 0x00]
    } else {
        apdu(len, 3)
    }
}

/// Under the faults set on `r`, `cmd` gets exactly its right answer, and the chip ran it once.
fn assert_answered_once(r: &mut Rig, cmd: &[u8], case: &str) {
    let got = r.link.transceive(cmd);
    assert_eq!(
        got.as_ref().ok(),
        Some(&expected_response(cmd)),
        "{case}: {got:?}"
    );
    assert_eq!(r.calls.load(Ordering::SeqCst), 1, "{case}");
}

#[test]
fn consecutive_corruptions_both_ways_are_recovered() {
    // Damage in each direction starting at every frame position, up to three
    // frames in a row: this includes a damaged reply whose NAK is damaged too, a
    // damaged acknowledgement in a chain, a damaged retransmission.
    for skip_host in 0..4 {
        for skip_se in 0..4 {
            for n in 1..=3 {
                for (len, response) in [(10usize, false), (600, false), (4, true)] {
                    let mut r = rig(Duration::ZERO, Duration::from_millis(10));
                    r.faults
                        .corrupt_frames_after(Direction::SeToHost, skip_host, n);
                    r.faults
                        .corrupt_frames_after(Direction::HostToSe, skip_se, n);
                    let case =
                        format!("skip {skip_host} to host, {skip_se} to SE, {n} frames, len {len}");
                    assert_answered_once(&mut r, &fault_case_command(len, response), &case);
                }
            }
        }
    }
}

#[test]
fn lost_frames_at_every_position_are_recovered() {
    // Up to three lost replies per exchange are tolerated (MAX_SILENCES): lose
    // one or two frames, one or both ways, starting at every position.
    for skip_host in 0..4 {
        for skip_se in 0..4 {
            for (to_host, to_se) in [(1, 0), (0, 1), (1, 1), (2, 0), (0, 2)] {
                for (len, response) in [(10usize, false), (600, false), (4, true)] {
                    let mut r = rig(Duration::ZERO, Duration::from_millis(2));
                    r.faults
                        .drop_frames_after(Direction::SeToHost, skip_host, to_host);
                    r.faults
                        .drop_frames_after(Direction::HostToSe, skip_se, to_se);
                    let case = format!("lose {to_host} to host after {skip_host}, {to_se} to SE after {skip_se}, len {len}");
                    assert_answered_once(&mut r, &fault_case_command(len, response), &case);
                }
            }
        }
    }
}

#[test]
fn endless_damage_exhausts_the_retries_with_a_clear_error() {
    let mut r = rig(Duration::ZERO, Duration::from_millis(10));
    r.faults.corrupt_next_frames(Direction::SeToHost, 1000);
    let started = Instant::now();
    let err = r.link.transceive(&apdu(10, 1)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    match &err {
        LinkError::RetriesExhausted {
            attempts,
            last_problem,
        } => {
            assert_eq!(*attempts, 10);
            assert!(
                last_problem.contains("CRC")
                    || last_problem.contains("LEN")
                    || last_problem.contains("NAD"),
                "{last_problem}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("gave up after 10"), "{err}");
    assert_eq!(
        r.calls.load(Ordering::SeqCst),
        1,
        "the command ran once, its answer was lost"
    );
}

/// A chip that misbehaves on purpose: it answers every write with the next
/// frame of its script, whatever the host sent.
struct ScriptedChip {
    replies: std::collections::VecDeque<Vec<u8>>,
    current: Vec<u8>,
}

impl ScriptedChip {
    fn new(replies: Vec<Frame>) -> Self {
        ScriptedChip {
            replies: replies.iter().map(|f| f.encode().to_vec()).collect(),
            current: vec![],
        }
    }
}

impl ErrorType for ScriptedChip {
    type Error = crate::virtual_se050::VirtualI2cError;
}

impl I2c for ScriptedChip {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let nack = crate::virtual_se050::VirtualI2cError {
            address,
            reason: "script: nothing to say",
        };
        for op in operations {
            match op {
                Operation::Write(_) => self.current = self.replies.pop_front().unwrap_or_default(),
                Operation::Read(buf) => {
                    if self.current.is_empty() {
                        return Err(nack);
                    }
                    let n = buf.len().min(self.current.len());
                    buf[..n].copy_from_slice(&self.current[..n]);
                    self.current.drain(..n);
                }
            }
        }
        Ok(())
    }
}

fn s_frame(kind: SKind, response: bool, inf: &[u8]) -> Frame {
    Frame::to_host(Pcb::S { kind, response }, inf)
}

fn scripted_link(replies: Vec<Frame>) -> T1Link<ScriptedChip, CountingDelay> {
    scripted_link_with(replies, T1Options::default())
}

/// [`scripted_link`] with `options` (its initial BWT set to the script's 5 ms).
fn scripted_link_with(
    mut replies: Vec<Frame>,
    options: T1Options,
) -> T1Link<ScriptedChip, CountingDelay> {
    // The real ATR with a BWT of 5 ms, so the RESYNCH the link tries after each
    // error gives up quickly on the exhausted script.
    let mut atr = super::atr::REAL_SE050_ATR;
    atr[7..9].copy_from_slice(&5u16.to_be_bytes());
    let mut script = vec![
        s_frame(SKind::Resynch, true, &[]),
        s_frame(SKind::GetAtr, true, &atr),
    ];
    script.append(&mut replies);
    let options = T1Options {
        initial_bwt: Duration::from_millis(5),
        ..options
    };
    T1Link::open(ScriptedChip::new(script), CountingDelay::default(), options).unwrap()
}

#[test]
fn the_largest_wtx_does_not_stretch_the_wait_past_the_overall_limit() {
    // The chip asks for 255 x BWT (1.3 s here), then never answers: the link must give up
    // when max_response_time has passed, not after four such windows.
    let options = T1Options {
        max_response_time: Duration::from_millis(200),
        ..T1Options::default()
    };
    let mut link = scripted_link_with(vec![s_frame(SKind::Wtx, false, &[255])], options);
    let started = Instant::now();
    let err = link.transceive(&[0x00, 0x01, 0x02, 0x03]).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "waited {:?} for a chip that asked for 255 x BWT",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            LinkError::ResponseTimeout {
                wtx_requests: 1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn protocol_violations_name_the_offending_pcb() {
    // The chip asks to abort: not something the SE050 does; say so.
    let mut link = scripted_link(vec![s_frame(SKind::Abort, false, &[])]);
    let err = link.transceive(&[0x00, 0x01, 0x02, 0x03]).unwrap_err();
    assert!(
        matches!(err, LinkError::Protocol { pcb: 0xC2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("0xc2"), "{err}");

    // An S-response where the response I-block belongs.
    let mut link = scripted_link(vec![s_frame(SKind::GetAtr, true, &[])]);
    let err = link.transceive(&[0x00, 0x01, 0x02, 0x03]).unwrap_err();
    assert!(
        matches!(err, LinkError::Protocol { pcb: 0xE7, .. }),
        "{err:?}"
    );

    // A RESYNCH answered with something else.
    let mut link = scripted_link(vec![Frame::to_host(
        Pcb::I { ns: 0, more: false },
        &[0x90, 0x00],
    )]);
    let err = link.resync().unwrap_err();
    assert!(err.to_string().contains("RESYNCH response"), "{err}");
}

#[test]
fn an_unparsable_atr_is_named() {
    let script = vec![
        s_frame(SKind::Resynch, true, &[]),
        s_frame(SKind::GetAtr, true, &[0x00, 0xA0]),
    ];
    let err = T1Link::open(
        ScriptedChip::new(script),
        CountingDelay::default(),
        T1Options::default(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, LinkError::InvalidAtr(_)), "{err:?}");
    assert!(err.to_string().contains("vendor id"), "{err}");
}

#[test]
fn empty_command_is_refused_before_the_bus() {
    let mut r = rig(Duration::ZERO, Duration::from_millis(1000));
    let before = r.link.bus().stats().frames_received;
    let err = r.link.transceive(&[]).unwrap_err();
    assert!(matches!(err, LinkError::InvalidCommand(_)));
    assert_eq!(r.link.bus().stats().frames_received, before);
}

#[test]
fn a_smaller_ifsd_makes_the_chip_chain_in_smaller_blocks() {
    let mut r = rig(Duration::ZERO, Duration::from_millis(1000));
    r.link.announce_ifsd(32).unwrap();
    let before = r.link.bus().stats().frames_sent;
    let cmd = [0xEE, 0x01, 0x00, 0x00];
    assert_eq!(r.link.transceive(&cmd).unwrap(), expected_response(&cmd));
    // 258 response bytes in blocks of at most 32: at least nine blocks.
    assert!(r.link.bus().stats().frames_sent - before >= 9);
    assert!(r.link.announce_ifsd(0).is_err());
}

#[test]
fn abort_drops_a_half_received_chain() {
    let (mut se, calls, _) = chip(Duration::ZERO, Duration::from_millis(1000), 1);
    write_frame(
        &mut se,
        &Frame::to_se(Pcb::I { ns: 0, more: true }, &[0xAA; 100]),
    );
    let ack = read_frame_bytewise(&mut se);
    assert_eq!(
        ack.pcb,
        Pcb::R {
            nr: 1,
            error: super::frame::RError::None
        }
    );
    let abort = Pcb::S {
        kind: SKind::Abort,
        response: false,
    };
    write_frame(&mut se, &Frame::to_se(abort, &[]));
    assert_eq!(
        read_frame_bytewise(&mut se).pcb,
        Pcb::S {
            kind: SKind::Abort,
            response: true
        }
    );
    // The sequence continues (N(S)=1); the aborted part is not prepended.
    write_frame(
        &mut se,
        &Frame::to_se(Pcb::I { ns: 1, more: false }, &[1, 2, 3]),
    );
    assert_eq!(
        read_frame_bytewise(&mut se).inf,
        expected_response(&[1, 2, 3])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_command_longer_than_the_chip_takes_is_aborted_clearly() {
    let mut r = rig(Duration::ZERO, Duration::from_millis(1000));
    let too_long = apdu(MAX_COMMAND_APDU + 1, 5);
    let err = r.link.transceive(&too_long).unwrap_err();
    assert_eq!(
        err,
        LinkError::ChainAborted {
            accepted: 3 * 254,
            total: MAX_COMMAND_APDU + 1
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("aborted a chained command of 899 bytes") && text.contains("APDU buffer"),
        "{text}"
    );
    assert_eq!(r.calls.load(Ordering::SeqCst), 0, "no part of it ran");
    assert_eq!(r.link.bus().stats().chains_aborted, 1);
    assert_eq!(r.link.bus().buffered_command_len(), 0);
    // The link is fine afterwards, and the longest command still goes through.
    for len in [20, MAX_COMMAND_APDU] {
        let cmd = apdu(len, 6);
        assert_eq!(r.link.transceive(&cmd).unwrap(), expected_response(&cmd));
    }
}

#[test]
fn an_endless_chain_is_aborted_and_never_buffered_past_the_limit() {
    let (mut se, calls, _) = chip(Duration::ZERO, Duration::from_millis(1000), 1);
    let abort_request = Pcb::S {
        kind: SKind::Abort,
        response: false,
    };
    let mut ns = 0u8;
    let mut acks = 0;
    let mut aborts = 0;
    // A host that never stops chaining, and ignores the chip's requests to stop.
    for _ in 0..2000 {
        write_frame(
            &mut se,
            &Frame::to_se(Pcb::I { ns, more: true }, &[0x80; 254]),
        );
        assert!(se.buffered_command_len() <= MAX_COMMAND_APDU);
        match read_frame_bytewise(&mut se).pcb {
            Pcb::R { .. } => {
                assert_eq!(aborts, 0, "the chip took more after aborting");
                acks += 1;
                ns ^= 1;
            }
            pcb if pcb == abort_request => aborts += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        acks,
        MAX_COMMAND_APDU / 254,
        "blocks taken before the abort"
    );
    assert_eq!(aborts, 2000 - acks);
    assert_eq!(se.buffered_command_len(), 0);
    // Even a last block is not taken for a command while the abort is unanswered.
    write_frame(&mut se, &Frame::to_se(Pcb::I { ns, more: false }, &[1]));
    assert_eq!(read_frame_bytewise(&mut se).pcb, abort_request);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(se.stats().chains_aborted, 1);
    // Once the host answers the abort, the next command is a command again.
    let abort_response = Pcb::S {
        kind: SKind::Abort,
        response: true,
    };
    write_frame(&mut se, &Frame::to_se(abort_response, &[]));
    write_frame(
        &mut se,
        &Frame::to_se(Pcb::I { ns, more: false }, &[1, 2, 3]),
    );
    assert_eq!(
        read_frame_bytewise(&mut se).inf,
        expected_response(&[1, 2, 3])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn an_endless_response_chain_is_refused_not_buffered() {
    use super::link::MAX_RESPONSE_APDU;
    // A broken chip that chains response blocks past any response APDU's length.
    let blocks = MAX_RESPONSE_APDU / 254 + 2;
    let replies = (0..blocks)
        .map(|i| {
            Frame::to_host(
                Pcb::I {
                    ns: (i % 2) as u8,
                    more: true,
                },
                &[0x5A; 254],
            )
        })
        .collect();
    let mut link = scripted_link(replies);
    let err = link.transceive(&[0x00, 0x01, 0x02, 0x03]).unwrap_err();
    assert_eq!(
        err,
        LinkError::ResponseTooLong {
            limit: MAX_RESPONSE_APDU
        }
    );
    assert!(
        err.to_string().contains("longer than any response APDU"),
        "{err}"
    );
}

#[test]
fn an_s_response_of_another_kind_is_refused() {
    // RESYNCH answered with an IFS response: an S-block, but not the one asked for.
    let mut link = scripted_link(vec![s_frame(SKind::Ifs, true, &[])]);
    let err = link.resync().unwrap_err();
    assert!(
        matches!(err, LinkError::Protocol { pcb: 0xE1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("RESYNCH response"), "{err}");
    // END OF APDU SESSION answered with a chip reset response.
    let mut link = scripted_link(vec![s_frame(SKind::ChipReset, true, &[])]);
    let err = link.end_apdu_session().unwrap_err();
    assert!(
        matches!(err, LinkError::Protocol { pcb: 0xE6, .. }),
        "{err:?}"
    );
    // And the request itself echoed back is not its response either.
    let mut link = scripted_link(vec![s_frame(SKind::EndOfApduSession, false, &[])]);
    assert!(link.end_apdu_session().is_err());
}

/// A bus that fails with an error other than a NACK (arbitration lost, bus error...).
struct BrokenBus {
    attempts: Arc<AtomicU32>,
}

#[derive(Debug)]
struct BusFault;

impl embedded_hal::i2c::Error for BusFault {
    fn kind(&self) -> embedded_hal::i2c::ErrorKind {
        embedded_hal::i2c::ErrorKind::Bus
    }
}

impl ErrorType for BrokenBus {
    type Error = BusFault;
}

impl I2c for BrokenBus {
    fn transaction(&mut self, _: u8, _: &mut [Operation<'_>]) -> Result<(), BusFault> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        Err(BusFault)
    }
}

#[test]
fn only_an_address_nack_is_polled_as_busy_other_bus_errors_fail_at_once() {
    let attempts = Arc::new(AtomicU32::new(0));
    let delay = CountingDelay::default();
    let delays = delay.0.clone();
    let err = T1Link::open(
        BrokenBus {
            attempts: attempts.clone(),
        },
        delay,
        T1Options::default(),
    )
    .err()
    .expect("a broken bus cannot open a link");
    assert!(matches!(err, LinkError::I2c { .. }), "{err:?}");
    // Polled as "busy", it would retry for a whole reply window (hundreds of attempts).
    assert!(
        attempts.load(Ordering::SeqCst) <= 2,
        "{} attempts on a broken bus",
        attempts.load(Ordering::SeqCst)
    );
    assert_eq!(delays.load(Ordering::SeqCst), 0, "no polling sleep");
}
