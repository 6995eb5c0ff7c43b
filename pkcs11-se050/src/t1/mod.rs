//! t1
//!
//! Placeholder seam (helper "applet"): the exact `ApduTransport` definition from
//! ARCHITECTURE.md, so the APDU layer compiles before the T=1 link lands. On merge,
//! take helper t1's version of this file.

/// A failure of the link below the APDU layer.
#[derive(Debug)]
pub struct LinkError(pub String);

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "link error: {}", self.0)
    }
}

impl std::error::Error for LinkError {}

// t1/mod.rs: what the APDU layer needs from the link below it.
pub trait ApduTransport: Send {
    /// Exchange one command APDU for its response APDU (data followed by SW1 SW2).
    fn transceive(&mut self, command: &[u8]) -> Result<Vec<u8>, LinkError>;
    /// Bring the link to a known state (T=1 RESYNCH); called after taking the inter-process lock.
    fn resync(&mut self) -> Result<(), LinkError>;
}
