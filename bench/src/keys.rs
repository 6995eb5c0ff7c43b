//! Many X25519 key pairs at once, for generated configurations (1,000 peers); `wg genkey` would
//! take one process per key.

use crate::args::Options;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::io::Write;
use x25519_dalek::{PublicKey, StaticSecret};

pub fn run(options: &Options) -> Result<(), String> {
    let count: usize = options.required("count")?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for _ in 0..count {
        let secret = StaticSecret::random_from_rng(rand_core::OsRng);
        let public = PublicKey::from(&secret);
        writeln!(
            out,
            "{} {}",
            STANDARD.encode(secret.to_bytes()),
            STANDARD.encode(public.as_bytes())
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
