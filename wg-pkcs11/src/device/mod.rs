//! device (I/O layer only until the core lands)
pub mod counters;
pub mod offload;
pub mod tun;
pub mod udp;
#[allow(dead_code)] // used by the packet loops, which wait for the protocol core
mod waker;
