//! virtual_se050

pub mod applet;
pub mod counters;
pub mod store;

// virtual_se050/mod.rs: what the virtual link asks of the virtual applet.
pub trait ApduHandler: Send {
    /// Interpret one command APDU. `busy` is how long the simulated chip works on it:
    /// the link NACKs its address (and sends WTX past BWT) for that long.
    fn process(&mut self, command: &[u8]) -> Processed;
    /// The chip was reset (soft reset / chip reset): drop transient state, deselect.
    fn reset(&mut self) {}
}
pub struct Processed {
    pub response: Vec<u8>,
    pub busy: std::time::Duration,
}
