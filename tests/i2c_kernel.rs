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

use pkcs11_se050::virtual_se050::Direction;

use e2e_tests::i2c_guest::{Adapter, I2cGuest};
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
    guard.chip.cut_next_reads(0);
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
        g.fail(&format!(
            "keygen {label} through {} failed:\n{}",
            g.bus(),
            out.output
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
        g.fail(&format!(
            "ecdh {label} through {} failed:\n{}",
            g.bus(),
            out.output
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

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The bus number of `/dev/i2c-N`.
fn bus_number(g: &I2cGuest) -> String {
    g.bus().trim_start_matches("/dev/i2c-").to_string()
}

/// The kernel's i2c tracepoint lines, each with its event name and fields.
struct TraceLine {
    event: String,
    address: Option<String>,
    len: Option<usize>,
    data: Option<String>,
    ret: Option<i32>,
}

fn parse_trace(text: &str) -> Vec<TraceLine> {
    text.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(": i2c_")?;
            let (event, fields) = rest.split_once(": ")?;
            let field = |name: &str| {
                fields
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .map(str::to_string)
            };
            Some(TraceLine {
                event: event.to_string(),
                address: field("a="),
                len: field("l=").and_then(|l| l.parse().ok()),
                data: fields
                    .split_once('[')
                    .map(|(_, d)| d.trim_end_matches(']').to_string()),
                ret: field("ret=").and_then(|r| r.parse().ok()),
            })
        })
        .collect()
}

/// Transfers the kernel failed with the adapter's address-NACK errno (i2c_result ret=-errno):
/// EREMOTEIO (121) from the OSIF driver, as on a Raspberry Pi; ENXIO (6) from i2c-tiny-usb.
fn nack_results(trace: &[TraceLine], adapter: Adapter) -> usize {
    trace
        .iter()
        .filter(|t| t.event == "result" && t.ret == Some(-adapter.nack_errno()))
        .count()
}

#[test]
fn i2cdetect_shows_the_chip_at_0x48_and_nothing_else() {
    let g = guest();
    let out = g.vm.run_ok(&format!("i2cdetect -y {}", bus_number(&g)));
    let row = out
        .lines()
        .find(|l| l.starts_with("40:"))
        .unwrap_or_else(|| panic!("no row 40 in i2cdetect's output:\n{out}"));
    let cells: Vec<&str> = row.split_whitespace().skip(1).collect();
    assert_eq!(
        cells.get(8),
        Some(&"48"),
        "i2cdetect -y {}:\n{out}",
        bus_number(&g)
    );
    let found: Vec<&str> = out
        .lines()
        .skip(1)
        .flat_map(|l| l.split_whitespace().skip(1))
        .filter(|c| *c != "--")
        .collect();
    assert_eq!(found, ["48"], "only the SE050 answers on the bus:\n{out}");
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
        g.bus()
    );
    assert_eq!(
        through_kernel,
        ecdh_in_process(&g, "i2c-kern", &peer_public),
        "the same chip in-process gives the same bytes"
    );
}

#[test]
fn the_kernel_trace_shows_the_modules_frames_at_0x48() {
    let g = guest();
    keygen(&g, "i2c-trace");
    let peer = PublicKey::from(&StaticSecret::random_from_rng(rand_core::OsRng));
    let writes_before = g
        .chip
        .counts
        .writes
        .load(std::sync::atomic::Ordering::SeqCst);
    let reads_before = g
        .chip
        .counts
        .reads
        .load(std::sync::atomic::Ordering::SeqCst);
    g.clear_trace();
    ecdh(&g, "i2c-trace", &peer);
    let text = g.trace();
    let trace = parse_trace(&text);
    let writes: Vec<&TraceLine> = trace.iter().filter(|t| t.event == "write").collect();
    let reads: Vec<&TraceLine> = trace.iter().filter(|t| t.event == "read").collect();
    let replies: Vec<&TraceLine> = trace.iter().filter(|t| t.event == "reply").collect();
    assert!(
        !writes.is_empty() && !replies.is_empty(),
        "no transfers traced:\n{text}"
    );
    assert!(
        trace
            .iter()
            .filter(|t| t.event != "result")
            .all(|t| t.address.as_deref() == Some("048")),
        "every message of the module is addressed to 0x48:\n{text}"
    );
    // T=1 over I2C (UM11225): the host's frames carry NAD 0x5A, the chip's 0xA5; the module
    // reads a frame's 3-byte header first, then the rest (partial reads).
    assert!(
        writes
            .iter()
            .all(|t| t.data.as_deref().is_some_and(|d| d.starts_with("5a-"))),
        "every write is a T=1 frame from the host (NAD 5a):\n{text}"
    );
    assert!(
        replies
            .iter()
            .filter(|t| t.len == Some(3))
            .all(|t| t.data.as_deref().is_some_and(|d| d.starts_with("a5-"))),
        "every header read is a T=1 frame from the chip (NAD a5):\n{text}"
    );
    assert!(
        reads.iter().any(|t| t.len == Some(3)) && reads.iter().any(|t| t.len > Some(3)),
        "headers and bodies are read apart:\n{text}"
    );
    // An ECDH's command carries the peer's key (big-endian on the chip: reversed).
    let mut reversed = *peer.as_bytes();
    reversed.reverse();
    let key_bytes: String = reversed
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join("-");
    assert!(
        writes
            .iter()
            .any(|t| t.data.as_deref().is_some_and(|d| d.contains(&key_bytes))),
        "the ECDH command with the peer's key crossed the kernel:\n{text}"
    );
    // The kernel's view and the chip's agree: each message traced reached the relay.
    let writes_after = g
        .chip
        .counts
        .writes
        .load(std::sync::atomic::Ordering::SeqCst);
    let reads_after = g
        .chip
        .counts
        .reads
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        writes.len() as u64,
        writes_after - writes_before,
        "writes:\n{text}"
    );
    assert_eq!(
        reads.len() as u64,
        reads_after - reads_before,
        "reads:\n{text}"
    );
}

/// An ECDH while the chip is busy (it NACKs its address for 30 ms), then one through a storm of
/// 300 NACKs: both give the in-process bytes, and the kernel reported each NACK to the module
/// with the adapter's errno, which the module read as "busy, poll again".
fn busy_and_storm_are_ridden_out(g: &I2cGuest, label: &str) {
    let adapter = g.adapter();
    keygen(g, label);
    let peer = StaticSecret::random_from_rng(rand_core::OsRng);
    let peer_public = PublicKey::from(&peer);
    let expected = ecdh_in_process(g, label, &peer_public);

    g.clear_trace();
    let naks_before = g.chip.naks();
    assert_eq!(ecdh(g, label, &peer_public), expected);
    let trace = parse_trace(&g.trace());
    assert!(g.chip.naks() > naks_before, "the chip NACKed while busy");
    assert!(
        nack_results(&trace, adapter) > 0,
        "{adapter:?}: the kernel returned errno {} for the NACKs",
        adapter.nack_errno()
    );

    const STORM: u32 = 300;
    g.chip.faults().nack_next_polls(STORM);
    g.clear_trace();
    assert_eq!(
        ecdh(g, label, &peer_public),
        expected,
        "ECDH after a NACK storm"
    );
    assert!(!g.chip.faults().pending(), "the storm was spent");
    let trace = parse_trace(&g.trace());
    assert!(
        nack_results(&trace, adapter) >= STORM as usize,
        "{adapter:?}: the kernel returned errno {} at least {STORM} times, got {}",
        adapter.nack_errno(),
        nack_results(&trace, adapter)
    );
}

#[test]
fn a_busy_chip_and_a_nack_storm_are_ridden_out_with_the_pis_eremoteio() {
    let g = guest();
    assert_eq!(g.adapter(), Adapter::Osif);
    busy_and_storm_are_ridden_out(&g, "i2c-busy");
}

/// Puts the guest's bus back to the OSIF adapter when a test that changed it ends.
struct BackToOsif<'a>(&'a I2cGuest);

impl Drop for BackToOsif<'_> {
    fn drop(&mut self) {
        // Not while a failed test unwinds: a second panic would abort every test left.
        if !std::thread::panicking() {
            self.0.use_adapter(Adapter::Osif);
        }
    }
}

#[test]
fn through_i2c_tiny_usb_enxio_nacks_are_ridden_out_too() {
    let g = guest();
    g.use_adapter(Adapter::TinyUsb);
    let _back = BackToOsif(&g);
    let out = g.vm.run_ok(&format!(
        "cat /sys/class/i2c-adapter/i2c-{}/name",
        bus_number(&g)
    ));
    assert!(out.starts_with("i2c-tiny-usb"), "{out}");
    busy_and_storm_are_ridden_out(&g, "i2c-tiny");
}

#[test]
fn damaged_dropped_and_cut_short_frames_are_recovered() {
    let g = guest();
    keygen(&g, "i2c-noise");
    let peer = PublicKey::from(&StaticSecret::random_from_rng(rand_core::OsRng));
    let expected = ecdh_in_process(&g, "i2c-noise", &peer);
    type Inject = Box<dyn Fn(&I2cGuest)>;
    let faults: [(&str, Inject); 4] = [
        (
            "a corrupted frame to the host",
            Box::new(|g| g.chip.faults().corrupt_next_frames(Direction::SeToHost, 1)),
        ),
        (
            "a corrupted frame to the chip",
            Box::new(|g| g.chip.faults().corrupt_next_frames(Direction::HostToSe, 1)),
        ),
        (
            "a dropped frame to the host",
            Box::new(|g| g.chip.faults().drop_next_frames(Direction::SeToHost, 1)),
        ),
        (
            "frame bodies cut short",
            Box::new(|g| g.chip.cut_next_reads(2)),
        ),
    ];
    for (what, inject) in faults {
        inject(&g);
        assert_eq!(ecdh(&g, "i2c-noise", &peer), expected, "ECDH after {what}");
        assert!(!g.chip.faults().pending(), "{what}: the fault was injected");
        assert_eq!(g.chip.reads_left_to_cut(), 0, "{what}: the reads were cut");
    }
}

/// Runs an ECDH in the guest with the chip silent; returns the failure's output and how long
/// the module took to give up.
fn ecdh_with_a_silent_chip(g: &I2cGuest, label: &str, peer: &PublicKey) -> (String, Duration) {
    let started = Instant::now();
    let out = g.token(
        &format!("ecdh {label} {}", hex(peer.as_bytes())),
        Duration::from_secs(300),
    );
    let took = started.elapsed();
    if out.success() {
        g.chip.set_silent(false);
        g.fail(&format!(
            "an ECDH with a silent chip must fail:\n{}",
            out.output
        ));
    }
    eprintln!(
        "silent chip: the module gave up after {took:?}:\n{}",
        out.output
    );
    // Which of the link's two bounds ends it first (polls NACKed past their limit, or the
    // overall response time) depends on how slow each poll is; both name the chip.
    let says_so = (out.output.contains("not responding") && out.output.contains("0x48"))
        || out.output.contains("did not answer within");
    if !(says_so && out.output.contains("SE050") && out.output.contains("CKR_DEVICE_ERROR")) {
        g.chip.set_silent(false);
        g.fail(&format!(
            "the module's error names the silent chip:\n{}",
            out.output
        ));
    }
    // The bound: the link's max_response_time (30 s) and its minimum poll count, on an
    // emulated CPU whose every poll crosses USB and the relay.
    assert!(
        took < Duration::from_secs(240),
        "gave up only after {took:?}"
    );
    (out.output, took)
}

#[test]
fn a_chip_that_stops_answering_fails_in_bounded_time_with_a_clear_error() {
    let g = guest();
    keygen(&g, "i2c-silent");
    let peer = PublicKey::from(&StaticSecret::random_from_rng(rand_core::OsRng));

    // Silent from the start: the module cannot open a T=1 session.
    g.chip.set_silent(true);
    let (output, _) = ecdh_with_a_silent_chip(&g, "i2c-silent", &peer);
    g.chip.set_silent(false);
    assert!(output.contains("T=1 session"), "{output}");

    // Silent once the ECDH command is on the chip: its answer never comes.
    let mut reversed = *peer.as_bytes();
    reversed.reverse();
    g.chip.go_silent_after_write_of(&reversed);
    ecdh_with_a_silent_chip(&g, "i2c-silent", &peer);
    let went_silent = g.chip.is_silent();
    g.chip.set_silent(false);
    assert!(
        went_silent,
        "the chip received the ECDH command before it went silent"
    );

    // And the chip is usable again once it answers.
    ecdh(&g, "i2c-silent", &peer);
}
