//! Where log lines go, in the form each destination wants:
//!
//! - a terminal or a file: `[timestamp LEVEL target] message`, as env_logger writes it;
//! - journald (`$JOURNAL_STREAM` is set, i.e. systemd connected our stderr to the journal): no
//!   timestamp of our own (the journal has one) and a `<N>` syslog priority prefix per line, which
//!   journald turns into the entry's PRIORITY (sd-daemon(3));
//! - syslog (`/dev/log`), once a detached daemon has left the terminal it was started from.
//!
//! `RUST_LOG` filters as usual (default `info`).

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU8, Ordering};

use env_logger::fmt::Formatter;
use log::{Level, Record};
use parking_lot::Mutex;

const STDERR: u8 = 0;
const JOURNAL: u8 = 1;
const SYSLOG: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(STDERR);
static SYSLOG_SOCKET: Mutex<Option<UnixDatagram>> = Mutex::new(None);

/// The syslog severity of a log level (RFC 5424: 3 error, 4 warning, 6 info, 7 debug).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// One line as journald wants it on a stream: `<N>message`.
pub fn journal_line(level: Level, message: &str) -> String {
    format!("<{}>{message}", priority(level))
}

/// True when systemd connected stderr to the journal: `$JOURNAL_STREAM` is `DEVICE:INODE` of
/// the stream, and it must be our stderr (a child whose stderr was redirected inherits the
/// variable but not the stream; systemd.exec(5)).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((device, inode)) = value.split_once(':') else {
        return false;
    };
    let (Ok(device), Ok(inode)) = (device.parse::<u64>(), inode.parse::<u64>()) else {
        return false;
    };
    std::fs::metadata("/proc/self/fd/2")
        .map(|m| m.dev() == device && m.ino() == inode)
        .unwrap_or(false)
}

fn format(buf: &mut Formatter, record: &Record) -> io::Result<()> {
    // A URI echoed in a message never shows its pin-value (a last net under `redacted()`).
    let message = wg_pkcs11::uri::redact_pin_values(&record.args().to_string());
    if MODE.load(Ordering::Relaxed) == STDERR {
        let level = record.level();
        writeln!(
            buf,
            "[{} {level:<5} {}] {message}",
            buf.timestamp_seconds(),
            record.target(),
        )
    } else {
        writeln!(buf, "{}", journal_line(record.level(), &message))
    }
}

/// Writes formatted lines to stderr or, in syslog mode, as one datagram each to /dev/log.
struct Destination;

impl Write for Destination {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if MODE.load(Ordering::Relaxed) == SYSLOG {
            if let Some(socket) = SYSLOG_SOCKET.lock().as_ref() {
                let text = String::from_utf8_lossy(data);
                for line in text.lines() {
                    // `<N>message` -> `<facility daemon + N>wg-pkcs11[pid]: message`
                    let (severity, message) = line
                        .strip_prefix('<')
                        .and_then(|l| l.split_once('>'))
                        .and_then(|(n, m)| Some((n.parse::<u8>().ok()?, m)))
                        .unwrap_or((6, line));
                    let datagram = format!(
                        "<{}>wg-pkcs11[{}]: {message}",
                        3 * 8 + severity,
                        std::process::id()
                    );
                    let _ = socket.send(datagram.as_bytes());
                }
                return Ok(data.len());
            }
        }
        io::stderr().write_all(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Install the logger (once, first thing in main).
pub fn init() {
    if stderr_is_journal() {
        MODE.store(JOURNAL, Ordering::Relaxed);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(format)
        .target(env_logger::Target::Pipe(Box::new(Destination)))
        .init();
}

/// A daemon that has detached from its terminal logs to syslog from now on (if there is one;
/// otherwise it keeps its stderr).
pub fn detached() {
    if MODE.load(Ordering::Relaxed) == JOURNAL {
        return;
    }
    match UnixDatagram::unbound().and_then(|s| s.connect("/dev/log").map(|()| s)) {
        Ok(socket) => {
            *SYSLOG_SOCKET.lock() = Some(socket);
            MODE.store(SYSLOG, Ordering::Relaxed);
        }
        Err(e) => log::debug!("no syslog at /dev/log ({e}): logging stays on stderr"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_carry_the_syslog_priority_and_no_timestamp() {
        assert_eq!(journal_line(Level::Error, "bad"), "<3>bad");
        assert_eq!(journal_line(Level::Warn, "hm"), "<4>hm");
        assert_eq!(journal_line(Level::Info, "wg0: up"), "<6>wg0: up");
        assert_eq!(journal_line(Level::Debug, "x"), "<7>x");
        assert_eq!(journal_line(Level::Trace, "x"), "<7>x");
    }
}
