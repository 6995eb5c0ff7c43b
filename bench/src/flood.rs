//! A flood of handshake initiations that pass the responder's first check: each carries a valid
//! mac1 (computed from the responder's public key only, as anyone can) but a random ephemeral key
//! and random ciphertext. A responder must do its static-key Diffie-Hellman (`es`, a token
//! operation for wg-pkcs11) before it can tell the initiation is garbage, unless it answers with a
//! cookie reply first. The flood never answers cookie replies (no mac2): it counts them.

use crate::args::Options;
use blake2::digest::consts::U16;
use blake2::digest::{Digest, KeyInit, Mac};
use blake2::{Blake2s256, Blake2sMac};
use rand_core::RngCore;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const INITIATION_LEN: usize = 148;
const MAC1_OFFSET: usize = 116;
const LABEL_MAC1: &[u8] = b"mac1----";
/// Distinct initiations prepared up front, sent round-robin.
const PREPARED: usize = 4096;

/// One initiation with random contents and a valid mac1 for `responder_public`.
pub fn forged_initiation(responder_public: &[u8; 32], rng: &mut impl RngCore) -> [u8; 148] {
    let mut message = [0u8; INITIATION_LEN];
    message[0] = 1;
    rng.fill_bytes(&mut message[4..MAC1_OFFSET]);
    let mac1_key = Blake2s256::new()
        .chain_update(LABEL_MAC1)
        .chain_update(responder_public)
        .finalize();
    let mut mac = <Blake2sMac<U16> as KeyInit>::new_from_slice(&mac1_key)
        .expect("a 32-byte BLAKE2s key is valid");
    mac.update(&message[..MAC1_OFFSET]);
    message[MAC1_OFFSET..MAC1_OFFSET + 16].copy_from_slice(&mac.finalize().into_bytes());
    message
}

pub fn run(options: &Options) -> Result<(), String> {
    let to: SocketAddr = options.required("to")?;
    let responder_public = options.key("responder-public")?;
    let rate: u64 = options.required("rate")?;
    let seconds: f64 = options.required("seconds")?;

    let mut rng = rand_core::OsRng;
    let prepared: Vec<[u8; 148]> = (0..PREPARED)
        .map(|_| forged_initiation(&responder_public, &mut rng))
        .collect();
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    socket
        .connect(to)
        .map_err(|e| format!("connect {to}: {e}"))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let tick = Duration::from_millis(1);
    let mut sent = 0u64;
    let mut send_failures = 0u64;
    let mut cookie_replies = 0u64;
    let mut responses = 0u64;
    let mut reply = [0u8; 256];
    let mut next_tick = start;
    while Instant::now() < end {
        // Send what the schedule owes up to now, in one burst per tick.
        let owed = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent + send_failures < owed {
            let message = &prepared[((sent + send_failures) as usize) % PREPARED];
            match socket.send(message) {
                Ok(_) => sent += 1,
                Err(_) => send_failures += 1,
            }
        }
        while let Ok(n) = socket.recv(&mut reply) {
            match reply.first().copied() {
                Some(3) if n == 64 => cookie_replies += 1,
                Some(2) => responses += 1,
                _ => {}
            }
        }
        next_tick += tick;
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!("sent={sent}");
    println!("send_failures={send_failures}");
    println!("rate_achieved={:.0}", sent as f64 / elapsed);
    println!("cookie_replies={cookie_replies}");
    println!("responses={responses}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use boringtun::noise::{Tunn, TunnResult};
    use x25519_dalek::{PublicKey, StaticSecret};

    /// boringtun's responder checks mac1 before anything else: a forged initiation must get past
    /// that check and fail only later (at the decryption of the initiator's static key).
    #[test]
    fn forged_initiation_passes_boringtuns_mac1_check() {
        let responder = StaticSecret::random_from_rng(rand_core::OsRng);
        let responder_public = PublicKey::from(&responder);
        let someone = PublicKey::from(&StaticSecret::random_from_rng(rand_core::OsRng));
        let mut tunn = Tunn::new(responder, someone, None, None, 1, None);
        let mut out = vec![0u8; 2048];

        let forged = forged_initiation(responder_public.as_bytes(), &mut rand_core::OsRng);
        let result = tunn.decapsulate(None, &forged, &mut out);
        let error = match result {
            TunnResult::Err(e) => format!("{e:?}"),
            _ => panic!("a forged initiation must be refused"),
        };
        assert!(!error.contains("InvalidMac"), "mac1 refused: {error}");

        let mut bad = forged;
        bad[MAC1_OFFSET] ^= 1;
        match tunn.decapsulate(None, &bad, &mut out) {
            TunnResult::Err(e) => assert!(format!("{e:?}").contains("InvalidMac"), "{e:?}"),
            _ => panic!("a wrong mac1 must be refused"),
        }
    }
}
