//! Server side: the interface's socket, its accept loop, and one connection's requests
//! answered by a `UapiBackend`.

use std::io::{self, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use zeroize::{Zeroize, Zeroizing};

use super::{
    read_request, serialize_device, socket_path, Request, UapiBackend, EPROTO, SOCKET_DIR,
};

/// How long a client may stay silent in the middle of a request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the accept loop checks for shutdown and for removal of its socket file.
const POLL_INTERVAL_MS: i32 = 200;

/// Answer requests on one connection until the client closes it or breaks the protocol.
pub fn serve_connection(
    stream: &mut (impl io::Read + Write),
    backend: &dyn UapiBackend,
) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let request = read_request(&mut reader);
        let reply = match request {
            Ok(None) => return Ok(()),
            Ok(Some(Request::Get)) => match backend.get() {
                Ok(mut device) => {
                    // The reply carries the preshared keys (as `wg` expects): it, the text and
                    // the device's copies are wiped once sent, and so is the stack they were
                    // made on.
                    let text = Zeroizing::new(serialize_device(&device));
                    for peer in &mut device.peers {
                        if let Some(psk) = peer.preshared_key.as_mut() {
                            psk.zeroize();
                        }
                    }
                    crate::secret_mem::scrub_stack();
                    let mut reply = Zeroizing::new(String::with_capacity(text.len() + 16));
                    reply.push_str(&text);
                    reply.push_str("errno=0\n\n");
                    reader.get_mut().write_all(reply.as_bytes())?;
                    continue;
                }
                // `wg` reads a get errno as a positive number.
                Err(e) => {
                    log::warn!("uapi get: {e}");
                    format!("errno={}\n\n", e.errno)
                }
            },
            Ok(Some(Request::Set(set))) => match backend.set(set) {
                Ok(()) => "errno=0\n\n".to_string(),
                Err(e) => {
                    log::warn!("uapi set refused: {}", e.message);
                    // ... and a set errno as a negative one (as wireguard-go sends it).
                    format!("errno={}\n\n", -e.errno)
                }
            },
            Err(e) => {
                log::warn!("uapi: {}", e.message);
                reader
                    .get_mut()
                    .write_all(format!("errno={}\n\n", -e.errno).as_bytes())?;
                // After a broken request we cannot know where the next one starts; a refused
                // but well-formed `set` was read to its end, so the connection may go on.
                if e.errno == EPROTO || e.errno == libc::EIO {
                    return Ok(());
                }
                continue;
            }
        };
        reader.get_mut().write_all(reply.as_bytes())?;
    }
}

/// A running UAPI server: one thread accepting and serving connections in turn.
/// Dropping it (or [`UapiServer::shutdown`]) stops the thread and removes the socket file.
pub struct UapiServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    removed: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UapiServer {
    /// Listen on `/var/run/wireguard/IFNAME.sock`.
    pub fn start(ifname: &str, backend: Arc<dyn UapiBackend>) -> io::Result<UapiServer> {
        std::fs::create_dir_all(SOCKET_DIR)?;
        UapiServer::start_at(&socket_path(ifname), backend, None)
    }

    /// Listen on `path`; `on_removed` runs (on the server thread) if someone deletes the
    /// socket file, which is how `wg-quick down`-style tools ask a userspace daemon to exit.
    pub fn start_at(
        path: &Path,
        backend: Arc<dyn UapiBackend>,
        on_removed: Option<Box<dyn FnOnce() + Send>>,
    ) -> io::Result<UapiServer> {
        // A socket left by a dead daemon is in the way; a live one means the name is taken.
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running daemon", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = bind_private(path)?;
        listener.set_nonblocking(true)?;
        let inode = std::fs::metadata(path)?.ino();
        let stop = Arc::new(AtomicBool::new(false));
        let removed = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, removed, path) = (stop.clone(), removed.clone(), path.to_path_buf());
            std::thread::Builder::new()
                .name("uapi".into())
                .spawn(move || {
                    accept_loop(
                        listener, &path, inode, &*backend, &stop, &removed, on_removed,
                    )
                })?
        };
        Ok(UapiServer {
            path: path.to_path_buf(),
            stop,
            removed,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once the socket file was removed from outside.
    pub fn socket_removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if !self.removed.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Bind with mode 0600 from the start: the umask is process-wide, so instead of changing it
/// we bind in a private 0700 directory and rename the socket into place.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp_dir = dir.join(format!(
        ".uapi-{}-{}",
        std::process::id(),
        path.file_name().and_then(|f| f.to_str()).unwrap_or("sock")
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&tmp_dir)?;
    let result = (|| {
        let tmp = tmp_dir.join("s");
        let listener = UnixListener::bind(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&tmp_dir);
    result
}

fn socket_still_ours(path: &Path, inode: u64) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.ino() == inode)
        .unwrap_or(false)
}

fn accept_loop(
    listener: UnixListener,
    path: &Path,
    inode: u64,
    backend: &dyn UapiBackend,
    stop: &AtomicBool,
    removed: &AtomicBool,
    mut on_removed: Option<Box<dyn FnOnce() + Send>>,
) {
    use std::os::fd::AsRawFd;
    while !stop.load(Ordering::SeqCst) {
        if !socket_still_ours(path, inode) {
            log::info!("{} was removed: stopping", path.display());
            removed.store(true, Ordering::SeqCst);
            if let Some(callback) = on_removed.take() {
                callback();
            }
            return;
        }
        let mut pollfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd that lives across the call; the listener owns the fd.
        let ready = unsafe { libc::poll(&mut pollfd, 1, POLL_INTERVAL_MS) };
        if ready <= 0 {
            continue;
        }
        match listener.accept() {
            Ok((mut stream, _)) => {
                // A client that stalls must not hold the interface's only UAPI thread forever.
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
                let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
                if let Err(e) = serve_connection(&mut stream, backend) {
                    log::debug!("uapi connection: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                log::warn!("uapi accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
