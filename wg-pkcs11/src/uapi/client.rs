//! Client side: talk to a running daemon's socket (`show`, `set`, `rotate`).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{parse_device, serialize_set, DeviceInfo, SetRequest, UapiError, EPROTO, SOCKET_DIR};

fn exchange(path: &Path, request: &str) -> Result<String, UapiError> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        UapiError::new(
            e.raw_os_error().unwrap_or(libc::EIO),
            format!("cannot connect to {}: {e}", path.display()),
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let io_err = |e: io::Error| UapiError::new(libc::EIO, format!("{}: {e}", path.display()));
    stream.write_all(request.as_bytes()).map_err(io_err)?;
    stream.shutdown(std::net::Shutdown::Write).map_err(io_err)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).map_err(io_err)?;
    Ok(reply)
}

/// The interfaces with a UAPI socket (every userspace WireGuard's), sorted by name.
pub fn interface_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(SOCKET_DIR)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".sock")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn get(path: &Path) -> Result<DeviceInfo, UapiError> {
    let reply = exchange(path, "get=1\n\n")?;
    if !reply.contains("errno=") {
        return Err(UapiError::new(EPROTO, "reply without errno"));
    }
    parse_device(&reply)
}

pub fn set(path: &Path, request: &SetRequest) -> Result<(), UapiError> {
    let reply = exchange(path, &serialize_set(request))?;
    let errno = reply
        .lines()
        .find_map(|l| l.strip_prefix("errno="))
        .and_then(|v| v.parse::<i32>().ok())
        .ok_or_else(|| UapiError::new(EPROTO, format!("reply without errno: {reply:?}")))?;
    if errno == 0 {
        Ok(())
    } else {
        Err(UapiError::new(
            errno.abs(),
            io::Error::from_raw_os_error(errno.abs()).to_string(),
        ))
    }
}
