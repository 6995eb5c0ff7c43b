//! The signals the daemon acts on, caught by signal-hook from the start (so one that comes while
//! the key is still loading is not lost) and handed over by a thread of their own, so none of
//! our code runs inside a signal handler and the main loop can wait with a timeout.
//!
//! SIGINT and SIGTERM stop the daemon; SIGHUP asks it to re-read its configuration (as
//! `systemctl reload` does): a SIGHUP never stops the tunnel.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// What a caught signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Stop(i32),
    Reload,
}

pub struct CaughtSignals {
    received: mpsc::Receiver<i32>,
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl CaughtSignals {
    pub fn catch() -> Result<CaughtSignals, String> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(|e| format!("cannot catch SIGINT/SIGTERM/SIGHUP: {e}"))?;
        let handle = signals.handle();
        let (sender, received) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if sender.send(signal).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
        Ok(CaughtSignals {
            received,
            handle,
            thread: Some(thread),
        })
    }

    /// Wait up to `timeout` for a signal; returns what it asks for.
    pub fn wait(&self, timeout: Duration) -> Option<Request> {
        let signal = self.received.recv_timeout(timeout).ok()?;
        Some(if signal == SIGHUP {
            Request::Reload
        } else {
            Request::Stop(signal)
        })
    }

    /// A stop signal that came already (used while starting up, before the main loop).
    pub fn stop_pending(&self) -> Option<i32> {
        while let Ok(signal) = self.received.try_recv() {
            if signal != SIGHUP {
                return Some(signal);
            }
        }
        None
    }
}

impl Drop for CaughtSignals {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The name of a signal in log lines.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
