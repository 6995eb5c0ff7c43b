//! A steady packet stream (one small UDP datagram every interval) and its receiver, which
//! records the longest gap between two arrivals: a data path that waits for a slow token shows
//! up as a gap as long as the token operation.

use crate::args::Options;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Sequence-numbered payload: 8 bytes, big-endian.
pub const PAYLOAD_LEN: usize = 8;

/// Gaps longer than this are listed with their times, so that the driver can tell the ones that
/// happened during a handshake from the ones the machine's scheduler made elsewhere.
const LISTED_GAP_NS: u64 = 2_000_000;

/// A receive buffer big enough that a measuring process the scheduler starves for a few seconds
/// does not drop what the tunnel delivered (the default, about 200 KiB, holds ~300 small packets).
const MEASURING_RCVBUF: libc::c_int = 8 << 20;

/// Gives `socket` the big receive buffer. SO_RCVBUFFORCE goes past net.core.rmem_max (we are
/// root in the benchmarks); without the privilege it falls back to SO_RCVBUF's capped size.
pub fn enlarge_receive_buffer(socket: &UdpSocket) {
    for option in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: the fd is open for the life of `socket`, and the option value is a c_int whose
        // address and size we pass together; the kernel only reads it.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&MEASURING_RCVBUF as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// Datagrams the kernel dropped at `socket` because its receive buffer was full: the `drops`
/// column of /proc/self/net/udp{,6} (this process's network namespace). Losses counted here
/// happened in the measuring process, not in the tunnel.
pub fn socket_drops(socket: &UdpSocket) -> Option<u64> {
    let local = socket.local_addr().ok()?;
    let table = if local.is_ipv4() {
        "/proc/self/net/udp"
    } else {
        "/proc/self/net/udp6"
    };
    let text = std::fs::read_to_string(table).ok()?;
    let port = format!(":{:04X}", local.port());
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode ref pointer drops
        (fields.get(1)?.ends_with(&port)).then(|| fields.last()?.parse().ok())?
    })
}

/// Wall-clock time in nanoseconds: one clock for every process on the machine, whatever its
/// network namespace, so gaps seen by one process line up with handshakes seen by another.
/// (Only differences of a few milliseconds are compared; NTP slewing is far below that.)
pub fn shared_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Inter-arrival statistics of one stream.
#[derive(Default)]
pub struct GapMeter {
    last_arrival_ns: Option<u64>,
    pub received: u64,
    pub highest_sequence: Option<u64>,
    pub max_gap_ns: u64,
    gaps_over_5ms: u64,
    /// (start, end) in ns of the shared clock of every gap over LISTED_GAP_NS.
    long_gaps: Vec<(u64, u64)>,
}

impl GapMeter {
    pub fn arrived(&mut self, payload: &[u8]) {
        if payload.len() < PAYLOAD_LEN {
            return;
        }
        let now = shared_clock_ns();
        let sequence = u64::from_be_bytes(payload[..PAYLOAD_LEN].try_into().unwrap());
        if let Some(last) = self.last_arrival_ns {
            let gap = now.saturating_sub(last);
            self.max_gap_ns = self.max_gap_ns.max(gap);
            if gap > 5_000_000 {
                self.gaps_over_5ms += 1;
            }
            if gap > LISTED_GAP_NS {
                self.long_gaps.push((last, now));
            }
        }
        self.last_arrival_ns = Some(now);
        self.received += 1;
        self.highest_sequence = Some(self.highest_sequence.map_or(sequence, |h| h.max(sequence)));
    }

    pub fn print(&self, prefix: &str) {
        let expected = self.highest_sequence.map_or(0, |h| h + 1);
        println!("{prefix}received={}", self.received);
        println!(
            "{prefix}lost={}",
            expected.saturating_sub(self.received.min(expected))
        );
        println!("{prefix}max_gap_ms={:.3}", self.max_gap_ns as f64 / 1e6);
        println!("{prefix}gaps_over_5ms={}", self.gaps_over_5ms);
        for (start, end) in &self.long_gaps {
            println!("{prefix}gap_at={start},{end}");
        }
    }
}

/// Paces sends on an absolute schedule so that oversleeping once does not shift the rest.
pub struct Pacer {
    next: Instant,
    interval: Duration,
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Self {
            next: Instant::now(),
            interval,
        }
    }

    /// Whether a packet is due now; if so the schedule moves on by one interval (or to now, when
    /// the sender fell far behind, so it does not burst to catch up).
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next += self.interval;
        if self.next + self.interval * 10 < now {
            self.next = now;
        }
        true
    }

    pub fn until_next(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }
}

pub fn send(options: &Options) -> Result<(), String> {
    let to: SocketAddr = options.required("to")?;
    let interval = Duration::from_micros(options.optional("interval-us", 1000u64)?);
    let seconds: f64 = options.required("seconds")?;
    let socket = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })
        .map_err(|e| format!("bind: {e}"))?;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut pacer = Pacer::new(interval);
    let mut sequence = 0u64;
    let mut send_errors = 0u64;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if pacer.due(now) {
            // A route that is briefly missing (tunnel not up yet) is counted, not fatal.
            if socket.send_to(&sequence.to_be_bytes(), to).is_err() {
                send_errors += 1;
            }
            sequence += 1;
        } else {
            std::thread::sleep(pacer.until_next(now));
        }
    }
    println!("sent={sequence}");
    println!("send_errors={send_errors}");
    Ok(())
}

pub fn receive(options: &Options) -> Result<(), String> {
    let bind: SocketAddr = options.required("bind")?;
    let seconds: f64 = options.required("seconds")?;
    let socket = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    enlarge_receive_buffer(&socket);
    // A caller that starts the sender after this line knows no packet can arrive unbound (and be
    // counted as lost by a stream that had not started listening yet).
    println!("bound=1");
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut meter = GapMeter::default();
    let mut buffer = [0u8; 2048];
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        socket
            .set_read_timeout(Some((end - now).max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        match socket.recv(&mut buffer) {
            Ok(n) => meter.arrived(&buffer[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    meter.print("");
    if let Some(drops) = socket_drops(&socket) {
        println!("socket_drops={drops}");
    }
    Ok(())
}
