//! The host side of T=1 over I2C: turns one APDU into I-blocks and back, and
//! recovers from everything the bus can do to a frame.
//!
//! Recovery rules (ISO 7816-3 §11.6 as UM11225 narrows them):
//! - a damaged reply (bad CRC, NAD or length) is answered with an R-block carrying
//!   the error, and the SE retransmits;
//! - an R-block from the SE that does not acknowledge a chained block asks for our
//!   last frame again;
//! - no reply within the waiting time: solicit with an R-block (or repeat the
//!   S-request); after `MAX_SILENCES` silences the chip is `NotResponding`;
//! - WTX requests are answered and extend the wait, up to an overall limit;
//! - every frame's CRC is checked, and after `max_retries` retransmissions the link
//!   gives up with an error (and resynchronises so the next exchange starts clean).

use std::time::{Duration, Instant};

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{Error as _, ErrorKind, I2c, NoAcknowledgeSource};

use super::atr::Atr;
use super::frame::{Frame, Pcb, RError, SKind, CRC_LEN, HEADER_LEN, MAX_INF, NAD_SE_TO_HOST};
use super::{ApduTransport, LinkError};
use crate::wipe::{self, SecretBytes};

mod supervisory;

/// The SE050's 7-bit I2C address.
pub const DEFAULT_ADDRESS: u8 = 0x48;

/// The longest response APDU there can be: 65536 data bytes (extended Le) and SW1 SW2. A chip
/// that chains more is broken, and must not make the host buffer without end.
pub const MAX_RESPONSE_APDU: usize = 65536 + 2;

/// Room reserved up front for a response: one ECDH answer (and most others) never grow it.
const RESPONSE_RESERVE: usize = MAX_INF;

/// Replies that may go missing in one exchange before the chip is declared
/// unresponsive (each costs one reply window, about 1.5 BWT).
const MAX_SILENCES: u32 = 3;

/// The time one operation on the link (a command APDU with its response, or one S-block
/// exchange) may take in all. Every wait in it is cut to what is left, so an ATR's BWT
/// (up to 65.5 s) never stretches a call past `max_response_time`.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    start: Instant,
    limit: Duration,
}

impl Deadline {
    fn after(limit: Duration) -> Deadline {
        Deadline {
            start: Instant::now(),
            limit,
        }
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.elapsed())
    }

    fn passed(&self) -> bool {
        self.elapsed() > self.limit
    }

    fn exhausted(&self) -> bool {
        self.remaining().is_zero()
    }
}

/// Tunables of the host side. The defaults suit a real SE050.
#[derive(Debug, Clone)]
pub struct T1Options {
    /// 7-bit I2C address of the SE.
    pub address: u8,
    /// Block waiting time until the ATR tells the real one.
    pub initial_bwt: Duration,
    /// Pause between polls of a NACKing chip; `None` uses the ATR's MPOT
    /// (clamped to 200 us ..= 1 ms).
    pub poll_interval: Option<Duration>,
    /// Retransmissions allowed per frame before giving up (NXP: 10).
    pub max_retries: u32,
    /// Overall limit for one call: a command APDU and its whole response, including all
    /// WTX extensions, chaining and retransmissions, or one S-block exchange. No wait
    /// the ATR announces goes past it.
    pub max_response_time: Duration,
}

impl Default for T1Options {
    fn default() -> Self {
        T1Options {
            address: DEFAULT_ADDRESS,
            initial_bwt: Duration::from_millis(1000),
            poll_interval: None,
            max_retries: 10,
            max_response_time: Duration::from_secs(30),
        }
    }
}

/// Why a read did not produce a frame.
enum ReadFailure {
    /// Bytes came, but not a valid frame from the SE.
    Damaged(String),
    /// The SE NACKed its address for the whole allowed time.
    Silent(Duration),
    /// The bus failed; no point in retrying.
    Fatal(LinkError),
}

/// T=1 over I2C to one SE050.
pub struct T1Link<I2C, D> {
    i2c: I2C,
    delay: D,
    options: T1Options,
    bwt: Duration,
    ifsc: usize,
    poll_interval: Duration,
    /// N(S) of the next I-block we send.
    send_seq: u8,
    /// N(S) we expect on the next I-block from the SE.
    recv_seq: u8,
    atr: Option<Atr>,
    /// A failed exchange could not be followed by a RESYNCH: do it before the next.
    needs_resync: bool,
}

impl<I2C: I2c, D: DelayNs> T1Link<I2C, D> {
    /// A link that has not talked to the chip yet; see [`T1Link::open`].
    pub fn new(i2c: I2C, delay: D, options: T1Options) -> Self {
        let poll_interval = options.poll_interval.unwrap_or(Duration::from_millis(1));
        T1Link {
            i2c,
            delay,
            bwt: options.initial_bwt,
            ifsc: MAX_INF,
            poll_interval,
            options,
            send_seq: 0,
            recv_seq: 0,
            atr: None,
            needs_resync: false,
        }
    }

    /// Start a session: resynchronise and read the ATR (which sets BWT, IFSC, MPOT).
    pub fn open(i2c: I2C, delay: D, options: T1Options) -> Result<Self, LinkError> {
        let mut link = T1Link::new(i2c, delay, options);
        link.resync()?;
        link.get_atr()?;
        Ok(link)
    }

    /// The ATR read last, if any.
    pub fn atr(&self) -> Option<&Atr> {
        self.atr.as_ref()
    }

    /// The bus, e.g. to look at a virtual chip's counters.
    pub fn bus(&self) -> &I2C {
        &self.i2c
    }

    pub fn bus_mut(&mut self) -> &mut I2C {
        &mut self.i2c
    }

    /// A fresh budget for one call.
    fn deadline(&self) -> Deadline {
        Deadline::after(self.options.max_response_time)
    }

    /// How long to poll for a reply after a request (or a WTX with `multiplier`):
    /// the chip must answer or ask for more time within BWT; half a BWT of slack
    /// covers the host's own scheduling.
    fn reply_window(&self, multiplier: u8) -> Duration {
        self.bwt * u32::from(multiplier.max(1)) + self.bwt / 2 + Duration::from_millis(5)
    }

    /// Poll `op` while the chip NACKs its address: first at once (no sleep when the
    /// chip is ready), then every poll interval, until `limit` has passed and at
    /// least `limit / poll interval` polls were made (the BWT/MPOT bound of UM11225;
    /// counting polls too keeps an overloaded host, whose sleeps overshoot, from
    /// giving up after a handful of polls).
    fn poll<T>(
        &mut self,
        operation: &'static str,
        limit: Duration,
        mut op: impl FnMut(&mut I2C) -> Result<T, I2C::Error>,
    ) -> Result<T, LinkError> {
        let start = Instant::now();
        let address = self.options.address;
        let min_polls = (limit.as_micros() / self.poll_interval.as_micros().max(1)) as u64;
        let mut polls = 0u64;
        loop {
            polls += 1;
            match op(&mut self.i2c) {
                Ok(value) => return Ok(value),
                Err(e) if is_address_nack(e.kind()) => {
                    let waited = start.elapsed();
                    if waited >= limit && polls >= min_polls {
                        return Err(LinkError::NotResponding {
                            address,
                            waited,
                            operation,
                        });
                    }
                    self.delay
                        .delay_us(self.poll_interval.as_micros().max(1) as u32);
                }
                Err(e) => {
                    return Err(LinkError::I2c {
                        operation,
                        address,
                        message: format!("{e:?} ({:?})", e.kind()),
                    })
                }
            }
        }
    }

    fn send(&mut self, frame: &Frame, deadline: Deadline) -> Result<(), LinkError> {
        let bytes = frame.encode();
        let address = self.options.address;
        let limit = self.reply_window(1).min(deadline.remaining());
        self.poll("write a frame", limit, |i2c| i2c.write(address, &bytes))
    }

    /// Read one frame: the 3-byte header first, then INF and CRC, as the chip
    /// streams it.
    fn read_frame(&mut self, limit: Duration, deadline: Deadline) -> Result<Frame, ReadFailure> {
        let address = self.options.address;
        let mut header = [0u8; HEADER_LEN];
        match self.poll("read a frame header", limit, |i2c| {
            i2c.read(address, &mut header)
        }) {
            Ok(()) => {}
            Err(LinkError::NotResponding { waited, .. }) => {
                return Err(ReadFailure::Silent(waited))
            }
            Err(e) => return Err(ReadFailure::Fatal(e)),
        }
        // Wiped when dropped: the INF may be part of a shared secret.
        let mut bytes = SecretBytes::new(vec![0u8; HEADER_LEN + header[2] as usize + CRC_LEN]);
        bytes[..HEADER_LEN].copy_from_slice(&header);
        let body_limit = self.bwt.min(deadline.remaining());
        match self.poll("read a frame body", body_limit, |i2c| {
            i2c.read(address, &mut bytes[HEADER_LEN..])
        }) {
            Ok(()) => {}
            Err(LinkError::NotResponding { .. }) => {
                return Err(ReadFailure::Damaged(
                    "the chip stopped answering in the middle of a frame".into(),
                ))
            }
            Err(e) => return Err(ReadFailure::Fatal(e)),
        }
        if header[0] != NAD_SE_TO_HOST {
            return Err(ReadFailure::Damaged(format!(
                "frame with NAD {:#04x}, expected {NAD_SE_TO_HOST:#04x}",
                header[0]
            )));
        }
        Frame::decode(&bytes).map_err(|e| ReadFailure::Damaged(format!("damaged frame: {e}")))
    }

    /// Send `frame` and return the SE's answer to it, handling on the way WTX
    /// requests, retransmission requests and damaged or missing replies.
    fn exchange(&mut self, frame: &Frame, deadline: Deadline) -> Result<Frame, LinkError> {
        self.send(frame, deadline)?;
        // What to repeat when the SE asks for it: the frame, or our WTX answer.
        let mut last_sent = frame.clone();
        let mut window = self.reply_window(1);
        let mut retries = 0u32;
        let mut silences = 0u32;
        let mut wtx_requests = 0u32;
        loop {
            if deadline.passed() {
                return Err(LinkError::ResponseTimeout {
                    waited: deadline.elapsed(),
                    wtx_requests,
                });
            }
            // A WTX may ask for up to 255 BWT; the overall limit still holds within one window.
            let limit = window.min(deadline.remaining());
            let (problem, recovery) = match self.read_frame(limit, deadline) {
                Ok(reply) => match reply.pcb {
                    Pcb::S {
                        kind: SKind::Wtx,
                        response: false,
                    } => {
                        let multiplier = reply.inf.first().copied().unwrap_or(1).max(1);
                        wtx_requests += 1;
                        last_sent = Frame::to_se(
                            Pcb::S {
                                kind: SKind::Wtx,
                                response: true,
                            },
                            &[multiplier],
                        );
                        self.send(&last_sent, deadline)
                            .map_err(|e| timed_out(e, deadline, wtx_requests))?;
                        window = self.reply_window(multiplier);
                        continue;
                    }
                    Pcb::S {
                        kind: SKind::Abort,
                        response: false,
                    } => {
                        // The chip will not take the rest of a chain: the caller knows
                        // whether there was one.
                        return Ok(reply);
                    }
                    Pcb::S {
                        kind,
                        response: false,
                    } => {
                        return Err(LinkError::Protocol {
                            pcb: reply.pcb.to_byte(),
                            expected: unexpected_s_request(kind),
                        })
                    }
                    Pcb::R { nr, error } if !is_chain_ack(frame, nr, error) => (
                        format!(
                            "the chip asked for a retransmission (R-block {:#04x})",
                            reply.pcb.to_byte()
                        ),
                        Some(last_sent.clone()),
                    ),
                    _ => return Ok(reply),
                },
                Err(ReadFailure::Damaged(why)) => (
                    why,
                    Some(Frame::to_se(
                        Pcb::R {
                            nr: self.recv_seq,
                            error: RError::Crc,
                        },
                        &[],
                    )),
                ),
                Err(ReadFailure::Silent(waited)) => {
                    if deadline.exhausted() {
                        // Cut short by the call's limit, not a silence of a whole window.
                        return Err(LinkError::ResponseTimeout {
                            waited: deadline.elapsed(),
                            wtx_requests,
                        });
                    }
                    silences += 1;
                    if silences > MAX_SILENCES {
                        return Err(LinkError::NotResponding {
                            address: self.options.address,
                            waited,
                            operation: "read a reply",
                        });
                    }
                    // A lost frame, ours or the chip's: an S-request is simply repeated,
                    // anything else is solicited with an R-block naming what we expect.
                    let solicit = if matches!(last_sent.pcb, Pcb::S { .. }) {
                        last_sent.clone()
                    } else {
                        Frame::to_se(
                            Pcb::R {
                                nr: self.recv_seq,
                                error: RError::Other,
                            },
                            &[],
                        )
                    };
                    (
                        format!("no reply within {} ms", waited.as_millis()),
                        Some(solicit),
                    )
                }
                Err(ReadFailure::Fatal(e)) => return Err(e),
            };
            retries += 1;
            if retries > self.options.max_retries {
                return Err(LinkError::RetriesExhausted {
                    attempts: retries - 1,
                    last_problem: problem,
                });
            }
            log::debug!("T=1 recovery {retries}: {problem}");
            if let Some(recovery) = recovery {
                self.send(&recovery, deadline)
                    .map_err(|e| timed_out(e, deadline, wtx_requests))?;
            }
            window = self.reply_window(1);
        }
    }

    fn transceive_inner(
        &mut self,
        command: &[u8],
        deadline: Deadline,
    ) -> Result<SecretBytes, LinkError> {
        if command.is_empty() {
            return Err(LinkError::InvalidCommand("empty command APDU".into()));
        }
        let chunks: Vec<&[u8]> = command.chunks(self.ifsc).collect();
        let mut reply = None;
        for (i, chunk) in chunks.iter().enumerate() {
            let more = i + 1 < chunks.len();
            let block = Frame::to_se(
                Pcb::I {
                    ns: self.send_seq,
                    more,
                },
                chunk,
            );
            let answer = self.exchange(&block, deadline)?;
            if is_abort_request(&answer) && chunks.len() > 1 {
                // Acknowledge, so that the chip drops the chain too (the resynchronisation
                // after this error would as well).
                let ack = Frame::to_se(
                    Pcb::S {
                        kind: SKind::Abort,
                        response: true,
                    },
                    &[],
                );
                if let Err(e) = self.send(&ack, deadline) {
                    log::debug!("answering the chip's S(ABORT) failed: {e}");
                }
                return Err(LinkError::ChainAborted {
                    accepted: i * self.ifsc,
                    total: command.len(),
                });
            }
            self.send_seq ^= 1;
            if more {
                if !matches!(answer.pcb, Pcb::R { .. }) {
                    return Err(LinkError::Protocol {
                        pcb: answer.pcb.to_byte(),
                        expected: "an R-block acknowledging a chained I-block",
                    });
                }
            } else {
                reply = Some(answer);
            }
        }
        let mut reply = reply.expect("at least one chunk");
        // Grown only through wipe::extend, so no copy of a secret is left behind.
        let mut response = wipe::with_capacity(RESPONSE_RESERVE);
        let mut duplicates = 0u32;
        let mut empty_links = 0u32;
        loop {
            match reply.pcb {
                Pcb::I { ns, more } => {
                    if more && reply.inf.is_empty() {
                        // A chain link that carries nothing never brings the response closer
                        // to its end: a chip that sends them without end would hold the call
                        // (and the chip lock) for ever.
                        empty_links += 1;
                        if empty_links > self.options.max_retries {
                            return Err(LinkError::RetriesExhausted {
                                attempts: empty_links - 1,
                                last_problem: format!(
                                    "the chip kept chaining empty I-blocks \
                                     (PCB {:#04x}: more data announced, none sent)",
                                    reply.pcb.to_byte()
                                ),
                            });
                        }
                    }
                    if ns == self.recv_seq {
                        if response.len() + reply.inf.len() > MAX_RESPONSE_APDU {
                            return Err(LinkError::ResponseTooLong {
                                limit: MAX_RESPONSE_APDU,
                            });
                        }
                        wipe::extend(&mut response, &reply.inf);
                        self.recv_seq ^= 1;
                        if !more {
                            return Ok(response);
                        }
                    } else {
                        // A block we already have, repeated: ask again for the next one.
                        duplicates += 1;
                        if duplicates > self.options.max_retries {
                            return Err(LinkError::RetriesExhausted {
                                attempts: duplicates - 1,
                                last_problem: format!("the chip kept repeating I-block N(S)={ns}"),
                            });
                        }
                    }
                    let ack = Frame::to_se(
                        Pcb::R {
                            nr: self.recv_seq,
                            error: RError::None,
                        },
                        &[],
                    );
                    reply = self.exchange(&ack, deadline)?;
                }
                _ => {
                    return Err(LinkError::Protocol {
                        pcb: reply.pcb.to_byte(),
                        expected: "an I-block carrying the response",
                    })
                }
            }
        }
    }
}

impl<I2C, D> ApduTransport for T1Link<I2C, D>
where
    I2C: I2c + Send,
    D: DelayNs + Send,
{
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        // One budget for the whole call, the resynchronisations included: a chip that
        // stops answering fails the call within max_response_time, whatever its ATR said.
        let deadline = self.deadline();
        if self.needs_resync {
            self.resync_within(deadline)?;
        }
        let result = self.transceive_inner(command, deadline);
        if let Err(e) = &result {
            // Leave the link in a known state for the next exchange (NXP does a soft
            // reset here; RESYNCH keeps the applet selected). Best effort: the error
            // that matters is the one already in hand. With no time left, the next
            // call resynchronises first (needs_resync).
            if !matches!(e, LinkError::InvalidCommand(_)) {
                if deadline.passed() {
                    self.needs_resync = true;
                } else if let Err(again) = self.resync_within(deadline) {
                    log::debug!("resynchronisation after a failed exchange failed too: {again}");
                }
            }
        }
        result
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        T1Link::resync(self)
    }
}

/// A chip still busy (NACKing) when the call's time is up: the overall limit is what ended
/// the call, so say that rather than "not responding".
fn timed_out(error: LinkError, deadline: Deadline, wtx_requests: u32) -> LinkError {
    match error {
        LinkError::NotResponding { .. } if deadline.exhausted() => LinkError::ResponseTimeout {
            waited: deadline.elapsed(),
            wtx_requests,
        },
        other => other,
    }
}

fn is_address_nack(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
            | ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown)
    )
}

fn is_abort_request(frame: &Frame) -> bool {
    frame.pcb
        == Pcb::S {
            kind: SKind::Abort,
            response: false,
        }
}

/// Whether R(nr, error) acknowledges `sent`, a chained I-block.
fn is_chain_ack(sent: &Frame, nr: u8, error: RError) -> bool {
    matches!(sent.pcb, Pcb::I { ns, more: true } if nr != ns && error == RError::None)
}

fn unexpected_s_request(kind: SKind) -> &'static str {
    match kind {
        SKind::Abort => "no ABORT request from the chip outside a chain",
        _ => "no S-request from the chip other than WTX",
    }
}
