//! The commands of the `wg-pkcs11` binary, one file each, and what they share.

pub mod admit;
pub mod args;
pub mod attest;
mod completions;
pub mod detach;
pub mod device;
pub mod keyfile;
pub mod keys;
pub mod list;
pub mod logging;
mod man_page;
pub mod nonce;
pub mod notify;
pub mod quick;
pub mod rotate;
pub mod show;
pub mod show_health;
pub mod signals;
pub mod up;
pub mod userspace;
pub mod verify_attestation;
pub mod watch;
