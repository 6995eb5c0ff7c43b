//! Sticky source addresses: reply from the address the peer contacted.
//!
//! A server with several addresses (a floating IP, a second uplink) must answer a peer from the
//! address that peer sent to: its firewall or NAT knows only that one, and an answer from the
//! address the OS would pick is dropped (or, if it arrives, moves the peer's endpoint to an
//! address that may vanish). The kernel's WireGuard keeps the local address of the last
//! authenticated datagram with the peer's endpoint (`struct endpoint`'s `src4`/`src6` and
//! `src_if4`, socket.c) and wireguard-go does the same with the received IP_PKTINFO /
//! IPV6_PKTINFO control message (conn/sticky_linux.go). This is that state; the control messages
//! themselves are `device::pktinfo`.
//!
//! The local address is stored together with the remote address it was learned from, and used
//! only while that is still the peer's endpoint: an endpoint set by `wg set` or learned from a
//! datagram without the control message never goes out from a stale source. As the kernel's,
//! it is forgotten when a timer starts a handshake (`Peer::tick`) and when the route to the
//! endpoint no longer leaves through the interface it was learned on (`device::route_watch`).

use std::net::{IpAddr, SocketAddr};

use parking_lot::RwLock;

/// Where a datagram arrived: our local address and the interface it came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LocalAddr {
    pub ip: IpAddr,
    /// The interface index (0: unknown, let the route decide).
    pub ifindex: u32,
}

/// A peer's sticky source: the local address its current endpoint last reached us on.
#[derive(Default)]
pub struct StickySource {
    learned: RwLock<Option<(SocketAddr, LocalAddr)>>,
}

impl StickySource {
    /// An authenticated datagram from `remote` arrived on `local` (None: no control message).
    /// Costs one read lock when nothing changed (the packet path calls it per datagram).
    pub fn learn(&self, remote: SocketAddr, local: Option<LocalAddr>) {
        let new = local.map(|l| (remote, l));
        if *self.learned.read() != new {
            *self.learned.write() = new;
        }
    }

    /// The source to send to `endpoint` from, if one was learned for exactly that endpoint.
    pub fn for_endpoint(&self, endpoint: SocketAddr) -> Option<LocalAddr> {
        match *self.learned.read() {
            Some((remote, local)) if remote == endpoint => Some(local),
            _ => None,
        }
    }

    /// The learned source and the remote address it was learned from, if any.
    pub fn learned(&self) -> Option<(SocketAddr, LocalAddr)> {
        *self.learned.read()
    }

    /// The OS refused `local` as the source towards `endpoint` (the address was removed, the
    /// route moved): forget it, unless a newer datagram replaced it meanwhile.
    pub fn forget(&self, endpoint: SocketAddr, local: LocalAddr) {
        let mut learned = self.learned.write();
        if *learned == Some((endpoint, local)) {
            *learned = None;
        }
    }

    /// Let the OS choose again (a handshake went unanswered, or the endpoint was set by hand),
    /// as the kernel's wg_socket_clear_peer_endpoint_src.
    pub fn clear(&self) {
        if self.learned.read().is_some() {
            *self.learned.write() = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(ip: &str) -> LocalAddr {
        LocalAddr {
            ip: ip.parse().unwrap(),
            ifindex: 2,
        }
    }

    #[test]
    fn the_source_belongs_to_the_endpoint_it_was_learned_from() {
        let s = StickySource::default();
        let peer: SocketAddr = "192.0.2.7:51820".parse().unwrap();
        let roamed: SocketAddr = "192.0.2.8:51820".parse().unwrap();
        assert_eq!(s.for_endpoint(peer), None);
        s.learn(peer, Some(local("198.51.100.5")));
        assert_eq!(s.for_endpoint(peer), Some(local("198.51.100.5")));
        // Another endpoint (set by hand, or a roam not yet learned) gets no stale source.
        assert_eq!(s.for_endpoint(roamed), None);
        s.learn(roamed, Some(local("198.51.100.6")));
        assert_eq!(s.for_endpoint(peer), None);
        assert_eq!(s.for_endpoint(roamed), Some(local("198.51.100.6")));
        // A datagram without the control message leaves the OS to choose.
        s.learn(roamed, None);
        assert_eq!(s.for_endpoint(roamed), None);
    }

    #[test]
    fn forget_drops_only_the_refused_source() {
        let s = StickySource::default();
        let peer: SocketAddr = "[2001:db8::7]:51820".parse().unwrap();
        s.learn(peer, Some(local("2001:db8::5")));
        // A newer source learned after the refused send stays.
        s.forget(peer, local("2001:db8::1"));
        assert_eq!(s.for_endpoint(peer), Some(local("2001:db8::5")));
        s.forget(peer, local("2001:db8::5"));
        assert_eq!(s.for_endpoint(peer), None);
        s.learn(peer, Some(local("2001:db8::5")));
        s.clear();
        assert_eq!(s.for_endpoint(peer), None);
    }
}
