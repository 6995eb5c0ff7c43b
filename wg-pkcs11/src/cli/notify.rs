//! Readiness, for whoever started the daemon:
//!
//! - systemd (`Type=notify`): the sd_notify protocol, one datagram per state on the unix socket
//!   named by `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace): `READY=1` once
//!   the interface is up, `RELOADING=1` + `MONOTONIC_USEC=` while a SIGHUP is applied, then
//!   `READY=1` again, and `STOPPING=1` when going down (sd_notify(3)).
//! - `wg-pkcs11 up` without `--foreground`: the parent that detached us waits on our stdout
//!   (a pipe) for the line `READY`, then exits 0; see `detach.rs`.

use std::io::Write;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable that tells a re-executed daemon its stdout is the readiness pipe.
pub const READY_PIPE_ENV: &str = "WG_PKCS11_READY_PIPE";
/// What the daemon writes to the readiness pipe.
pub const READY_LINE: &str = "READY";

/// Where readiness goes.
pub struct Readiness {
    notify_socket: Option<String>,
    ready_pipe: bool,
}

impl Readiness {
    /// From the environment: `$NOTIFY_SOCKET` and our own pipe marker. Both are removed from
    /// the environment so hooks (PostUp...) and their children do not inherit them.
    pub fn from_env() -> Readiness {
        let notify_socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty());
        let ready_pipe = std::env::var_os(READY_PIPE_ENV).is_some();
        std::env::remove_var("NOTIFY_SOCKET");
        std::env::remove_var(READY_PIPE_ENV);
        Readiness {
            notify_socket,
            ready_pipe,
        }
    }

    /// The interface is up and configured.
    pub fn ready(&mut self, status: &str) {
        self.notify(&format!(
            "READY=1\nSTATUS={status}\nMAINPID={}",
            std::process::id()
        ));
        if self.ready_pipe {
            self.ready_pipe = false;
            let mut out = std::io::stdout().lock();
            if let Err(e) = writeln!(out, "{READY_LINE}").and_then(|()| out.flush()) {
                log::warn!("telling the starting process we are up: {e}");
            }
            // The terminal we were started from is not ours any more.
            super::logging::detached();
        }
    }

    /// A reload (SIGHUP) starts; `ready` ends it.
    pub fn reloading(&self) {
        self.notify(&format!(
            "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={}",
            monotonic_usec()
        ));
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=going down");
    }

    fn notify(&self, message: &str) {
        if let Some(target) = &self.notify_socket {
            if let Err(e) = send(target, message) {
                log::warn!("sd_notify to {target}: {e}");
            }
        }
    }
}

/// Send one sd_notify datagram to `target` (a path, or `@name` for an abstract socket).
pub fn send(target: &str, message: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let address = match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(target)?,
    };
    socket.send_to_addr(message.as_bytes(), &address)?;
    Ok(())
}

/// CLOCK_MONOTONIC in microseconds, as systemd wants it with RELOADING=1.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn datagrams_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let readiness = Readiness {
            notify_socket: Some(path.to_str().unwrap().to_string()),
            ready_pipe: false,
        };
        readiness.reloading();
        let reloading = receive(&listener);
        assert!(reloading.starts_with("RELOADING=1\n"), "{reloading}");
        let usec: u64 = reloading
            .lines()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0);
        readiness.stopping();
        assert!(receive(&listener).starts_with("STOPPING=1"));

        let name = format!("wg-pkcs11-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        abstract_listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        send(&format!("@{name}"), "READY=1").unwrap();
        assert_eq!(receive(&abstract_listener), "READY=1");
    }
}
