//! The virtual SE050 this module's tests and `transport = "virtual"` run against.
//!
//! The chip lives in its own crate, `se050_sim` (se050-sim/), written from the specifications
//! and depending on nothing of this driver: the compiler keeps it from borrowing the driver's
//! T=1, APDU, TLV, applet or SCP03 code, so a mistake in one of those makes the driver and the
//! chip disagree, and a test fail. It is re-exported here under its old paths. What is here
//! besides needs the driver's types: [`applet::InProcessTransport`] (an `ApduTransport` straight
//! into a handler), the conversion of the driver's SCP03 keys into the chip's, and the tests of
//! the pair (driver against chip).

pub use se050_sim::*;

mod in_process;
#[cfg(test)]
mod scp03_pair_tests;
#[cfg(test)]
mod transient_tests;

/// The chip's IoT applet, and an in-process transport to it.
pub mod applet {
    pub use super::in_process::InProcessTransport;
    pub use se050_sim::applet::*;
}

/// The chip's PlatformSCP03 side.
pub mod scp03 {
    pub use se050_sim::scp03::*;

    impl From<crate::scp03::keys::StaticKeys> for CardKeys {
        fn from(keys: crate::scp03::keys::StaticKeys) -> CardKeys {
            CardKeys::new(*keys.enc, *keys.mac, *keys.dek)
        }
    }

    impl From<&crate::scp03::keys::StaticKeys> for CardKeys {
        fn from(keys: &crate::scp03::keys::StaticKeys) -> CardKeys {
            CardKeys::new(*keys.enc, *keys.mac, *keys.dek)
        }
    }
}
