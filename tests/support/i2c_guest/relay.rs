//! The host end of the guest's USB I2C adapter: each I2C message the guest's kernel puts on its
//! bus arrives here (wire format: tests/i2c_guest_tool/relay_wire.rs) and goes to the virtual
//! SE050 through its embedded_hal `I2c` implementation, one message per transaction, as on a
//! real bus where every message starts with the address byte the chip may NACK.
//!
//! Faults the chip itself does not make are made here, outside it: a chip that stops answering
//! (every message NACKed), and reads cut short (the chip stops driving SDA halfway through a
//! frame: the host still clocks every byte it asked for and reads the rest as 0xFF).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use embedded_hal::i2c::I2c;
use pkcs11_se050::virtual_se050::{FaultHandle, VirtualSe050};

#[path = "../../i2c_guest_tool/relay_wire.rs"]
mod wire;

/// What crossed the relay, for the tests' own accounting next to the kernel's tracepoints.
#[derive(Default)]
pub struct RelayCounts {
    pub writes: AtomicU64,
    pub reads: AtomicU64,
    pub naks: AtomicU64,
}

/// The chip on the relay, shared with the test that scripts its faults.
pub struct RelayedChip {
    chip: Mutex<VirtualSe050>,
    faults: FaultHandle,
    silent: AtomicBool,
    /// Bytes whose write (a command carrying them) makes the chip go silent once ACKed.
    silence_after: Mutex<Option<Vec<u8>>>,
    /// Frame bodies (reads longer than a header) still to cut short.
    cut_reads: AtomicU64,
    pub counts: RelayCounts,
}

/// The T=1 frame header the host reads first (NAD, PCB, LEN); longer reads are frame bodies.
const HEADER_LEN: usize = 3;

impl RelayedChip {
    pub fn new(chip: VirtualSe050) -> Arc<RelayedChip> {
        let faults = chip.faults();
        Arc::new(RelayedChip {
            chip: Mutex::new(chip),
            faults,
            silent: AtomicBool::new(false),
            silence_after: Mutex::new(None),
            cut_reads: AtomicU64::new(0),
            counts: RelayCounts::default(),
        })
    }

    /// The chip's fault plan (NACK storms, corrupted and dropped frames, resets).
    pub fn faults(&self) -> &FaultHandle {
        &self.faults
    }

    /// A chip that stops answering: every message NACKed until `set_silent(false)`.
    pub fn set_silent(&self, silent: bool) {
        if !silent {
            *self.silence_after.lock().unwrap() = None;
        }
        self.silent.store(silent, Ordering::SeqCst);
    }

    /// The chip stops answering right after it accepted a frame containing `marker` (the
    /// command is on the chip, its answer never comes).
    pub fn go_silent_after_write_of(&self, marker: &[u8]) {
        *self.silence_after.lock().unwrap() = Some(marker.to_vec());
    }

    pub fn is_silent(&self) -> bool {
        self.silent.load(Ordering::SeqCst)
    }

    /// The next `n` frame bodies the host reads come with their second half lost (0xFF).
    pub fn cut_next_reads(&self, n: u64) {
        self.cut_reads.store(n, Ordering::SeqCst);
    }

    /// Frame bodies still to be cut short.
    pub fn reads_left_to_cut(&self) -> u64 {
        self.cut_reads.load(Ordering::SeqCst)
    }

    /// Address NACKs given so far (busy chip, storms, silence).
    pub fn naks(&self) -> u64 {
        self.counts.naks.load(Ordering::SeqCst)
    }

    fn write(&self, address: u8, data: &[u8]) -> bool {
        self.counts.writes.fetch_add(1, Ordering::SeqCst);
        let acked = !self.silent.load(Ordering::SeqCst) && {
            let mut chip = self.chip.lock().unwrap_or_else(|p| p.into_inner());
            if data.is_empty() {
                // An address probe (SMBus quick write, as i2cdetect sends): the address phase
                // only, which the chip ACKs at its own address.
                chip.transaction(address, &mut []).is_ok()
            } else {
                chip.write(address, data).is_ok()
            }
        };
        if acked {
            let mut marker = self.silence_after.lock().unwrap();
            if marker
                .as_deref()
                .is_some_and(|m| data.windows(m.len()).any(|w| w == m))
            {
                *marker = None;
                self.silent.store(true, Ordering::SeqCst);
            }
        }
        self.count(acked)
    }

    fn read(&self, address: u8, buf: &mut [u8]) -> bool {
        self.counts.reads.fetch_add(1, Ordering::SeqCst);
        let acked = !self.silent.load(Ordering::SeqCst) && {
            let mut chip = self.chip.lock().unwrap_or_else(|p| p.into_inner());
            chip.read(address, buf).is_ok()
        };
        if !acked {
            buf.fill(0xff);
        } else if buf.len() > HEADER_LEN
            && self
                .cut_reads
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            let half = buf.len() / 2;
            buf[half..].fill(0xff);
        }
        self.count(acked)
    }

    fn count(&self, acked: bool) -> bool {
        if !acked {
            self.counts.naks.fetch_add(1, Ordering::SeqCst);
        }
        acked
    }
}

/// Serves the guest's adapter on every connection `listener` accepts, one at a time, until the
/// test binary exits.
pub fn serve(listener: TcpListener, chip: Arc<RelayedChip>) {
    std::thread::Builder::new()
        .name("i2c-relay".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = serve_one(stream, &chip) {
                    eprintln!("i2c relay: the guest's adapter went away: {e}");
                }
            }
        })
        .expect("cannot start the relay thread");
}

fn serve_one(mut stream: TcpStream, chip: &RelayedChip) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let mut head = [0u8; 4];
        stream.read_exact(&mut head)?;
        let [op, address, lo, hi] = head;
        let len = u16::from_le_bytes([lo, hi]) as usize;
        match op {
            wire::WRITE => {
                let mut data = vec![0u8; len];
                stream.read_exact(&mut data)?;
                let acked = chip.write(address, &data);
                stream.write_all(&[if acked { wire::ACK } else { wire::NAK }])?;
            }
            wire::READ => {
                let mut answer = vec![0u8; 1 + len];
                let acked = chip.read(address, &mut answer[1..]);
                answer[0] = if acked { wire::ACK } else { wire::NAK };
                stream.write_all(&answer)?;
            }
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unknown relay request {other:#04x}"),
                ))
            }
        }
    }
}

/// A listener bound to `address` inside the network namespace `ns_name` (a socket keeps the
/// namespace it was made in, whichever thread uses it later).
pub fn listen_in_namespace(ns_name: &str, address: &str) -> TcpListener {
    let path = format!("/run/netns/{ns_name}");
    let address = address.to_string();
    std::thread::spawn(move || {
        use std::os::unix::io::AsRawFd;
        let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        // SAFETY: setns(2) on this short-lived thread only, with a namespace descriptor that
        // stays open for the call; no memory is shared with the kernel.
        let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns({path}): {}", std::io::Error::last_os_error());
        TcpListener::bind(&address)
            .unwrap_or_else(|e| panic!("cannot listen on {address} in {path}: {e}"))
    })
    .join()
    .expect("the thread binding the relay's listener panicked")
}
