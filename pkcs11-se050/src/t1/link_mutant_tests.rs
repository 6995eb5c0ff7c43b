//! Rules of the host link that cargo-mutants showed no other test would miss (issue 15,
//! item 6): the response length limit, the overall deadline's checks, the IFSD range,
//! and the reply window taken from the ATR. Each test names the mutant it kills.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use super::frame::{Frame, Pcb, SKind, MAX_INF};
use super::link::{T1Link, T1Options};
use super::test_chip::{s_response, wtx_request, CountingDelay, TestChip};
use super::{ApduTransport, LinkError};

/// Opens a link on `chip` (initial BWT 5 ms) and runs one transceive of `command` on a
/// thread; fails the test instead of hanging it if no answer comes within `patience`.
fn bounded_call(
    chip: TestChip,
    options: T1Options,
    command: Vec<u8>,
    patience: Duration,
) -> Result<Vec<u8>, LinkError> {
    let mut link = T1Link::open(chip, CountingDelay::default(), options).expect("open");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(link.transceive(&command).map(|r| r.to_vec()));
    });
    rx.recv_timeout(patience)
        .unwrap_or_else(|_| panic!("the call did not return within {patience:?}"))
}

fn options(max_response_time: Duration) -> T1Options {
    T1Options {
        initial_bwt: Duration::from_millis(5),
        poll_interval: Some(Duration::from_millis(1)),
        max_response_time,
        ..T1Options::default()
    }
}

/// A response of `len` bytes, chained in blocks of the largest INF.
fn response_chain(len: usize) -> Vec<Vec<u8>> {
    let data: Vec<u8> = (0..len).map(|i| (i * 13) as u8).collect();
    let chunks: Vec<&[u8]> = data.chunks(MAX_INF).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let pcb = Pcb::I {
                ns: (i % 2) as u8,
                more: i + 1 < chunks.len(),
            };
            Frame::to_host(pcb, chunk).encode().to_vec()
        })
        .collect()
}

#[test]
fn the_longest_response_apdu_is_taken_and_one_byte_more_refused() {
    // Kills MAX_RESPONSE_APDU `65536 + 2` -> `65536 - 2` (the longest legal response,
    // 65536 data bytes and SW1 SW2, refused) and -> `65536 * 2` (one byte more taken).
    let patience = Duration::from_secs(60);
    let chip = TestChip::new(5, response_chain(65538), false);
    let response = bounded_call(
        chip,
        options(Duration::from_secs(30)),
        vec![0x80, 1, 2, 3],
        patience,
    )
    .expect("a response of 65536 data bytes and SW1 SW2");
    assert_eq!(response.len(), 65538);
    assert_eq!(response[65537], (65537 * 13) as u8);

    let chip = TestChip::new(5, response_chain(65539), false);
    let err = bounded_call(
        chip,
        options(Duration::from_secs(30)),
        vec![0x80, 1, 2, 3],
        patience,
    )
    .unwrap_err();
    assert!(
        matches!(err, LinkError::ResponseTooLong { limit: 65538 }),
        "{err:?}"
    );
}

#[test]
fn endless_wtx_requests_end_at_the_overall_limit() {
    // A chip that answers every WTX response with another WTX request at once: no
    // silence and no retry ever ends it, only the deadline's check at the top of each
    // round. Kills `Deadline::passed` -> false and its `>` -> `==` (both hang, bounded
    // here by the patience), and `Deadline::elapsed` -> 0 (the deadline never passes).
    let chip = TestChip::new(5, vec![wtx_request(1)], true);
    let err = bounded_call(
        chip,
        options(Duration::from_millis(300)),
        vec![0x80, 1, 2, 3],
        Duration::from_secs(10),
    )
    .unwrap_err();
    match err {
        LinkError::ResponseTimeout {
            waited,
            wtx_requests,
        } => {
            assert!(wtx_requests > 1, "{wtx_requests}");
            assert!(waited >= Duration::from_millis(300), "{waited:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_chip_gone_after_asking_for_time_is_a_timeout_not_a_dead_chip() {
    // The ATR announces the longest BWT; the chip takes the command, asks for more time,
    // then NACKs everything: our WTX response waits out the call's limit. The limit, not
    // the chip, ended the call, so it is a ResponseTimeout (`timed_out`). Kills
    // `Deadline::exhausted` -> false and `Deadline::elapsed` -> 0 (both: NotResponding).
    let chip = TestChip::new(u16::MAX, vec![wtx_request(1)], false);
    let err = bounded_call(
        chip,
        options(Duration::from_millis(300)),
        vec![0x80, 1, 2, 3],
        Duration::from_secs(10),
    )
    .unwrap_err();
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
fn a_reply_cut_short_by_the_limit_is_a_timeout_without_a_solicitation() {
    // The chip takes the command, then NACKs everything. The read is cut to the 300 ms
    // left of the call (the ATR's BWT is 65 s): that is the call's limit, not a silence,
    // so no R-block is sent to solicit a reply and the error is a ResponseTimeout. Kills
    // `Deadline::exhausted` -> false (it solicits, the write is NACKed: NotResponding).
    let chip = TestChip::new(u16::MAX, vec![vec![]], false);
    let writes = chip.writes.clone();
    let err = bounded_call(
        chip,
        options(Duration::from_millis(300)),
        vec![0x80, 1, 2, 3],
        Duration::from_secs(10),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            LinkError::ResponseTimeout {
                wtx_requests: 0,
                ..
            }
        ),
        "{err:?}"
    );
    // RESYNCH, GET ATR, the command; nothing after it (the RESYNCH is left for the next call).
    assert_eq!(writes.load(Ordering::SeqCst), 3);
}

#[test]
fn ifsd_outside_1_to_254_is_refused_before_the_bus() {
    // Kills `size == 0 || size > MAX_INF` -> `&&` (0 is sent), and `>` -> `==` (255 is
    // sent) or `>=` (254, the largest legal IFSD, refused).
    for size in [0u8, 255] {
        let chip = TestChip::new(5, vec![], false);
        let writes = chip.writes.clone();
        let mut link = T1Link::open(
            chip,
            CountingDelay::default(),
            options(Duration::from_secs(1)),
        )
        .expect("open");
        let opening_writes = writes.load(Ordering::SeqCst);
        let err = link.announce_ifsd(size).unwrap_err();
        assert!(
            matches!(&err, LinkError::InvalidCommand(why) if why.contains(&size.to_string())),
            "{size}: {err:?}"
        );
        assert_eq!(
            writes.load(Ordering::SeqCst),
            opening_writes,
            "{size} went on the bus"
        );
    }
    for size in [1u8, 254] {
        let chip = TestChip::new(5, vec![s_response(SKind::Ifs, &[size])], false);
        let mut link = T1Link::open(
            chip,
            CountingDelay::default(),
            options(Duration::from_secs(1)),
        )
        .expect("open");
        link.announce_ifsd(size)
            .unwrap_or_else(|e| panic!("IFSD {size}: {e:?}"));
    }
}

#[test]
fn silences_are_waited_for_one_and_a_half_bwt_of_the_atr() {
    // The ATR announces BWT 200 ms (the link starts at 5 ms); the chip takes every write
    // and never answers. Each of the 4 silences before NotResponding is one reply window,
    // 1.5 BWT + 5 ms = 305 ms, i.e. 304..=305 polls of 1 ms each. Kills `apply_atr`'s
    // `!atr.bwt.is_zero()` -> `atr.bwt.is_zero()` (the ATR's BWT ignored: 12 ms windows)
    // and `reply_window`'s `bwt / 2` -> `bwt * 2` (605 ms windows).
    let chip = TestChip::new(200, vec![vec![]], true);
    let delay = CountingDelay::default();
    let polls = delay.0.clone();
    let mut link = T1Link::open(chip, delay, options(Duration::from_secs(30))).expect("open");
    let opening_polls = polls.load(Ordering::SeqCst);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(link.transceive(&[0x80, 1, 2, 3]).map(|r| r.to_vec()));
    });
    let err = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the call did not return within 20 s")
        .unwrap_err();
    match err {
        LinkError::NotResponding { waited, .. } => {
            assert!(waited >= Duration::from_millis(305), "{waited:?}");
        }
        other => panic!("{other:?}"),
    }
    // The call's 4 silences, then the 4 of the RESYNCH the link tries after the failure
    // (its S-request repeated each time): 8 windows.
    let polls = polls.load(Ordering::SeqCst) - opening_polls;
    assert!((8 * 300..=8 * 310).contains(&polls), "{polls} polls");
}

#[test]
fn an_s_request_other_than_wtx_is_named_as_such() {
    // The chip answers a command with S(RESYNCH request), which it never sends. Kills the
    // deletion of `exchange`'s arm for unexpected S-requests (the frame would then be
    // returned, and refused only as "not an I-block", hiding what the chip asked for).
    let resynch_request = Frame::to_host(
        Pcb::S {
            kind: SKind::Resynch,
            response: false,
        },
        &[],
    )
    .encode()
    .to_vec();
    let chip = TestChip::new(5, vec![resynch_request], false);
    let err = bounded_call(
        chip,
        options(Duration::from_secs(1)),
        vec![0x80, 1, 2, 3],
        Duration::from_secs(10),
    )
    .unwrap_err();
    assert!(
        matches!(err, LinkError::Protocol { pcb: 0xC0, expected } if expected.contains("other than WTX")),
        "{err:?}"
    );
}

#[test]
fn endless_damaged_replies_exhaust_the_retries_long_before_the_limit() {
    // Every reply has a bad CRC, at once: only the retry count ends the exchange. Kills
    // `retries += 1` -> `*=` (the count stays 0: the call runs to its 5 s limit and ends
    // in a ResponseTimeout instead).
    let mut damaged = Frame::to_host(Pcb::I { ns: 0, more: false }, &[0x90, 0x00])
        .encode()
        .to_vec();
    *damaged.last_mut().unwrap() ^= 0xFF;
    let chip = TestChip::new(5, vec![damaged], true);
    let mut opts = options(Duration::from_secs(5));
    opts.max_retries = 3;
    let err = bounded_call(chip, opts, vec![0x80, 1, 2, 3], Duration::from_secs(20)).unwrap_err();
    assert!(
        matches!(err, LinkError::RetriesExhausted { attempts: 3, .. }),
        "{err:?}"
    );
}

/// Runs one call against a chip cycling `replies`, with max_retries 3 and a 2 s limit.
fn retries_error(replies: Vec<Vec<u8>>) -> LinkError {
    let mut opts = options(Duration::from_secs(2));
    opts.max_retries = 3;
    let chip = TestChip::new(5, replies, true);
    bounded_call(chip, opts, vec![0x80, 1, 2, 3], Duration::from_secs(20)).unwrap_err()
}

#[test]
fn empty_chain_links_and_repeated_blocks_are_counted_exactly() {
    // Empty I-blocks with the more bit, N(S) 0 and 1 in turn: the 4th is one too many.
    // Kills 568's `>` -> `==`/`<`/`>=` and 570's `- 1` -> `+ 1`/`/ 1` (attempts 3).
    let empty = (0..2u8)
        .map(|ns| {
            Frame::to_host(Pcb::I { ns, more: true }, &[])
                .encode()
                .to_vec()
        })
        .collect();
    let err = retries_error(empty);
    assert!(
        matches!(err, LinkError::RetriesExhausted { attempts: 3, .. }),
        "{err:?}"
    );
    // The chip repeats N(S)=1 while N(S)=0 is expected. Kills 592's `+=` -> `-=`/`*=`,
    // 593's `>` -> `==`/`<`/`>=` and 595's `- 1` -> `+ 1`/`/ 1`.
    let repeated = vec![Frame::to_host(Pcb::I { ns: 1, more: false }, &[0x90, 0x00])
        .encode()
        .to_vec()];
    let err = retries_error(repeated);
    assert!(
        matches!(err, LinkError::RetriesExhausted { attempts: 3, .. }),
        "{err:?}"
    );
}

#[test]
fn resync_through_the_transport_asks_the_chip_and_reports_its_silence() {
    // The token resynchronises through the ApduTransport trait after a failed exchange. Kills
    // `<T1Link as ApduTransport>::resync` -> Ok(()): the request must reach the bus, and a chip
    // that no longer answers must not be reported as resynchronised.
    let answering = TestChip::new(5, vec![s_response(SKind::Resynch, &[])], false);
    let writes = answering.writes.clone();
    let mut link = T1Link::open(
        answering,
        CountingDelay::default(),
        options(Duration::from_millis(300)),
    )
    .expect("open");
    let before = writes.load(Ordering::SeqCst);
    ApduTransport::resync(&mut link).expect("the chip answered S(RESYNCH response)");
    assert_eq!(
        writes.load(Ordering::SeqCst),
        before + 1,
        "one S(RESYNCH request) on the bus"
    );

    let silent = TestChip::new(5, vec![], false);
    let mut link = T1Link::open(
        silent,
        CountingDelay::default(),
        options(Duration::from_millis(300)),
    )
    .expect("open");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(ApduTransport::resync(&mut link));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("resync returned within 10 s");
    assert!(result.is_err(), "a silent chip resynchronised: {result:?}");
}
