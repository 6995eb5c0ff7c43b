//! The commands of the `wg-pkcs11` binary, one file each.

pub mod device;
pub mod keys;
pub mod list;
pub mod rotate;
pub mod show;
pub mod show_health;
pub mod up;
