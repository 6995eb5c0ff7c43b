//! The device's current UDP socket, replaceable at run time (`wg set IF listen-port N`).
//!
//! The packet threads must not take a lock per packet, so each keeps its own
//! [`CachedSocket`]: an `Arc` of the socket and the epoch it was taken at. A
//! rebind swaps the socket under the slot's lock and then bumps the epoch; a
//! thread notices with one atomic load per wake-up and takes the new `Arc`.
//! The old socket closes when the last thread has let go of it (the rebind
//! wakes them and waits for that, so its port is free again when `wg set`
//! returns). The rare senders (handshake worker, timers) just [`SocketSlot::load`].

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use super::netns::NetNamespace;
use super::udp::UdpSocket;

/// How long a rebind waits for the packet threads to drop the old socket.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

pub(crate) struct SocketSlot {
    current: RwLock<Arc<UdpSocket>>,
    /// Bumped after every swap (Release); threads compare it with their copy's.
    epoch: AtomicU64,
    /// Serialises the changes (rebind, fwmark) so a mark set during a rebind is not lost.
    reconfigure: Mutex<()>,
    /// Where new sockets are bound (None: wherever the caller is; /proc was not readable).
    netns: Option<NetNamespace>,
}

impl SocketSlot {
    pub(crate) fn new(socket: UdpSocket, netns: Option<NetNamespace>) -> SocketSlot {
        SocketSlot {
            current: RwLock::new(Arc::new(socket)),
            epoch: AtomicU64::new(0),
            reconfigure: Mutex::new(()),
            netns,
        }
    }

    /// The current socket, for senders outside the packet loops.
    pub(crate) fn load(&self) -> Arc<UdpSocket> {
        self.current.read().clone()
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The bound port.
    pub(crate) fn port(&self) -> u16 {
        self.current.read().port()
    }

    pub(crate) fn fwmark(&self) -> u32 {
        self.current.read().fwmark()
    }

    /// Set SO_MARK on the current socket; a later rebind carries it over.
    pub(crate) fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        let _changing = self.reconfigure.lock();
        self.load().set_fwmark(mark)
    }

    /// Bind a socket on `port` (0: any free port) with the current fwmark and make it the
    /// current one; on failure the current socket stays and the bind's error is returned.
    /// `wake` is called after the swap so blocked threads pick up the new socket; the call
    /// returns once they let go of the old one (or after [`RELEASE_WAIT`]). Asking for the
    /// port already bound changes nothing (as the kernel); 0 always picks a new one.
    pub(crate) fn rebind(&self, port: u16, wake: impl Fn()) -> io::Result<u16> {
        let _changing = self.reconfigure.lock();
        let old = self.load();
        if port != 0 && port == old.port() {
            return Ok(port);
        }
        let mark = old.fwmark();
        let new = Arc::new(match &self.netns {
            Some(netns) => netns.run(|| UdpSocket::bind(port, mark))?,
            None => UdpSocket::bind(port, mark)?,
        });
        let bound = new.port();
        *self.current.write() = new;
        self.epoch.fetch_add(1, Ordering::Release);
        wake();
        // Our `old` is one reference; the packet threads' copies are the others.
        let deadline = Instant::now() + RELEASE_WAIT;
        while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if Arc::strong_count(&old) > 1 {
            log::warn!(
                "UDP port {}: a thread still holds the old socket; it closes when that thread lets go",
                old.port()
            );
        }
        Ok(bound)
    }
}

/// A packet thread's copy of the current socket: no lock on the data path.
pub(crate) struct CachedSocket {
    epoch: u64,
    socket: Arc<UdpSocket>,
}

impl CachedSocket {
    pub(crate) fn new(slot: &SocketSlot) -> CachedSocket {
        // Epoch first: a swap between the two loads only causes one needless refresh later.
        let epoch = slot.epoch();
        CachedSocket {
            epoch,
            socket: slot.load(),
        }
    }

    /// Take the slot's socket if it changed; returns the one it replaced.
    pub(crate) fn refresh(&mut self, slot: &SocketSlot) -> Option<Arc<UdpSocket>> {
        if slot.epoch() == self.epoch {
            return None;
        }
        let old = std::mem::replace(self, CachedSocket::new(slot));
        Some(old.socket)
    }

    pub(crate) fn get(&self) -> &UdpSocket {
        &self.socket
    }

    /// Another reference to the socket, to use it while `self`'s owner is borrowed mutably.
    pub(crate) fn shared(&self) -> Arc<UdpSocket> {
        self.socket.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebind_swaps_the_socket_and_frees_the_old_port() {
        let slot = SocketSlot::new(UdpSocket::bind(0, 0).unwrap(), NetNamespace::current().ok());
        let first = slot.port();
        let mut cached = CachedSocket::new(&slot);
        assert!(cached.refresh(&slot).is_none());
        // A thread holding the old socket lets go when woken.
        let slot = &slot;
        let second = std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            let holder = s.spawn(move || {
                rx.recv().unwrap();
                assert!(cached.refresh(slot).is_some());
                cached.get().port()
            });
            let port = slot.rebind(0, || tx.send(()).unwrap()).unwrap();
            assert_eq!(holder.join().unwrap(), port);
            port
        });
        assert_ne!(second, first);
        assert_eq!(slot.port(), second);
        // The old port is free again: a socket can take it.
        let again = UdpSocket::bind(first, 0).expect("old port released");
        assert_eq!(again.port(), first);
    }

    #[test]
    fn a_port_in_use_keeps_the_current_socket() {
        let slot = SocketSlot::new(UdpSocket::bind(0, 0).unwrap(), NetNamespace::current().ok());
        let before = slot.port();
        let taken = UdpSocket::bind(0, 0).unwrap();
        let err = slot.rebind(taken.port(), || {}).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert_eq!(slot.port(), before);
        // Same port: nothing to do.
        assert_eq!(slot.rebind(before, || panic!("no swap")).unwrap(), before);
    }
}
