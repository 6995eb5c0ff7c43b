//! wg-pkcs11: a WireGuard daemon whose static key may live in a PKCS#11 token.
//!
//! One concept per file, as in the kernel's drivers/net/wireguard:
//!
//! ```text
//! config      wg-quick style configuration files
//! uri         RFC 7512 pkcs11: URIs
//! multiarch   Debian's PKCS#11 module directory and p11-kit proxy for the build target
//! key         StaticKey: a software key or a token key (C_DeriveKey)
//! noise       the Noise_IKpsk2 handshake
//! cookie      mac1/mac2 and cookie replies
//! keypair     transport keys, counters, AEAD
//! replay      the replay window
//! allowedips  longest-prefix routing table
//! timers      WireGuard's timer state machine
//! peer        per-peer state
//! sticky      the local address a peer's endpoint reaches us on (reply from it)
//! device      the data path: TUN, UDP, workers
//! uapi        the cross-platform userspace API (wg show / wg set)
//! netconfig   addresses, routes, MTU and hooks on the interface
//! ```

pub mod allowedips;
pub mod attestation;
pub mod config;
pub mod cookie;
pub mod device;
#[cfg(test)]
mod emulation;
pub mod endpoint;
pub mod key;
pub mod keypair;
pub mod multiarch;
pub mod netconfig;
pub mod noise;
pub mod peer;
pub mod replay;
pub mod secret_mem;
pub mod sticky;
pub mod timers;
pub mod uapi;
pub mod uri;
