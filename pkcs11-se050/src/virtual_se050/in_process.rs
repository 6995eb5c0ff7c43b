//! An [`ApduTransport`] straight into an [`ApduHandler`] in this process: no T=1, no I2C. For
//! tests of the applet layer and tools; it sleeps for the handler's `busy` time, as a caller of
//! the real link would wait.

use super::ApduHandler;
use crate::t1::{ApduTransport, LinkError};
use crate::wipe::SecretBytes;

pub struct InProcessTransport<H: ApduHandler> {
    pub handler: H,
}

impl<H: ApduHandler> InProcessTransport<H> {
    pub fn new(handler: H) -> Self {
        InProcessTransport { handler }
    }
}

impl<H: ApduHandler> ApduTransport for InProcessTransport<H> {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        let processed = self.handler.process(command);
        if !processed.busy.is_zero() {
            std::thread::sleep(processed.busy);
        }
        Ok(processed.response)
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}
