//! The real I2C path through a real kernel (issue 23, part 3): the module inside a guest running
//! Debian 12's kernel opens `/dev/i2c-N` with its production code (linux-embedded-hal's I2cdev,
//! the I2C_RDWR ioctl, the kernel's i2c-dev and i2c core) and reaches the virtual SE050 at 0x48
//! behind the kernel's i2c-tiny-usb adapter (tests/support/i2c_guest). One guest serves every
//! test of this binary; the tests take turns (they share the chip and its fault plan).
//! Needs root (namespaces, qemu); fails, never skips, when it cannot run.

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use e2e_tests::i2c_guest::I2cGuest;
use e2e_tests::module_path;
use x25519_dalek::{PublicKey, StaticSecret};

/// Keygen and ECDH on the virtual chip: the chip is busy (NACKs its address) this long.
const CHIP_LATENCY: Duration = Duration::from_millis(30);
/// A token command in the guest, its module's loading included.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(120);

fn guest() -> MutexGuard<'static, &'static I2cGuest> {
    static GUEST: OnceLock<I2cGuest> = OnceLock::new();
    static TURN: OnceLock<Mutex<&'static I2cGuest>> = OnceLock::new();
    let turn = TURN.get_or_init(|| {
        let guest = GUEST.get_or_init(|| {
            I2cGuest::start(Path::new(env!("CARGO_BIN_EXE_e2e-i2c-guest")), CHIP_LATENCY)
        });
        Mutex::new(guest)
    });
    let guard = turn.lock().unwrap_or_else(|p| p.into_inner());
    guard.chip.faults().clear();
    guard.chip.set_silent(false);
    guard
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value after `word ` in the tool's output.
fn field(output: &str, word: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{word} ")))
        .unwrap_or_else(|| panic!("no `{word}` in the guest tool's output:\n{output}"))
        .trim()
        .to_string()
}

fn keygen(g: &I2cGuest, label: &str) -> String {
    let out = g.token(&format!("keygen {label}"), TOKEN_TIMEOUT);
    if !out.success() {
        g.vm.fail(&format!(
            "keygen {label} through {} failed:\n{}",
            g.bus, out.output
        ));
    }
    field(&out.output, "public")
}

fn ecdh(g: &I2cGuest, label: &str, peer: &PublicKey) -> String {
    let out = g.token(
        &format!("ecdh {label} {}", hex(peer.as_bytes())),
        TOKEN_TIMEOUT,
    );
    if !out.success() {
        g.vm.fail(&format!(
            "ecdh {label} through {} failed:\n{}",
            g.bus, out.output
        ));
    }
    field(&out.output, "secret")
}

/// The same chip (its state file) reached in-process: the module with `transport = "virtual"`,
/// in a process of its own on the host, through the same guest tool.
fn ecdh_in_process(g: &I2cGuest, label: &str, peer: &PublicKey) -> String {
    let conf = g.state_path().with_file_name("in-process.toml");
    std::fs::write(
        &conf,
        format!(
            "transport = \"virtual\"\nvirtual_state = \"{}\"\nvirtual_latency_ms = {}\n",
            g.state_path().display(),
            g.latency().as_millis()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_e2e-i2c-guest"))
        .args(["ecdh", label, &hex(peer.as_bytes())])
        .env("E2E_MODULE", module_path())
        .env("PKCS11_SE050_CONF", &conf)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "in-process ecdh failed:\n{text}");
    field(&text, "secret")
}

#[test]
fn keygen_and_ecdh_through_dev_i2c_give_the_in_process_bytes() {
    let g = guest();
    let public = keygen(&g, "i2c-kern");
    let token_public = PublicKey::from(<[u8; 32]>::try_from(hex_decode(&public)).unwrap());
    let peer = StaticSecret::random_from_rng(rand_core::OsRng);
    let peer_public = PublicKey::from(&peer);
    let through_kernel = ecdh(&g, "i2c-kern", &peer_public);
    assert_eq!(
        through_kernel,
        hex(peer.diffie_hellman(&token_public).as_bytes()),
        "ECDH through {} is X25519 with the public key the token gave",
        g.bus
    );
    assert_eq!(
        through_kernel,
        ecdh_in_process(&g, "i2c-kern", &peer_public),
        "the same chip in-process gives the same bytes"
    );
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn smoke_i2cdetect() {
    let g = guest();
    let n = g.bus.trim_start_matches("/dev/i2c-");
    let out = g.vm.run_ok(&format!("i2cdetect -y {n}"));
    eprintln!("{out}");
    let _ = Instant::now();
}
