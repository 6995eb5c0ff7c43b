//! Running on after the command returns, as `wireguard-go IFNAME` and `wg-quick up` do: the
//! command re-executes itself in the foreground as a child and returns once that child says the
//! interface is up (exit 0), or as soon as it fails (exit 1, its errors already on stderr).
//!
//! Re-executing instead of fork(2): the daemon is multi-threaded and a PKCS#11 module must not
//! be used across a fork, so the child opens the token itself, after it has been started, with
//! the environment it was started with (`PKCS11_SE050_CONF`, `RUST_LOG`...). The child's stdout
//! is a pipe to us; it writes `READY` there when the interface is up (see `notify.rs`). It runs
//! in its own process group, so a Ctrl-C in the terminal that ran `up` does not reach it.

use std::io::{BufRead, BufReader};
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
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    // EOF (or an error) before READY: the child failed or closed its stdout early.
    let ready = matches!(lines.next(), Some(Ok(line)) if line == READY_LINE);
    if ready {
        // The child runs on; it is not ours to wait for any more (init reaps it when we exit).
        return Ok(());
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the daemon: {e}"))?;
    Err(format!("the daemon did not come up ({status})"))
}
