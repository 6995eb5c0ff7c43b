//! Several processes on one virtual SE050 state file, and processes killed mid-write.
//!
//! Every process uses the whole host stack (`device::open`: flock per exchange, T=1 over the
//! virtual I2C bus). The children are this test binary re-executed with `SE050_CHILD` set, running
//! only the ignored `child` test, which plays the role named there (run without it, it fails: it
//! is no test of its own). The parents check how each child ended: killed by them, or exited 0.

use pkcs11_se050::applet::{ObjectId, Se050};
use pkcs11_se050::device::{self, Transport};
use pkcs11_se050::t1::ApduTransport;
use pkcs11_se050::virtual_se050::applet::{InProcessTransport, VirtualApplet};
use pkcs11_se050::virtual_se050::counters::read_counters;
use rand_core::{OsRng, RngCore};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

/// The whole host stack on the virtual chip: the chip's inter-process lock around each
/// exchange, T=1 over the virtual I2C bus, the virtual applet on the shared state file.
fn chip(state: &Path) -> Se050<Box<dyn ApduTransport>> {
    let transport = Transport::Virtual {
        state: state.to_path_buf(),
        latency: Duration::ZERO,
    };
    device::open(&transport).expect("open the virtual chip")
}

fn id(value: u32) -> ObjectId {
    ObjectId::new(value).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(text: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

const PEER_SECRET: [u8; 32] = [0x5A; 32];
const SHARED_KEYS: u32 = 15;

fn spawn_child(role: &str, state: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "harness_child_process_body",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env("SE050_CHILD", role)
        .env("SE050_STATE", state)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// Not a test of its own: the body of a child process (a `harness_` name: counted apart).
#[test]
#[ignore = "the body of the child processes the other tests spawn (SE050_CHILD names its role)"]
fn harness_child_process_body() {
    let role = std::env::var("SE050_CHILD")
        .expect("the body of a child process, run by the tests that spawn it with SE050_CHILD");
    let state = PathBuf::from(std::env::var("SE050_STATE").unwrap());
    let mut chip = chip(&state);
    match role.as_str() {
        // Until killed: generate keys, rewrite a label, delete now and then.
        "keygen-loop" => loop {
            let slot = id(1 + OsRng.next_u32() % 16);
            chip.generate_x25519(slot).unwrap();
            println!("generated {slot}");
            let label =
                vec![b'a' + (OsRng.next_u32() % 26) as u8; 1 + (OsRng.next_u32() % 600) as usize];
            chip.write_binary(id(0x100), &label).unwrap();
            if OsRng.next_u32().is_multiple_of(4) {
                chip.delete(slot).unwrap();
            }
        },
        // Generate keys one after the other and tell their public keys.
        "generator" => {
            for i in 0..SHARED_KEYS {
                chip.generate_x25519(id(0x1000 + i)).unwrap();
                let public = chip.read_x25519_public(id(0x1000 + i)).unwrap();
                println!("public {i} {}", hex(&public));
                chip.write_binary(id(0x2000), &[i as u8; 40]).unwrap();
            }
        }
        // Use each key as soon as it exists.
        "user" => {
            let peer = PublicKey::from(&StaticSecret::from(PEER_SECRET));
            let deadline = Instant::now() + Duration::from_secs(60);
            for i in 0..SHARED_KEYS {
                while !chip.exists(id(0x1000 + i)).unwrap() {
                    assert!(Instant::now() < deadline, "key {i} never appeared");
                    std::thread::sleep(Duration::from_micros(200));
                }
                let secret = chip.ecdh_x25519(id(0x1000 + i), peer.as_bytes()).unwrap();
                println!("secret {i} {}", hex(&*secret));
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn kill_9_during_key_generation_never_breaks_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("se050.state");
    let unique_id = chip(&state).unique_id().unwrap();
    let mut killed_with_progress = 0;
    for iteration in 0..50 {
        let before = read_counters(&state).keygen;
        let mut child = spawn_child("keygen-loop", &state);
        // Wait for the first key, then kill at a random moment while it keeps writing.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.find(|line| !matches!(line, Ok(text) if !text.starts_with("generated")));
        assert!(
            matches!(first, Some(Ok(_))),
            "iteration {iteration}: child generated nothing: {first:?}"
        );
        std::thread::sleep(Duration::from_micros(u64::from(OsRng.next_u32() % 80_000)));
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        drop(lines);
        // Killed by us while it worked, not ended by itself, and it never panicked (a panic
        // killed in its backtrace still shows on its stderr).
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            status.signal() == Some(libc::SIGKILL) && !stderr.contains("panicked"),
            "iteration {iteration}: the child failed by itself: {status}\n{stderr}"
        );
        // The state file must load, and still be the same chip.
        let mut reopened = Se050::select(InProcessTransport::new(
            VirtualApplet::open(&state, Duration::ZERO)
                .unwrap_or_else(|e| panic!("iteration {iteration}: {e}")),
        ))
        .unwrap();
        assert_eq!(reopened.unique_id().unwrap(), unique_id);
        // Every key pair in it is whole: its public key matches its private key.
        let peer = StaticSecret::from(PEER_SECRET);
        // (NXP's provisioned objects are skipped: the attestation key is a P-256 pair.)
        for listed in reopened.list_ids().unwrap() {
            if listed.is_reserved() {
                continue;
            }
            let (kind, _) = reopened.read_type(listed).unwrap();
            if kind == pkcs11_se050::applet::ObjectType::EcKeyPair {
                let public = reopened.read_x25519_public(listed).unwrap();
                let secret = reopened
                    .ecdh_x25519(listed, PublicKey::from(&peer).as_bytes())
                    .unwrap();
                assert_eq!(
                    *secret,
                    *peer.diffie_hellman(&PublicKey::from(public)).as_bytes()
                );
            }
        }
        if read_counters(&state).keygen > before + 1 {
            killed_with_progress += 1;
        }
    }
    assert!(
        killed_with_progress >= 10,
        "children were killed before doing much: {killed_with_progress}"
    );
}

#[test]
fn two_processes_share_one_chip() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("se050.state");
    chip(&state);
    let generator = spawn_child("generator", &state);
    let user = spawn_child("user", &state);
    let generated = generator.wait_with_output().unwrap();
    let used = user.wait_with_output().unwrap();
    assert!(
        generated.status.success() && used.status.success(),
        "generator {}: {}\nuser {}: {}",
        generated.status,
        String::from_utf8_lossy(&generated.stderr),
        used.status,
        String::from_utf8_lossy(&used.stderr)
    );
    // Each child ran its role (a filter that matched no test would exit 0 having done nothing).
    for (name, output) in [("generator", &generated), ("user", &used)] {
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains("1 passed"),
            "the {name} child ran no test: {text}"
        );
    }
    let parse = |output: &[u8], kind: &str| -> Vec<[u8; 32]> {
        String::from_utf8_lossy(output)
            .lines()
            .filter_map(|line| line.strip_prefix(kind))
            .map(|rest| unhex32(rest.split_whitespace().nth(1).unwrap()))
            .collect()
    };
    let publics = parse(&generated.stdout, "public ");
    let secrets = parse(&used.stdout, "secret ");
    assert_eq!(publics.len(), SHARED_KEYS as usize);
    assert_eq!(secrets.len(), SHARED_KEYS as usize);
    let peer = StaticSecret::from(PEER_SECRET);
    for (i, (public, secret)) in publics.iter().zip(&secrets).enumerate() {
        let expected = peer.diffie_hellman(&PublicKey::from(*public));
        assert_eq!(
            secret,
            expected.as_bytes(),
            "key {i}: the user process saw another key"
        );
    }
    let counters = read_counters(&state);
    assert_eq!(counters.keygen, SHARED_KEYS as u64);
    assert_eq!(counters.ecdh, SHARED_KEYS as u64);
    // This process sees the same chip as well.
    let mut here = chip(&state);
    assert_eq!(
        here.read_binary(id(0x2000)).unwrap(),
        vec![(SHARED_KEYS - 1) as u8; 40]
    );
}
