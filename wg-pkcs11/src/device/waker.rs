//! Waiting for a descriptor or a wake-up: the packet loops block in poll(2)
//! on their descriptor and an eventfd, so `stop()` (or a request to flush
//! staged packets) reaches a thread blocked with nothing to read.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub struct Waker {
    fd: OwnedFd,
}

/// What `wait` saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    /// The descriptor is readable.
    Readable,
    /// The waker was signalled (it is reset before returning).
    Woken,
    /// Both.
    Both,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain eventfd(2) call.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and is owned from here on.
        Ok(Waker {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    fn reset(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our eventfd.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    /// Block until `fd` is readable or the waker is signalled.
    pub fn wait(&self, fd: RawFd) -> Ready {
        let mut fds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: fds is a live array of two pollfd.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Should never happen with valid descriptors; do not spin.
                std::thread::sleep(std::time::Duration::from_millis(10));
                return Ready::Readable;
            }
            let readable = fds[0].revents != 0;
            let woken = fds[1].revents != 0;
            if woken {
                self.reset();
            }
            return match (readable, woken) {
                (true, true) => Ready::Both,
                (false, true) => Ready::Woken,
                _ => Ready::Readable,
            };
        }
    }
}
