//! The network namespace the device was created in. A socket belongs to the namespace of the
//! thread that creates it; the device's threads inherit the creator's, but a later
//! `set_listen_port` may come from any thread (a library user that created the device from a
//! thread inside a namespace, as the tests do). Like the kernel's device, which keeps its
//! creation namespace for its sockets, the rebind binds the new socket there.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

pub(crate) struct NetNamespace {
    file: File,
    /// (st_dev, st_ino): equal for two handles of the same namespace.
    id: (u64, u64),
}

fn id_of(file: &File) -> io::Result<(u64, u64)> {
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

fn open_current() -> io::Result<File> {
    File::open("/proc/thread-self/ns/net")
}

impl NetNamespace {
    /// The calling thread's network namespace.
    pub(crate) fn current() -> io::Result<NetNamespace> {
        let file = open_current()?;
        let id = id_of(&file)?;
        Ok(NetNamespace { file, id })
    }

    /// Run `f` in this namespace: on the calling thread when it is already there (no
    /// privilege needed), else on a short-lived thread that enters it first (CAP_SYS_ADMIN).
    pub(crate) fn run<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        if id_of(&open_current()?)? == self.id {
            return f();
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: setns(2) on this new thread only, with a namespace descriptor
                    // that stays open for the call; no other state is shared with it.
                    let r = unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) };
                    if r != 0 {
                        let e = io::Error::last_os_error();
                        return Err(io::Error::new(
                            e.kind(),
                            format!("entering the device's network namespace: {e}"),
                        ));
                    }
                    f()
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("binding the socket panicked")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_namespace_runs_in_place() {
        let ns = NetNamespace::current().unwrap();
        let here = std::thread::current().id();
        assert_eq!(ns.run(|| Ok(std::thread::current().id())).unwrap(), here);
    }
}
