//! The command channel to the guest: a virtio-serial port, which qemu connects to a unix socket
//! in the test's directory. The guest's `/init` (initramfs.rs) reads one command per
//! line and answers with the command's exit status and its output, base64 both ways so that no
//! byte of a script or its output can be mistaken for the protocol:
//!
//! ```text
//!   host -> guest   @@CMD <id> <base64 of a shell script>\n
//!   guest -> host   @@BEGIN <id>\n <base64 of stdout+stderr, wrapped> \n@@END <id> <exit status>\n
//! ```
//! One command at a time: callers share the channel through a mutex.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// What a command in the guest did.
#[derive(Clone, Debug)]
pub struct GuestOutput {
    pub status: i32,
    /// stdout and stderr together, in the order written.
    pub output: String,
}

impl GuestOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Why a command got no answer.
#[derive(Debug)]
pub enum ChannelError {
    Timeout,
    Closed,
    Io(std::io::Error),
    Garbled(String),
}

pub struct Channel {
    stream: UnixStream,
    pending: Vec<u8>,
    next_id: u64,
}

impl Channel {
    pub fn new(stream: UnixStream) -> Channel {
        Channel {
            stream,
            pending: Vec::new(),
            next_id: 1,
        }
    }

    /// The id of the last command sent.
    pub fn last_id(&self) -> u64 {
        self.next_id - 1
    }

    /// Waits for the line starting with `prefix` (the guest's `@@READY`); returns it.
    pub fn wait_for_line(
        &mut self,
        prefix: &str,
        deadline: Instant,
        mut alive: impl FnMut() -> bool,
    ) -> Result<String, ChannelError> {
        loop {
            let line = self.read_line(deadline, &mut alive)?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
    }

    /// Runs `script` with `sh` in the guest; waits at most `timeout` for its answer. `alive` is
    /// asked while waiting, so a VM that died is reported as such rather than as a timeout.
    pub fn run(
        &mut self,
        script: &str,
        timeout: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> Result<GuestOutput, ChannelError> {
        let deadline = Instant::now() + timeout;
        let id = self.next_id;
        self.next_id += 1;
        let encoded = base64::engine::general_purpose::STANDARD.encode(script);
        self.stream
            .write_all(format!("@@CMD {id} {encoded}\n").as_bytes())
            .map_err(ChannelError::Io)?;
        let begin = format!("@@BEGIN {id}");
        loop {
            // Exactly this command's: "@@BEGIN 1" is also a prefix of "@@BEGIN 12".
            if self.wait_for_line(&begin, deadline, &mut alive)? == begin {
                break;
            }
        }
        let mut body = String::new();
        loop {
            let line = self.read_line(deadline, &mut alive)?;
            if let Some(rest) = line.strip_prefix("@@END ") {
                let mut words = rest.split_whitespace();
                if words.next() != Some(&id.to_string()) {
                    return Err(ChannelError::Garbled(line));
                }
                let status = words
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| ChannelError::Garbled(line.clone()))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(body.as_bytes())
                    .map_err(|e| ChannelError::Garbled(format!("{e}: {body}")))?;
                return Ok(GuestOutput {
                    status,
                    output: String::from_utf8_lossy(&bytes).into_owned(),
                });
            }
            body.push_str(line.trim());
        }
    }

    fn read_line(
        &mut self,
        deadline: Instant,
        alive: &mut impl FnMut() -> bool,
    ) -> Result<String, ChannelError> {
        loop {
            if let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                return Ok(String::from_utf8_lossy(&line).trim_end().to_string());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ChannelError::Timeout);
            }
            if !alive() {
                return Err(ChannelError::Closed);
            }
            let wait = (deadline - now).min(Duration::from_millis(500));
            self.stream
                .set_read_timeout(Some(wait))
                .map_err(ChannelError::Io)?;
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ChannelError::Io(e)),
            }
        }
    }
}
