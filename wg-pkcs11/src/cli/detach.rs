//! Running on after the command returns, as `wireguard-go IFNAME` and `wg-quick up` do: the
//! command re-executes itself in the foreground as a child and returns once that child says the
//! interface is up (exit 0), or as soon as it fails (exit 1).
//!
//! Re-executing instead of fork(2): the daemon is multi-threaded and a PKCS#11 module must not
//! be used across a fork, so the child opens the token itself, after it has been started, with
//! the environment it was started with (`PKCS11_SE050_CONF`, `RUST_LOG`...). It runs in its own
//! process group, so a Ctrl-C in the terminal that ran `up` does not reach it.
//!
//! The child never holds our caller's stdout or stderr: both are pipes to us, and we copy what
//! comes through them until the child writes `READY` on its stdout (see `notify.rs`). A daemon
//! that kept its caller's stderr would keep `$(wg-pkcs11 up wg0)`, or a test reading the
//! output, waiting for an end of file that never comes. After `READY` the daemon logs to
//! syslog (see `logging.rs`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::notify::{READY_LINE, READY_PIPE_ENV};

/// Start `current_exe args...` detached and wait for it to be ready.
pub fn run_detached(args: &[String]) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find our own binary: {e}"))?;
    let mut child = Command::new(&exe)
        .args(args)
        .env(READY_PIPE_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    // The child's log and errors reach our stderr while we wait (a thread, since both pipes
    // must be drained at once). It ends with the pipe, or with us.
    let relay = std::thread::Builder::new()
        .name("stderr-relay".into())
        .spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        })
        .map_err(|e| format!("cannot start the stderr relay: {e}"))?;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line == READY_LINE {
            // The child runs on; it is not ours to wait for any more (init reaps it).
            return Ok(());
        }
        // A hook's own output (PreUp = echo ...).
        println!("{line}");
    }
    // End of file before READY: the child failed. Its last words first.
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the daemon: {e}"))?;
    let _ = relay.join();
    if status.code() == Some(i32::from(wg_pkcs11::key::login::PIN_EXIT_STATUS)) {
        // The child stopped because of its PIN: so do we, with the same status.
        wg_pkcs11::key::login::mark_pin_failure();
    }
    Err(format!("the daemon did not come up ({status})"))
}
