//! pkcs11-se050: NXP SE050 X25519 keys behind the standard PKCS#11 interface.
//!
//! Layers, each calling only the one below it:
//!
//! ```text
//! abi            the C ABI (C_GetFunctionList, C_GetInterface*): argument checks, panic catching
//! token          slot, token, sessions, objects and attributes; labels kept on the chip
//! config         the module's TOML configuration
//! device         opening a chip (real I2C or virtual), inter-process lock, resync on lock
//! applet         typed IoT applet commands, RFC 7748 byte order at this API
//! scp03          PlatformSCP03: the encrypted, authenticated channel to the chip (optional)
//! apdu           command/response APDUs, BER-TLV, status words -> typed errors
//! t1             T=1 over I2C (UM11225): frames, CRC, chaining, R/S-blocks, WTX, ATR
//! I2C bytes      embedded-hal `I2c`: linux-embedded-hal's I2cdev, or the virtual SE050
//! ```
//!
//! `virtual_se050` is the chip's device side: it implements embedded-hal's `I2c`
//! at the byte level, so the same driver code runs against it. `wipe` holds the buffers that
//! carry a secret up from the chip (wiped when dropped or reused).

pub mod abi;
pub mod apdu;
pub mod applet;
pub mod config;
pub mod device;
#[cfg(test)]
mod nxp_vectors;
pub mod private_file;
pub mod scp03;
pub mod t1;
pub mod token;
pub mod virtual_se050;
pub mod wipe;
