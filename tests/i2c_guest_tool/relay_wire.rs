//! The relay's wire format between the guest's USB I2C adapter and the host's virtual SE050
//! (tests/support/i2c_guest/relay.rs speaks the other end). One I2C message per request:
//!
//! ```text
//!   request   'W' addr len_lo len_hi data[len]      a write message to addr
//!             'R' addr len_lo len_hi                a read message of len bytes
//!   answer    ACK | NAK, then for 'R' len bytes (0xFF after a NAK, as an idle bus reads)
//! ```
#![allow(dead_code)] // the host side uses the constants, the guest side the functions too

pub const WRITE: u8 = b'W';
pub const READ: u8 = b'R';
pub const ACK: u8 = 1;
pub const NAK: u8 = 2;
