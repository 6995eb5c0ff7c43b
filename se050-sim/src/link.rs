//! The chip's side of T=1 over I2C: what an SE050 does with the bytes a host
//! writes, and what it lets the host read.
//!
//! Modelled behaviour:
//! - the address is NACKed while the chip works on a command (`Processed::busy`,
//!   real time) and whenever it has nothing to say;
//! - a frame the host reads is a byte stream: it may take it in several reads;
//!   bytes past the end read as 0xFF; a new write discards what was not read;
//! - chained commands are acknowledged with R-blocks, long responses are chained
//!   and wait for the host's R-block before each next part;
//! - a damaged frame is answered with R(N(R) = expected, error); an R-block asks
//!   for the last I- or S-block again (R-blocks are recomputed, not repeated); a
//!   repeated I-block is answered again, never run twice (each ECDH wears the
//!   real chip's NVM);
//! - past BWT the chip sends S(WTX request, 1) and keeps working after the answer;
//! - the S-blocks RESYNCH, IFS, ABORT, END OF APDU SESSION, chip reset, GET ATR and
//!   interface soft reset; resets call `ApduHandler::reset`;
//! - after an unexpected internal reset (fault injection) the chip refuses I- and
//!   R-blocks until the host resynchronises, so the tail of an interrupted chain
//!   can never be taken for a whole command;
//! - a chained command longer than the chip's APDU buffer ([`MAX_COMMAND_APDU`]) is
//!   aborted: the chip drops what it buffered and sends S(ABORT request), the T=1 way
//!   (ISO 7816-3 §11.6.3) for a receiver to end a chain it cannot take. It repeats that
//!   request to every I- or R-block until the host answers S(ABORT response) or
//!   resynchronises, so no tail of the chain can be taken for a command. (How a real
//!   SE050 ends such a chain is not public: a 6700 after the last block would need it
//!   to acknowledge an endless chain first; the abort bounds memory and time at once.)
//!
//! Every buffer that holds a command or response is wiped when dropped or reused: the
//! virtual chip lives in the host's process, and a response may be a shared secret.

use std::time::{Duration, Instant};

use crate::atr::SE050_ATR;
use crate::faults::{Direction, FaultHandle};
use crate::protocol::MAX_APDU_PAYLOAD;
use crate::wipe::{self, SecretBytes};
use crate::wire::frame::{Frame, Pcb, RError, SKind, MAX_INF, NAD_HOST_TO_SE};
use crate::{ApduHandler, LinkStats};

/// The longest command APDU the chip takes: an extended APDU with the largest payload,
/// CLA INS P1 P2, Lc `00 HH LL`, 889 data bytes and a two-byte Le.
pub const MAX_COMMAND_APDU: usize = 4 + 3 + MAX_APDU_PAYLOAD + 2;

/// Where the chip is in the exchange of one APDU.
enum State {
    Idle,
    /// Chained command blocks received so far.
    ReceivingChain {
        apdu: SecretBytes,
    },
    /// A chain grew past [`MAX_COMMAND_APDU`]: S(ABORT request) is out, and nothing but
    /// the host's S(ABORT response) (or a RESYNCH) ends this state.
    Aborting,
    /// Working on a command; the response becomes readable at `done_at`.
    Processing {
        response: SecretBytes,
        done_at: Instant,
        /// When the chip next speaks: the response, or a WTX request.
        next_event: Instant,
        wtx_outstanding: bool,
    },
    /// A chained response part is out; `rest` follows after the host's R-block.
    SendingChain {
        rest: SecretBytes,
    },
}

pub(crate) struct DeviceLink {
    handler: Box<dyn ApduHandler>,
    bwt: Duration,
    atr: Vec<u8>,
    faults: FaultHandle,
    /// Largest INF the host accepts (S(IFS) may lower it).
    ifsd: usize,
    /// N(S) expected on the host's next I-block.
    host_seq: u8,
    /// N(S) of our next I-block.
    dev_seq: u8,
    state: State,
    /// The last I- or S-block sent: what an R-block asks for again. R-blocks
    /// themselves are never repeated, they are recomputed from the state.
    last_block: Option<Frame>,
    outgoing: SecretBytes,
    read_pos: usize,
    needs_resync: bool,
    pub(crate) stats: LinkStats,
    pub(crate) last_error: Option<String>,
}

impl DeviceLink {
    pub(crate) fn new(handler: Box<dyn ApduHandler>, bwt: Duration, faults: FaultHandle) -> Self {
        let mut atr = SE050_ATR.to_vec();
        // The ATR of a real chip, except for the BWT the options ask for.
        let bwt_ms = u16::try_from(bwt.as_millis()).unwrap_or(u16::MAX).max(1);
        atr[crate::atr::BWT_OFFSET..crate::atr::BWT_OFFSET + 2]
            .copy_from_slice(&bwt_ms.to_be_bytes());
        DeviceLink {
            handler,
            bwt: Duration::from_millis(bwt_ms.into()),
            atr,
            faults,
            ifsd: MAX_INF,
            host_seq: 0,
            dev_seq: 0,
            state: State::Idle,
            last_block: None,
            outgoing: SecretBytes::default(),
            read_pos: 0,
            needs_resync: false,
            stats: LinkStats::default(),
            last_error: None,
        }
    }

    pub(crate) fn buffered_command_len(&self) -> usize {
        match &self.state {
            State::ReceivingChain { apdu } => apdu.len(),
            _ => 0,
        }
    }

    /// Whether the chip NACKs its address right now (after catching up with time).
    pub(crate) fn busy(&mut self) -> bool {
        let now = Instant::now();
        self.maybe_reset_mid_apdu();
        self.advance(now);
        matches!(
            self.state,
            State::Processing {
                wtx_outstanding: false,
                next_event,
                ..
            } if now < next_event
        )
    }

    /// A read transfer; `false` means NACK (nothing to read).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> bool {
        if self.read_pos >= self.outgoing.len() {
            return false;
        }
        let available = &self.outgoing[self.read_pos..];
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        buf[n..].fill(0xFF);
        self.read_pos += n;
        true
    }

    /// A write transfer carrying one frame from the host.
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            // An address probe (i2cdetect-style): ACKed, nothing else.
            return;
        }
        // Whatever the host did not read is gone: it has moved on.
        wipe::clear(&mut self.outgoing);
        self.read_pos = 0;
        if self.faults.take_drop(Direction::HostToSe) {
            self.stats.frames_lost += 1;
            return;
        }
        let mut bytes = SecretBytes::new(bytes.to_vec());
        self.faults.maybe_corrupt(Direction::HostToSe, &mut bytes);
        self.stats.frames_received += 1;
        let frame = match Frame::decode(&bytes) {
            Ok(frame) if frame.nad == NAD_HOST_TO_SE => frame,
            Ok(frame) => {
                self.bad_frame(format!("frame with NAD {:#04x}, expected 0x5a", frame.nad));
                return;
            }
            Err(e) => {
                self.bad_frame(format!("damaged frame from host: {e}"));
                return;
            }
        };
        self.handle(frame);
    }

    fn bad_frame(&mut self, why: String) {
        self.stats.bad_frames_received += 1;
        self.last_error = Some(why);
        let error = RError::Crc;
        self.emit_r(self.host_seq, error);
    }

    fn protocol_error(&mut self, why: String) {
        self.stats.protocol_errors += 1;
        self.last_error = Some(why);
        self.emit_r(self.host_seq, RError::Other);
    }

    fn handle(&mut self, frame: Frame) {
        match frame.pcb {
            Pcb::S {
                kind,
                response: false,
            } => self.handle_s_request(kind, &frame.inf),
            Pcb::S {
                kind: SKind::Wtx,
                response: true,
            } => self.handle_wtx_response(&frame.inf),
            Pcb::S {
                kind: SKind::Abort,
                response: true,
            } if matches!(self.state, State::Aborting) => {
                // The chain is over; the host speaks next.
                self.state = State::Idle;
            }
            Pcb::S { kind, .. } => {
                self.protocol_error(format!("host sent an S-response {kind:?} nobody asked for"))
            }
            _ if self.needs_resync => {
                self.stats.protocol_errors += 1;
                self.last_error =
                    Some("block refused: link not resynchronised after a reset".into());
                self.emit_r(0, RError::Other);
            }
            Pcb::I { ns, more } => self.handle_i(ns, more, frame.inf),
            Pcb::R { nr, error } => self.handle_r(nr, error),
        }
    }

    fn handle_s_request(&mut self, kind: SKind, inf: &[u8]) {
        let respond = |link: &mut DeviceLink, inf: &[u8]| {
            link.emit(Frame::to_host(
                Pcb::S {
                    kind,
                    response: true,
                },
                inf,
            ))
        };
        match kind {
            SKind::Resynch => {
                self.restart_link();
                respond(self, &[]);
            }
            SKind::Ifs => match inf {
                [size] if *size >= 1 && *size as usize <= MAX_INF => {
                    self.ifsd = *size as usize;
                    respond(self, inf);
                }
                _ => self.protocol_error(format!("IFS request with INF {inf:02x?}")),
            },
            SKind::Abort => {
                self.state = State::Idle;
                respond(self, &[]);
            }
            SKind::Wtx => self.protocol_error("the host sent a WTX request".into()),
            SKind::EndOfApduSession => respond(self, &[]),
            SKind::ChipReset => {
                self.reset_chip();
                respond(self, &[]);
            }
            SKind::GetAtr => {
                let atr = self.atr.clone();
                respond(self, &atr);
            }
            SKind::SoftReset => {
                self.reset_chip();
                let atr = self.atr.clone();
                respond(self, &atr);
            }
        }
    }

    fn handle_wtx_response(&mut self, inf: &[u8]) {
        let now = Instant::now();
        let bwt = self.bwt;
        match &mut self.state {
            State::Processing {
                done_at,
                next_event,
                wtx_outstanding,
                ..
            } if *wtx_outstanding => {
                let multiplier = inf.first().copied().unwrap_or(1).max(1);
                *wtx_outstanding = false;
                *next_event = (*done_at).min(now + bwt * u32::from(multiplier));
                self.advance(now);
            }
            _ => self.protocol_error("WTX response while no WTX was requested".into()),
        }
    }

    fn handle_i(&mut self, ns: u8, more: bool, inf: SecretBytes) {
        if matches!(self.state, State::Aborting) {
            // Still the aborted chain as far as the chip knows: ask again to end it.
            self.stats.protocol_errors += 1;
            self.last_error = Some(format!(
                "I-block N(S)={ns} while the chip waits for S(ABORT response)"
            ));
            self.retransmit();
            return;
        }
        if ns != self.host_seq {
            // The host repeats a block we already took: it lost our answer to it.
            self.stats.retransmissions += 1;
            match (&self.state, &self.last_block) {
                (State::ReceivingChain { .. }, _) => self.emit_r(self.host_seq, RError::None),
                (
                    State::Idle,
                    Some(Frame {
                        pcb: Pcb::I { .. }, ..
                    }),
                ) => self.retransmit(),
                // Our response part or WTX request is what it is missing.
                (State::SendingChain { .. } | State::Processing { .. }, Some(_)) => {
                    self.retransmit()
                }
                _ => self.emit_r(self.host_seq, RError::Other),
            }
            return;
        }
        if !matches!(self.state, State::Idle | State::ReceivingChain { .. }) {
            self.protocol_error(format!(
                "new I-block N(S)={ns} while the chip is still answering the last command"
            ));
            return;
        }
        // The host's next command acknowledges our last answer: it will never be asked for
        // again, and may have been a shared secret.
        self.last_block = None;
        let mut apdu = match std::mem::replace(&mut self.state, State::Idle) {
            State::ReceivingChain { apdu } => apdu,
            _ => wipe::with_capacity(inf.len()),
        };
        if apdu.len() + inf.len() > MAX_COMMAND_APDU {
            // Dropping `apdu` wipes what was buffered.
            self.stats.chains_aborted += 1;
            self.last_error = Some(format!(
                "chained command longer than {MAX_COMMAND_APDU} bytes: aborted after {}",
                apdu.len()
            ));
            self.state = State::Aborting;
            self.emit(Frame::to_host(
                Pcb::S {
                    kind: SKind::Abort,
                    response: false,
                },
                &[],
            ));
            return;
        }
        self.host_seq ^= 1;
        wipe::extend(&mut apdu, &inf);
        if more {
            self.state = State::ReceivingChain { apdu };
            self.emit_r(self.host_seq, RError::None);
            return;
        }
        self.stats.apdus += 1;
        let processed = self.handler.process(&apdu);
        let now = Instant::now();
        let done_at = now + processed.busy;
        self.state = State::Processing {
            response: processed.response,
            done_at,
            next_event: done_at.min(now + self.bwt),
            wtx_outstanding: false,
        };
        self.advance(now);
    }

    fn handle_r(&mut self, nr: u8, _error: RError) {
        match &mut self.state {
            State::SendingChain { rest } => {
                let last_ns = match &self.last_block {
                    Some(Frame {
                        pcb: Pcb::I { ns, .. },
                        ..
                    }) => *ns,
                    _ => self.dev_seq ^ 1,
                };
                if nr != last_ns {
                    // Acknowledged (an error-flagged R-block naming the next block
                    // means our acknowledgement request was what got lost).
                    let rest = std::mem::take(rest);
                    self.send_response(rest);
                } else {
                    self.stats.retransmissions += 1;
                    self.retransmit();
                }
            }
            // Our acknowledgement was lost or damaged: acknowledge again.
            State::ReceivingChain { .. } => {
                self.stats.retransmissions += 1;
                self.emit_r(self.host_seq, RError::None)
            }
            // Only a WTX request can be out while working; only an ABORT while aborting.
            State::Processing { .. } | State::Aborting => {
                self.stats.retransmissions += 1;
                self.retransmit()
            }
            State::Idle => match &self.last_block {
                // The host lost our last answer: repeat it.
                Some(Frame {
                    pcb: Pcb::I { ns, .. },
                    ..
                }) if *ns == nr => {
                    self.stats.retransmissions += 1;
                    self.retransmit()
                }
                // The host has our last answer and waits for one to a command we
                // never received (or received damaged): ask for that command.
                _ => self.emit_r(self.host_seq, RError::Other),
            },
        }
    }

    fn retransmit(&mut self) {
        match self.last_block.clone() {
            Some(frame) => self.emit(frame),
            None => self.emit_r(self.host_seq, RError::Other),
        }
    }

    /// Let time pass: a finished command's response, or a WTX request at BWT.
    fn advance(&mut self, now: Instant) {
        let State::Processing {
            response,
            done_at,
            next_event,
            wtx_outstanding,
        } = &mut self.state
        else {
            return;
        };
        if *wtx_outstanding || now < *next_event {
            return;
        }
        if now >= *done_at {
            let response = std::mem::take(response);
            self.send_response(response);
        } else {
            *wtx_outstanding = true;
            self.stats.wtx_requests += 1;
            self.emit(Frame::to_host(
                Pcb::S {
                    kind: SKind::Wtx,
                    response: false,
                },
                &[1],
            ));
        }
    }

    /// Send the next part of a response (chained when longer than IFSD).
    fn send_response(&mut self, mut data: SecretBytes) {
        let part = data.len().min(self.ifsd);
        let rest = SecretBytes::new(data.split_off(part));
        let more = !rest.is_empty();
        let ns = self.dev_seq;
        self.dev_seq ^= 1;
        self.state = if more {
            State::SendingChain { rest }
        } else {
            State::Idle
        };
        self.emit(Frame::to_host(Pcb::I { ns, more }, &data));
    }

    fn emit_r(&mut self, nr: u8, error: RError) {
        self.emit(Frame::to_host(Pcb::R { nr, error }, &[]));
    }

    /// Make `frame` the one the host reads next (and, unless an R-block, the one
    /// to repeat).
    fn emit(&mut self, frame: Frame) {
        let mut bytes = frame.encode();
        if !matches!(frame.pcb, Pcb::R { .. }) {
            self.last_block = Some(frame);
        }
        wipe::clear(&mut self.outgoing);
        self.read_pos = 0;
        if self.faults.take_drop(Direction::SeToHost) {
            self.stats.frames_lost += 1;
            return;
        }
        self.faults.maybe_corrupt(Direction::SeToHost, &mut bytes);
        self.stats.frames_sent += 1;
        self.outgoing = bytes;
    }

    /// RESYNCH: both sequence numbers back to 0, any chain abandoned.
    fn restart_link(&mut self) {
        self.host_seq = 0;
        self.dev_seq = 0;
        self.state = State::Idle;
        self.last_block = None;
        self.needs_resync = false;
    }

    fn reset_chip(&mut self) {
        self.restart_link();
        self.ifsd = MAX_INF;
        self.stats.resets += 1;
        self.handler.reset();
    }

    fn maybe_reset_mid_apdu(&mut self) {
        if matches!(self.state, State::Idle) || !self.faults.take_reset() {
            return;
        }
        self.reset_chip();
        wipe::clear(&mut self.outgoing);
        self.read_pos = 0;
        self.needs_resync = true;
        self.last_error = Some("chip reset in the middle of an APDU (injected)".into());
    }
}
