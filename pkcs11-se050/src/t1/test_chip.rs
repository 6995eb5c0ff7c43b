//! A scripted fake chip and a counting delay for the link's unit tests: after the opening
//! (RESYNCH, then an ATR announcing a chosen BWT) the chip answers each write with the next
//! of its replies. Shared by `link_bound_tests` and `link_mutant_tests` (the delay by
//! `link_tests` too).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{ErrorType, I2c, Operation};

use super::atr::REAL_SE050_ATR;
use super::frame::{Frame, Pcb, SKind};
use crate::virtual_se050::VirtualI2cError;

/// After the opening (RESYNCH, then an ATR announcing `bwt_ms`), answers each write with
/// the next of `replies` (raw bytes; an empty one: the write is taken, reads are NACKed).
/// With `cycle` it goes round them for ever; without, once they are used up it NACKs
/// everything, writes included. An empty list of replies NACKs everything after the
/// opening, with or without `cycle`.
pub(super) struct TestChip {
    opening: VecDeque<Vec<u8>>,
    replies: Vec<Vec<u8>>,
    cycle: bool,
    next: usize,
    current: Vec<u8>,
    /// Writes the chip took (the opening's included; NACKed ones not).
    pub(super) writes: Arc<AtomicUsize>,
}

impl TestChip {
    pub(super) fn new(bwt_ms: u16, replies: Vec<Vec<u8>>, cycle: bool) -> TestChip {
        let mut atr = REAL_SE050_ATR;
        atr[7..9].copy_from_slice(&bwt_ms.to_be_bytes());
        TestChip {
            opening: VecDeque::from([
                s_response(SKind::Resynch, &[]),
                s_response(SKind::GetAtr, &atr),
            ]),
            replies,
            cycle,
            next: 0,
            current: vec![],
            writes: Arc::default(),
        }
    }
}

/// An S-block response from the chip, encoded.
pub(super) fn s_response(kind: SKind, inf: &[u8]) -> Vec<u8> {
    Frame::to_host(
        Pcb::S {
            kind,
            response: true,
        },
        inf,
    )
    .encode()
    .to_vec()
}

/// The chip's request for `multiplier` x BWT more time, encoded.
pub(super) fn wtx_request(multiplier: u8) -> Vec<u8> {
    Frame::to_host(
        Pcb::S {
            kind: SKind::Wtx,
            response: false,
        },
        &[multiplier],
    )
    .encode()
    .to_vec()
}

impl ErrorType for TestChip {
    type Error = VirtualI2cError;
}

impl I2c for TestChip {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let nack = VirtualI2cError {
            address,
            reason: "test chip: silent",
        };
        for op in operations {
            match op {
                Operation::Write(_) => {
                    if let Some(reply) = self.opening.pop_front() {
                        self.current = reply;
                    } else if !self.replies.is_empty()
                        && (self.next < self.replies.len() || self.cycle)
                    {
                        self.current = self.replies[self.next % self.replies.len()].clone();
                        self.next += 1;
                    } else {
                        return Err(nack);
                    }
                    self.writes.fetch_add(1, Ordering::SeqCst);
                }
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

/// std sleep that counts its calls: with a 1 ms poll interval, the number of polls in a
/// wait of W ms is W (the poll also counts polls, and a sleep never ends early), however
/// slow the machine.
#[derive(Clone, Default)]
pub(super) struct CountingDelay(pub(super) Arc<AtomicU32>);

impl DelayNs for CountingDelay {
    fn delay_ns(&mut self, ns: u32) {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_nanos(ns.into()));
    }
}
