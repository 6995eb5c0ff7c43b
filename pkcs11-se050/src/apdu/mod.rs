//! Command and response APDUs, BER-TLV, and status words turned into typed errors.

pub mod command;
pub mod response;
pub mod status;
pub mod tlv;

pub use command::{CommandApdu, CommandParseError};
pub use response::{ResponseApdu, StatusWord};
pub use status::{ChipRefused, Refusal};
pub use tlv::{TlvError, Tlvs};
