//! Keeps the IoT applet selected across chip resets.
//!
//! A reset of the SE050 (power glitch, interface soft reset, a failed exchange
//! that ended in one) deselects the applet: every later applet command would be
//! refused with 6D00 and a long-running daemon would never recover. This wrapper
//! selects the applet again after a failed exchange, and when an applet command
//! (CLA with bit 8 set) comes back 6D00 it selects again.
//!
//! It sends the command once more only when the command changes nothing on the chip
//! (applet/resend.rs, the module's retry rule): a 6D00 is no proof that the chip did not
//! run the command, since nothing authenticates it on the bus. Any other command's 6D00
//! is its answer, reported as failed.

use crate::applet::protocol::select_command;
use crate::applet::resend::may_resend;
use crate::t1::{ApduTransport, LinkError};
use crate::wipe::SecretBytes;

/// SW 6D00: instruction not supported (what an unselected chip says).
const SW_INS_NOT_SUPPORTED: [u8; 2] = [0x6D, 0x00];

/// An [`ApduTransport`] that re-selects the IoT applet when the chip lost it.
pub struct Reselecting<T> {
    inner: T,
    /// The last exchange failed: the chip may have been reset.
    suspect_reset: bool,
}

impl<T: ApduTransport> Reselecting<T> {
    pub fn new(inner: T) -> Self {
        Reselecting {
            inner,
            suspect_reset: false,
        }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    fn reselect(&mut self) -> Result<(), LinkError> {
        let response = self.inner.transceive(&select_command().encode())?;
        if response.ends_with(&[0x90, 0x00]) {
            self.suspect_reset = false;
        } else {
            let sw = &response[response.len().saturating_sub(2)..];
            log::warn!("re-selecting the IoT applet failed: status {sw:02x?}");
        }
        Ok(())
    }

    fn exchange(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        let result = self.inner.transceive(command);
        if result.is_err() {
            self.suspect_reset = true;
        }
        result
    }
}

impl<T: ApduTransport> ApduTransport for Reselecting<T> {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        let is_select = command.get(1) == Some(&0xA4);
        if self.suspect_reset && !is_select {
            self.reselect().inspect_err(|_| self.suspect_reset = true)?;
        }
        let response = self.exchange(command)?;
        let applet_command = command.first().is_some_and(|cla| cla & 0x80 != 0);
        if applet_command && response.ends_with(&SW_INS_NOT_SUPPORTED) {
            if !may_resend(command) {
                log::warn!(
                    "the SE050 answered 6D00 (applet selection lost?) to a command that changes \
                     the chip's state: not sent again, reported as failed; the applet is \
                     selected again before the next command"
                );
                self.suspect_reset = true;
                return Ok(response);
            }
            log::info!("the SE050 lost the applet selection (reset?): selecting it again");
            self.reselect()?;
            return self.exchange(command);
        }
        Ok(response)
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        self.inner.resync()
    }
}
