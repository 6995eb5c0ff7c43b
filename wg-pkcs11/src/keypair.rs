//! keypair
