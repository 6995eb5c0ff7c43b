//! PlatformSCP03 end to end on the virtual bus: the host stack (Se050 over Scp03Transport over
//! T=1) against the virtual SE050's SCP03 side, with the bus bytes recorded, faults injected and
//! keys rotated.

use embedded_hal::i2c::{ErrorType, I2c, Operation, SevenBitAddress};
use linux_embedded_hal::Delay;
use parking_lot::Mutex;
use pkcs11_se050::applet::{ObjectId, Se050};
use pkcs11_se050::scp03::keys::DEFAULT_KVN;
use pkcs11_se050::scp03::{rotate, Scp03Transport, StaticKeys};
use pkcs11_se050::t1::{ApduTransport, LinkError, T1Link, T1Options};
use pkcs11_se050::virtual_se050::applet::VirtualApplet;
use pkcs11_se050::virtual_se050::scp03::PlatformScp03;
use pkcs11_se050::virtual_se050::{
    ApduHandler, Direction, FaultHandle, Processed, VirtualOptions, VirtualSe050,
};
use pkcs11_se050::wipe::SecretBytes;
use std::sync::Arc;
use std::time::Duration;
use x25519_dalek::{PublicKey, StaticSecret};

/// Every byte written to and read from the chip.
#[derive(Clone, Default)]
struct BusLog(Arc<Mutex<Vec<u8>>>);

struct Recorder {
    chip: VirtualSe050,
    log: BusLog,
}

impl ErrorType for Recorder {
    type Error = <VirtualSe050 as ErrorType>::Error;
}

impl I2c<SevenBitAddress> for Recorder {
    fn transaction(&mut self, address: u8, ops: &mut [Operation<'_>]) -> Result<(), Self::Error> {
        let result = self.chip.transaction(address, ops);
        let mut log = self.log.0.lock();
        for op in ops.iter() {
            match op {
                Operation::Write(bytes) => log.extend_from_slice(bytes),
                Operation::Read(bytes) if result.is_ok() => log.extend_from_slice(bytes),
                Operation::Read(_) => {}
            }
        }
        result
    }
}

/// The commands that reach a handler, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Vec<u8>>>>);

struct Spy {
    inner: Box<dyn ApduHandler>,
    seen: Seen,
}

impl ApduHandler for Spy {
    fn process(&mut self, command: &[u8]) -> Processed {
        self.seen.0.lock().push(command.to_vec());
        self.inner.process(command)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
}

struct Bench {
    log: BusLog,
    /// What arrived at the chip (above T=1, below SCP03).
    at_chip: Seen,
    /// What arrived at the applet (below the chip's SCP03).
    at_applet: Seen,
    faults: FaultHandle,
}

/// A virtual chip with PlatformSCP03 keys `chip_keys` ("Platform SCP required" if `required`),
/// key state in `key_file`, on a recorded bus; and the T=1 link to it.
fn chip(
    chip_keys: StaticKeys,
    required: bool,
    key_file: Option<std::path::PathBuf>,
) -> (T1Link<Recorder, Delay>, Bench) {
    chip_with_latency(chip_keys, required, key_file, Duration::ZERO)
}

fn chip_with_latency(
    chip_keys: StaticKeys,
    required: bool,
    key_file: Option<std::path::PathBuf>,
    latency: Duration,
) -> (T1Link<Recorder, Delay>, Bench) {
    let at_applet = Seen::default();
    let at_chip = Seen::default();
    let mut virtual_applet = VirtualApplet::in_memory();
    virtual_applet.set_latency(latency);
    let applet = Spy {
        inner: Box::new(virtual_applet),
        seen: at_applet.clone(),
    };
    let scp = PlatformScp03::new(Box::new(applet), chip_keys, DEFAULT_KVN, key_file, required);
    let handler = Spy {
        inner: Box::new(scp),
        seen: at_chip.clone(),
    };
    let faults = FaultHandle::new(7);
    let options = VirtualOptions {
        bwt: Duration::from_millis(50),
        faults: faults.clone(),
        ..VirtualOptions::default()
    };
    let log = BusLog::default();
    let recorder = Recorder {
        chip: VirtualSe050::new(Box::new(handler), options),
        log: log.clone(),
    };
    let link = T1Link::open(recorder, Delay, T1Options::default()).expect("T=1 link");
    (
        link,
        Bench {
            log,
            at_chip,
            at_applet,
            faults,
        },
    )
}

fn dev_keys() -> StaticKeys {
    StaticKeys::published("SE050C2").unwrap()
}

fn id() -> ObjectId {
    ObjectId::new(0x5000_0001).unwrap()
}

fn peer() -> (StaticSecret, [u8; 32]) {
    let secret = StaticSecret::from([0x42; 32]);
    let public = PublicKey::from(&secret).to_bytes();
    (secret, public)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn reversed(bytes: &[u8; 32]) -> [u8; 32] {
    let mut r = *bytes;
    r.reverse();
    r
}

/// Generates a key and runs one ECDH; returns the shared secret, checked against x25519-dalek.
fn key_and_ecdh<T: ApduTransport>(se: &mut Se050<T>) -> [u8; 32] {
    se.generate_x25519(id()).unwrap();
    ecdh_checked(se)
}

fn ecdh_checked<T: ApduTransport>(se: &mut Se050<T>) -> [u8; 32] {
    let (peer_secret, peer_public) = peer();
    let chip_public = se.read_x25519_public(id()).unwrap();
    let secret = se.ecdh_x25519(id(), &peer_public).unwrap();
    let expected = peer_secret
        .diffie_hellman(&PublicKey::from(chip_public))
        .to_bytes();
    assert_eq!(
        *secret, expected,
        "the chip's ECDH disagrees with x25519-dalek"
    );
    *secret
}

#[test]
fn scp03_bus_never_shows_the_ecdh_result_or_the_peer_key() {
    let (link, bench) = chip(dev_keys(), true, None);
    let mut se = Se050::select(Scp03Transport::new(link, dev_keys(), DEFAULT_KVN)).unwrap();
    let secret = key_and_ecdh(&mut se);
    let (_, peer_public) = peer();
    let bus = bench.log.0.lock().clone();
    assert!(bus.len() > 200, "nothing recorded");
    for (what, value) in [("ECDH result", secret), ("peer public key", peer_public)] {
        assert!(
            !contains(&bus, &value),
            "{what} in clear on the bus (RFC 7748 order)"
        );
        assert!(
            !contains(&bus, &reversed(&value)),
            "{what} in clear on the bus (chip order)"
        );
    }
    // Every applet command crossed the bus wrapped: only SELECT, INITIALIZE UPDATE and
    // EXTERNAL AUTHENTICATE are not CLA 84 with a MAC.
    for command in bench.at_chip.0.lock().iter() {
        let plain_ok = command[..2] == [0x00, 0xA4] || command[..2] == [0x80, 0x50];
        assert!(
            command[0] == 0x84 || plain_ok,
            "plain command {command:02x?}"
        );
    }

    // The same on the plain link shows the secret: the check above can see it.
    let (link, bench) = chip(dev_keys(), false, None);
    let mut se = Se050::select(link).unwrap();
    let secret = key_and_ecdh(&mut se);
    let bus = bench.log.0.lock().clone();
    assert!(
        contains(&bus, &reversed(&secret)),
        "the plain control did not show the secret"
    );
}

#[test]
fn scp03_required_chip_refuses_plain_commands() {
    let (link, bench) = chip(dev_keys(), true, None);
    // SELECT is allowed in plain (NXP's middleware selects before opening the channel) ...
    let mut se = Se050::select(link).unwrap();
    // ... every applet command is not.
    let e = se.get_version().unwrap_err().to_string();
    assert!(
        e.contains("6982") && e.contains("Platform SCP required"),
        "{e}"
    );
    assert_eq!(
        bench.at_applet.0.lock().len(),
        1,
        "only SELECT may reach the applet"
    );
}

#[test]
fn scp03_wrong_keys_fail_with_a_clear_error_and_never_in_plain() {
    let (link, bench) = chip(dev_keys(), true, None);
    let wrong = StaticKeys::published("SE050C1").unwrap();
    let e = match Se050::select(Scp03Transport::new(link, wrong, DEFAULT_KVN)) {
        Ok(_) => panic!("opened with the wrong keys"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("SCP03 secure channel") && e.contains("wrong card cryptogram"),
        "{e}"
    );
    // Nothing but SELECT reached the applet, and no applet command was sent in plain.
    let applet: Vec<_> = bench.at_applet.0.lock().clone();
    assert!(
        applet.iter().all(|c| c[..2] == [0x00, 0xA4]),
        "{applet:02x?}"
    );
    assert!(bench
        .at_chip
        .0
        .lock()
        .iter()
        .all(|c| c[0] != 0x80 || c[1] == 0x50));

    // A wrong key version: the chip refuses INITIALIZE UPDATE, the message says so.
    let (link, _) = chip(dev_keys(), true, None);
    let e = match Se050::select(Scp03Transport::new(link, dev_keys(), 0x21)) {
        Ok(_) => panic!("opened with the wrong key version"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("secure channel") && e.contains("6A88") && e.contains("scp03_kvn"),
        "{e}"
    );
}

/// An attacker on the bus rewriting one bit of a response (with a valid T=1 CRC): modelled as a
/// transport between the secure channel and T=1.
struct FlipOnce<T> {
    inner: T,
    flip_response_bit: Option<usize>,
    flip_command_bit: Option<usize>,
}

impl<T: ApduTransport> ApduTransport for FlipOnce<T> {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        let mut command = command.to_vec();
        if command[0] == 0x84 && command[1] != 0x82 {
            if let Some(bit) = self.flip_command_bit.take() {
                // Within the data field (encrypted data and C-MAC), past Lc and before Le.
                let extended = command[4] == 0x00;
                let (start, le_len) = if extended { (7, 2) } else { (5, 1) };
                let at = start + (bit / 8) % (command.len() - le_len - start);
                command[at] ^= 1 << (bit % 8);
            }
        }
        let mut response = self.inner.transceive(&command)?;
        if command[0] == 0x84 && command[1] != 0x82 && response.len() > 2 {
            if let Some(bit) = self.flip_response_bit.take() {
                let at = (bit / 8) % (response.len() - 2);
                response[at] ^= 1 << (bit % 8);
            }
        }
        Ok(response)
    }
    fn resync(&mut self) -> Result<(), LinkError> {
        self.inner.resync()
    }
}

#[test]
fn scp03_flipped_bit_fails_clearly_then_the_channel_is_opened_again() {
    for bit in [0usize, 9, 77, 130, 255, 301] {
        let (link, _) = chip(dev_keys(), true, None);
        let flip = FlipOnce {
            inner: link,
            flip_response_bit: None,
            flip_command_bit: None,
        };
        let mut se = Se050::select(Scp03Transport::new(flip, dev_keys(), DEFAULT_KVN)).unwrap();
        let good = key_and_ecdh(&mut se);
        // A response bit flipped: the call fails naming the MAC, never a wrong secret.
        se.transport_mut().inner_mut().flip_response_bit = Some(bit);
        let (_, peer_public) = peer();
        let e = se.ecdh_x25519(id(), &peer_public).unwrap_err().to_string();
        assert!(
            e.contains("SCP03 secure channel") && e.contains("MAC"),
            "bit {bit}: {e}"
        );
        assert!(
            !se.transport_mut().is_open(),
            "channel kept after a MAC error"
        );
        // The next call opens the channel again and is right.
        assert_eq!(ecdh_checked(&mut se), good);
        let stats = se.transport_mut().stats();
        assert_eq!(
            (stats.handshakes, stats.dropped_on_error),
            (2, 1),
            "bit {bit}"
        );

        // A command bit flipped: the chip refuses it (6982, not run, its session closed); the
        // transport opens the channel again and sends the command once more.
        se.transport_mut().inner_mut().flip_command_bit = Some(bit);
        assert_eq!(ecdh_checked(&mut se), good);
        assert_eq!(se.transport_mut().stats().handshakes, 3, "bit {bit}");
    }
}

#[test]
fn scp03_damaged_frames_are_repaired_below_the_channel() {
    let (link, bench) = chip(dev_keys(), true, None);
    let mut se = Se050::select(Scp03Transport::new(link, dev_keys(), DEFAULT_KVN)).unwrap();
    let good = key_and_ecdh(&mut se);
    for direction in [Direction::HostToSe, Direction::SeToHost] {
        bench.faults.corrupt_next_frames(direction, 1);
        assert_eq!(ecdh_checked(&mut se), good);
    }
}

#[test]
fn scp03_chip_reset_mid_session_is_recovered_from() {
    // The chip works 20 ms on each ECDH: the reset comes while it does.
    let (link, bench) = chip_with_latency(dev_keys(), true, None, Duration::from_millis(20));
    let mut se = Se050::select(Scp03Transport::new(link, dev_keys(), DEFAULT_KVN)).unwrap();
    let good = key_and_ecdh(&mut se);
    for round in 0..3 {
        bench.faults.reset_mid_apdu();
        let (_, peer_public) = peer();
        // The call during the reset may fail (with a clear error) or be recovered at once;
        // it never gives a wrong secret.
        match se.ecdh_x25519(id(), &peer_public) {
            Ok(secret) => assert_eq!(*secret, good, "round {round}"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        assert_eq!(ecdh_checked(&mut se), good, "round {round}: not recovered");
    }
    assert!(
        se.transport_mut().stats().handshakes >= 2,
        "the channel was never re-opened"
    );
}

#[test]
fn scp03_rotation_replaces_the_keys_old_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_state = dir.path().join("chip.scp03-keys");
    let (link, _) = chip(dev_keys(), true, Some(key_state.clone()));
    let mut se = Se050::select(Scp03Transport::new(link, dev_keys(), DEFAULT_KVN)).unwrap();
    let good = key_and_ecdh(&mut se);
    let new = StaticKeys::random();
    let dek = dev_keys().dek.clone();
    rotate::put_keys(se.transport_mut(), DEFAULT_KVN, &dek, &new).unwrap();
    // The new keys never crossed the bus in clear (they are in PUT KEY, under DEK and S-ENC).
    // The chip persisted them; a new chip process (same key file) takes only the new keys.
    let (link, _) = chip(dev_keys(), true, Some(key_state.clone()));
    let e = match Se050::select(Scp03Transport::new(link, dev_keys(), DEFAULT_KVN)) {
        Ok(_) => panic!("old keys still accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("wrong card cryptogram"), "{e}");
    let (link, bench) = chip(dev_keys(), true, Some(key_state));
    let mut se = Se050::select(Scp03Transport::new(link, new.clone(), DEFAULT_KVN)).unwrap();
    // (A fresh in-memory applet: a new key, checked against x25519-dalek.)
    assert_ne!(key_and_ecdh(&mut se), good);
    let bus = bench.log.0.lock().clone();
    assert!(!contains(&bus, &new.enc[..]) && !contains(&bus, &new.dek[..]));
}

#[test]
fn scp03_keys_changed_under_a_running_host_fail_and_never_go_plain() {
    // A chip that would take plain commands, so that a fallback would be seen to work.
    let dir = tempfile::tempdir().unwrap();
    let key_state = dir.path().join("chip.scp03-keys");
    let (link, bench) = chip(dev_keys(), false, Some(key_state.clone()));
    let mut se = Se050::select(Scp03Transport::new(link, dev_keys(), DEFAULT_KVN)).unwrap();
    key_and_ecdh(&mut se);
    // Another process rotates the chip's keys; this one resyncs (it took the lock again).
    let other = StaticKeys::random();
    let text = format!("KVN 0B\n{}", &*other.to_file_text());
    std::fs::write(&key_state, text).unwrap();
    se.transport_mut().resync().unwrap();
    let (_, peer_public) = peer();
    let seen_before = bench.at_chip.0.lock().len();
    let e = se.ecdh_x25519(id(), &peer_public).unwrap_err().to_string();
    assert!(e.contains("wrong card cryptogram"), "{e}");
    let seen = bench.at_chip.0.lock()[seen_before..].to_vec();
    assert!(
        seen.iter()
            .all(|c| c[..2] == [0x00, 0xA4] || c[..2] == [0x80, 0x50]),
        "sent after the failed handshake: {seen:02x?}"
    );
}
