//! Route changes, for the sticky sources (`crate::sticky`): the kernel's WireGuard forgets a
//! peer's cached source address when the route to the peer no longer leaves through the
//! interface that address was learned on (socket.c send4/send6: `rt->dst.dev->ifindex !=
//! endpoint->src_if4`), and lets the routing choose again. Looking the route up before every
//! send would cost a netlink round trip per packet; instead the timer thread listens to the
//! kernel's route and address notifications (rtnetlink multicast groups) and, when any came,
//! asks the kernel (RTM_GETROUTE) where each learned endpoint is routed now.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Netlink messages and attributes are padded to 4 bytes.
fn align4(n: usize) -> usize {
    (n + 3) & !3
}

const NLMSG_HDRLEN: usize = 16;
const RTMSG_LEN: usize = 12;

fn netlink_socket(groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` was just opened and is owned from here on.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_nl is plain old data; zero is valid (pid 0: the kernel assigns one).
    let mut addr: libc::sockaddr_nl = unsafe { zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    // SAFETY: addr is a valid sockaddr_nl of the size given.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Notifications of route, address and link changes in the device's network namespace.
pub(crate) struct RouteWatch {
    events: OwnedFd,
    /// For the RTM_GETROUTE questions (a socket of its own: no notification in between).
    query: OwnedFd,
    seq: u32,
}

impl RouteWatch {
    /// Open in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<RouteWatch> {
        let groups = (libc::RTMGRP_IPV4_ROUTE
            | libc::RTMGRP_IPV6_ROUTE
            | libc::RTMGRP_IPV4_IFADDR
            | libc::RTMGRP_IPV6_IFADDR
            | libc::RTMGRP_LINK) as u32;
        Ok(RouteWatch {
            events: netlink_socket(groups)?,
            query: netlink_socket(0)?,
            seq: 0,
        })
    }

    /// Whether any notification came since the last call (all are read and dropped). A full
    /// socket buffer (ENOBUFS: notifications were lost) counts as a change too.
    pub(crate) fn changed(&self) -> bool {
        let mut buf = [0u8; 8192];
        let mut any = false;
        loop {
            // SAFETY: buf is valid for writing buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.events.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                any = true;
                continue;
            }
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                any = true;
                continue;
            }
            return any;
        }
    }

    /// The interface the kernel routes packets to `dst` through now (with `fwmark`, as the
    /// device's socket sends them); None when there is no route.
    pub(crate) fn route_interface(&mut self, dst: IpAddr, fwmark: u32) -> io::Result<Option<u32>> {
        self.seq = self.seq.wrapping_add(1);
        let (family, octets): (u8, Vec<u8>) = match dst {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        let mut msg = vec![0u8; NLMSG_HDRLEN + RTMSG_LEN];
        msg[4..6].copy_from_slice(&libc::RTM_GETROUTE.to_ne_bytes());
        msg[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        msg[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        msg[NLMSG_HDRLEN] = family;
        msg[NLMSG_HDRLEN + 1] = (octets.len() * 8) as u8; // rtm_dst_len
        let mut attr = |kind: u16, data: &[u8]| {
            let len = 4 + data.len();
            msg.extend_from_slice(&(len as u16).to_ne_bytes());
            msg.extend_from_slice(&kind.to_ne_bytes());
            msg.extend_from_slice(data);
            msg.resize(align4(msg.len()), 0);
        };
        attr(libc::RTA_DST, &octets);
        if fwmark != 0 {
            attr(libc::RTA_MARK, &fwmark.to_ne_bytes());
        }
        let total = msg.len() as u32;
        msg[0..4].copy_from_slice(&total.to_ne_bytes());
        let fd = self.query.as_raw_fd();
        // SAFETY: msg is valid for reading msg.len() bytes; the socket is connected to nothing,
        // so the message goes to the kernel (a zeroed sockaddr_nl is pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: as above; kernel is a valid sockaddr_nl.
        let sent = unsafe {
            libc::sendto(
                fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 8192];
        loop {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd, valid for the call. The kernel answers at once: one second is
            // a bound, never reached in practice.
            if unsafe { libc::poll(&mut pfd, 1, 1000) } <= 0 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no RTM_GETROUTE answer",
                ));
            }
            // SAFETY: buf is valid for writing buf.len() bytes.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(answer) = parse_answer(&buf[..n as usize], self.seq) {
                return answer;
            }
        }
    }
}

/// The answer to request `seq` in `buf`, if it holds it: the output interface of the route, no
/// route (an error such as ENETUNREACH), or another error.
fn parse_answer(buf: &[u8], seq: u32) -> Option<io::Result<Option<u32>>> {
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let u16_at = |b: &[u8], at: usize| -> Option<u16> {
        Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
    };
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let len = u32_at(buf, at)? as usize;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            return None;
        }
        let kind = u16_at(buf, at + 4)?;
        let msg = &buf[at..at + len];
        if u32_at(msg, 8)? == seq {
            if kind == libc::NLMSG_ERROR as u16 {
                let errno = -(u32_at(msg, NLMSG_HDRLEN)? as i32);
                return Some(match errno {
                    0 => Ok(None),
                    libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EINVAL => Ok(None),
                    e => Err(io::Error::from_raw_os_error(e)),
                });
            }
            if kind == libc::RTM_NEWROUTE {
                let mut a = NLMSG_HDRLEN + RTMSG_LEN;
                while a + 4 <= msg.len() {
                    let alen = u16_at(msg, a)? as usize;
                    let akind = u16_at(msg, a + 2)?;
                    if alen < 4 {
                        break;
                    }
                    if akind == libc::RTA_OIF {
                        return Some(Ok(Some(u32_at(msg, a + 4)?)));
                    }
                    a += align4(alen);
                }
                return Some(Ok(None));
            }
        }
        at += align4(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_index() -> u32 {
        // SAFETY: the name is a NUL-terminated string.
        unsafe { libc::if_nametoindex(c"lo".as_ptr()) }
    }

    #[test]
    fn loopback_is_routed_through_lo() {
        let mut watch = RouteWatch::open().unwrap();
        assert_eq!(
            watch
                .route_interface("127.0.0.1".parse().unwrap(), 0)
                .unwrap(),
            Some(loopback_index())
        );
        assert_eq!(
            watch.route_interface("::1".parse().unwrap(), 0).unwrap(),
            Some(loopback_index())
        );
    }

    #[test]
    fn an_answer_for_another_request_is_not_taken() {
        // An error message (errno 0) for sequence 7, asked about 8.
        let mut m = vec![0u8; 36];
        m[0..4].copy_from_slice(&36u32.to_ne_bytes());
        m[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        m[8..12].copy_from_slice(&7u32.to_ne_bytes());
        assert!(parse_answer(&m, 8).is_none());
        assert!(matches!(parse_answer(&m, 7), Some(Ok(None))));
        // ENETUNREACH is "no route", another errno an error.
        m[16..20].copy_from_slice(&(-libc::ENETUNREACH).to_ne_bytes());
        assert!(matches!(parse_answer(&m, 7), Some(Ok(None))));
        m[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert!(matches!(parse_answer(&m, 7), Some(Err(_))));
        // Truncated: nothing.
        assert!(parse_answer(&m[..10], 7).is_none());
    }
}
