//! The supervisory side of [`T1Link`]: S-block exchanges (RESYNCH, GET ATR, soft and chip
//! reset, END OF APDU SESSION, IFS) and the ATR's timing applied to the link. The I-block
//! exchange they ride on, with its recovery, is link.rs's.

use std::time::Duration;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

use super::super::atr::Atr;
use super::super::frame::{Frame, Pcb, SKind, MAX_INF};
use super::super::LinkError;
use super::{Deadline, T1Link};
use crate::wipe::SecretBytes;

impl<I2C: I2c, D: DelayNs> T1Link<I2C, D> {
    /// T=1 RESYNCH: both sides restart at N(S) = 0 (the applet stays selected).
    pub fn resync(&mut self) -> Result<(), LinkError> {
        self.resync_within(self.deadline())
    }

    pub(super) fn resync_within(&mut self, deadline: Deadline) -> Result<(), LinkError> {
        self.needs_resync = true;
        self.s_exchange_within(SKind::Resynch, &[], deadline)?;
        self.send_seq = 0;
        self.recv_seq = 0;
        self.needs_resync = false;
        Ok(())
    }

    /// GET ATR (S-block 0x07); applies the timing it announces.
    pub fn get_atr(&mut self) -> Result<Atr, LinkError> {
        let inf = self.s_exchange(SKind::GetAtr, &[])?;
        self.apply_atr(&inf)
    }

    /// Interface soft reset (S-block 0x0F): resets the chip's interface and deselects
    /// the applet; the reply carries the ATR.
    pub fn soft_reset(&mut self) -> Result<Atr, LinkError> {
        let inf = self.s_exchange(SKind::SoftReset, &[])?;
        self.send_seq = 0;
        self.recv_seq = 0;
        self.apply_atr(&inf)
    }

    /// SE chip reset (S-block 0x06).
    pub fn chip_reset(&mut self) -> Result<(), LinkError> {
        self.s_exchange(SKind::ChipReset, &[])?;
        self.send_seq = 0;
        self.recv_seq = 0;
        Ok(())
    }

    /// END OF APDU SESSION (S-block 0x05): the chip may go to sleep.
    pub fn end_apdu_session(&mut self) -> Result<(), LinkError> {
        self.s_exchange(SKind::EndOfApduSession, &[]).map(drop)
    }

    /// S(IFS request): tell the chip the largest INF the host takes (1..=254).
    pub fn announce_ifsd(&mut self, size: u8) -> Result<(), LinkError> {
        if size == 0 || usize::from(size) > MAX_INF {
            return Err(LinkError::InvalidCommand(format!(
                "IFSD {size} is outside 1..=254"
            )));
        }
        let echoed = self.s_exchange(SKind::Ifs, &[size])?;
        if *echoed != [size] {
            return Err(LinkError::Protocol {
                pcb: Pcb::S {
                    kind: SKind::Ifs,
                    response: true,
                }
                .to_byte(),
                expected: "an IFS response echoing the announced size",
            });
        }
        Ok(())
    }

    fn apply_atr(&mut self, inf: &[u8]) -> Result<Atr, LinkError> {
        let atr = Atr::parse(inf).map_err(LinkError::InvalidAtr)?;
        if !atr.bwt.is_zero() {
            self.bwt = atr.bwt;
        }
        self.ifsc = usize::from(atr.ifsc).min(MAX_INF);
        if self.options.poll_interval.is_none() {
            self.poll_interval = atr
                .mpot
                .clamp(Duration::from_micros(200), Duration::from_millis(1));
        }
        self.atr = Some(atr.clone());
        Ok(atr)
    }

    /// Send an S-request and return the INF of its response.
    fn s_exchange(&mut self, kind: SKind, inf: &[u8]) -> Result<SecretBytes, LinkError> {
        self.s_exchange_within(kind, inf, self.deadline())
    }

    fn s_exchange_within(
        &mut self,
        kind: SKind,
        inf: &[u8],
        deadline: Deadline,
    ) -> Result<SecretBytes, LinkError> {
        let request = Frame::to_se(
            Pcb::S {
                kind,
                response: false,
            },
            inf,
        );
        let reply = self.exchange(&request, deadline)?;
        match reply.pcb {
            Pcb::S {
                kind: got,
                response: true,
            } if got == kind => Ok(reply.inf),
            _ => Err(LinkError::Protocol {
                pcb: reply.pcb.to_byte(),
                expected: s_response_name(kind),
            }),
        }
    }
}

fn s_response_name(kind: SKind) -> &'static str {
    match kind {
        SKind::Resynch => "a RESYNCH response (0xE0)",
        SKind::Ifs => "an IFS response (0xE1)",
        SKind::Abort => "an ABORT response (0xE2)",
        SKind::Wtx => "a WTX response (0xE3)",
        SKind::EndOfApduSession => "an END OF APDU SESSION response (0xE5)",
        SKind::ChipReset => "a chip reset response (0xE6)",
        SKind::GetAtr => "a GET ATR response (0xE7)",
        SKind::SoftReset => "a soft reset response (0xEF)",
    }
}
