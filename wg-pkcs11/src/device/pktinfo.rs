//! IP_PKTINFO / IPV6_PKTINFO: which local address a datagram arrived on, and which one a reply
//! leaves from (sticky sockets; the per-peer state is `crate::sticky`).
//!
//! Receiving: the socket asks for the control message (IPV6_RECVPKTINFO on the dual-stack
//! socket, which the kernel also fills for IPv4 datagrams, with a v4-mapped address:
//! ip6_datagram_recv_common_ctl; IP_PKTINFO on an IPv4-only socket), and `RecvBatch` keeps one
//! `LocalAddr` per slot in a preallocated array.
//!
//! Sending: one control message in a stack buffer, next to UDP_SEGMENT when there is one; no
//! allocation per packet. A destination that is IPv4 (v4-mapped on the dual-stack socket) gets
//! IP_PKTINFO, which udp_sendmsg takes on an IPv6 socket too (ip_cmsg_send); an IPv6 one gets
//! IPV6_PKTINFO. Only the address is sent, with interface index 0, as the kernel's send4/send6
//! do (they set the flow's source, not its output interface): an interface index would make
//! the kernel route out of that interface even where policy routing says otherwise (a failed
//! lookup with an output interface is taken as "on link", ip_route_output_key_hash_rcu), which
//! would carry packets past an fwmark rule's blackhole. (wireguard-go sends back the received
//! index.) The learned index is kept for diagnostics.
//!
//! When the kernel refuses the source (the address was removed: EINVAL from the route lookup
//! or the IPv6 address check, EADDRNOTAVAIL, or ENETUNREACH when the interface no longer routes
//! there), the caller forgets it and sends again letting the OS choose
//! ([`send_with_sticky_source`]), as the kernel's send4/send6 clear the endpoint's cached source
//! and retry.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

use super::sockopt::setsockopt_int;
use crate::sticky::{LocalAddr, StickySource};

/// CMSG_SPACE(len) of the target: the header and the alignment are those of its ABI (a 16-byte
/// header and 8-byte alignment on 64-bit targets, 12 and 4 on armhf), never the build host's.
pub(crate) const fn cmsg_space(len: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE(len as u32) as usize }
}

/// Control-message space of the larger of the two (IPV6_PKTINFO: 40 bytes on 64-bit targets,
/// 32 on armhf).
pub(crate) const PKTINFO_SPACE: usize = {
    let v4 = cmsg_space(size_of::<libc::in_pktinfo>());
    let v6 = cmsg_space(size_of::<libc::in6_pktinfo>());
    if v4 > v6 {
        v4
    } else {
        v6
    }
};

/// Ask the kernel for the local address of every datagram received on `fd`.
pub(crate) fn enable(fd: RawFd, v6_socket: bool) -> io::Result<()> {
    if v6_socket {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// The local address in one received control message, if it is a pktinfo one.
///
/// # Safety
/// `c` points at a control message inside a buffer the kernel filled (as walked with
/// CMSG_FIRSTHDR / CMSG_NXTHDR), so its header and `cmsg_len` bytes are readable.
pub(crate) unsafe fn parse(c: *const libc::cmsghdr) -> Option<LocalAddr> {
    // cmsg_len is size_t on glibc, socklen_t on musl.
    #[allow(clippy::unnecessary_cast)]
    let (level, kind, len) = ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len as usize);
    let data = libc::CMSG_DATA(c);
    if level == libc::IPPROTO_IPV6
        && kind == libc::IPV6_PKTINFO
        && len >= libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize
    {
        let info = std::ptr::read_unaligned(data.cast::<libc::in6_pktinfo>());
        let ip = Ipv6Addr::from(info.ipi6_addr.s6_addr);
        let ip = match ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ip),
        };
        return Some(LocalAddr {
            ip,
            ifindex: info.ipi6_ifindex,
        });
    }
    if level == libc::IPPROTO_IP
        && kind == libc::IP_PKTINFO
        && len >= libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize
    {
        let info = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
        // ipi_spec_dst: the local address the datagram was routed to (ipi_addr is the header's
        // destination, which differs for broadcasts).
        return Some(LocalAddr {
            ip: IpAddr::V4(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr))),
            ifindex: info.ipi_ifindex as u32,
        });
    }
    None
}

/// Write the control message that makes `local` the source of a datagram to `to`; returns the
/// space it took (0 when the families differ: then the OS chooses).
///
/// # Safety
/// `c` points at a cmsghdr-aligned, zeroed control buffer with at least [`PKTINFO_SPACE`]
/// writable bytes, inside the buffer a msghdr's msg_control describes.
pub(crate) unsafe fn write(c: *mut libc::cmsghdr, local: LocalAddr, to: SocketAddr) -> usize {
    match (local.ip, to) {
        (IpAddr::V4(ip), SocketAddr::V4(_)) => {
            let mut info: libc::in_pktinfo = std::mem::zeroed();
            info.ipi_ifindex = 0;
            info.ipi_spec_dst.s_addr = u32::from(ip).to_be();
            (*c).cmsg_level = libc::IPPROTO_IP;
            (*c).cmsg_type = libc::IP_PKTINFO;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
            libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize
        }
        (IpAddr::V6(ip), SocketAddr::V6(_)) => {
            let mut info: libc::in6_pktinfo = std::mem::zeroed();
            // A link-local source needs its interface (the destination's scope id gives it
            // too, as in the kernel); any other source is found by address.
            info.ipi6_ifindex = if (ip.segments()[0] & 0xffc0) == 0xfe80 {
                local.ifindex
            } else {
                0
            };
            info.ipi6_addr.s6_addr = ip.octets();
            (*c).cmsg_level = libc::IPPROTO_IPV6;
            (*c).cmsg_type = libc::IPV6_PKTINFO;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in6_pktinfo>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in6_pktinfo>(), info);
            libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize
        }
        _ => 0,
    }
}

/// Whether a send failed because the kernel refused the source we asked for.
pub(crate) fn source_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::EADDRNOTAVAIL | libc::ENETUNREACH)
    )
}

/// Send to `to` from the peer's sticky source, if it has one for `to`; when the kernel refuses
/// that source, forget it and send once more letting the OS choose. `send` does the sending,
/// from the given source (None: the OS chooses).
pub(crate) fn send_with_sticky_source(
    sticky: &StickySource,
    to: SocketAddr,
    mut send: impl FnMut(Option<LocalAddr>) -> io::Result<()>,
) -> io::Result<()> {
    let from = sticky.for_endpoint(to);
    match (send(from), from) {
        (Err(e), Some(local)) if source_refused(&e) => {
            log::debug!(
                "sending to {to} from {} refused ({e}); the OS chooses the source from now on",
                local.ip
            );
            sticky.forget(to, local);
            send(None)
        }
        (result, _) => result,
    }
}

/// `send_with_sticky_source` for a datagram we answer directly (a cookie reply, a handshake
/// response): from the address the message came to, or, if refused, the OS's choice.
pub(crate) fn send_from_or_any(
    local: Option<LocalAddr>,
    mut send: impl FnMut(Option<LocalAddr>) -> io::Result<()>,
) -> io::Result<()> {
    match send(local) {
        Err(e) if local.is_some() && source_refused(&e) => send(None),
        result => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_space_fits_both_kinds() {
        // SAFETY: CMSG_SPACE is a pure size computation.
        let (v4, v6) = unsafe {
            (
                libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize,
                libc::CMSG_SPACE(size_of::<libc::in6_pktinfo>() as u32) as usize,
            )
        };
        assert_eq!(PKTINFO_SPACE, v4.max(v6));
    }

    #[test]
    fn written_messages_parse_back() {
        for (local, to) in [
            ("192.0.2.5", "198.51.100.9:51820"),
            ("2001:db8::5", "[2001:db8::9]:51820"),
        ] {
            let local = LocalAddr {
                ip: local.parse().unwrap(),
                ifindex: 7,
            };
            #[repr(C, align(8))]
            struct Buf([u8; PKTINFO_SPACE]);
            let mut buf = Buf([0; PKTINFO_SPACE]);
            let c = buf.0.as_mut_ptr().cast::<libc::cmsghdr>();
            // SAFETY: the buffer is aligned, zeroed and PKTINFO_SPACE long.
            let used = unsafe { write(c, local, to.parse().unwrap()) };
            assert!(used > 0 && used <= PKTINFO_SPACE);
            // SAFETY: the message was just written whole into the buffer.
            let back = unsafe { parse(c) }.unwrap();
            assert_eq!(back.ip, local.ip);
            assert_eq!(
                back.ifindex, 0,
                "the route chooses the interface, as in the kernel"
            );
        }
        // A link-local source keeps its interface.
        let link_local = LocalAddr {
            ip: "fe80::5".parse().unwrap(),
            ifindex: 7,
        };
        let mut buf = [0u64; PKTINFO_SPACE / 8];
        // SAFETY: as above.
        unsafe {
            write(
                buf.as_mut_ptr().cast(),
                link_local,
                "[fe80::9%7]:1".parse().unwrap(),
            );
            assert_eq!(parse(buf.as_ptr().cast()), Some(link_local));
        }
        // Families that differ: no message, the OS chooses.
        let mut buf = [0u64; PKTINFO_SPACE / 8];
        let v4 = LocalAddr {
            ip: "192.0.2.5".parse().unwrap(),
            ifindex: 1,
        };
        // SAFETY: as above.
        let used = unsafe {
            write(
                buf.as_mut_ptr().cast(),
                v4,
                "[2001:db8::9]:1".parse().unwrap(),
            )
        };
        assert_eq!(used, 0);
    }

    #[test]
    fn a_refused_source_is_forgotten_and_the_send_repeated_without_it() {
        let sticky = StickySource::default();
        let to: SocketAddr = "192.0.2.9:51820".parse().unwrap();
        let local = LocalAddr {
            ip: "192.0.2.5".parse().unwrap(),
            ifindex: 3,
        };
        sticky.learn(to, Some(local));
        let mut tries = Vec::new();
        let r = send_with_sticky_source(&sticky, to, |from| {
            tries.push(from);
            match from {
                Some(_) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
                None => Ok(()),
            }
        });
        assert!(r.is_ok());
        assert_eq!(tries, vec![Some(local), None]);
        assert_eq!(sticky.for_endpoint(to), None, "forgotten");
        // Another error (a full buffer) is not the source's fault: kept, not retried.
        sticky.learn(to, Some(local));
        let mut n = 0;
        let r = send_with_sticky_source(&sticky, to, |_| {
            n += 1;
            Err(io::Error::from_raw_os_error(libc::ENOBUFS))
        });
        assert!(r.is_err());
        assert_eq!(n, 1);
        assert_eq!(sticky.for_endpoint(to), Some(local));
    }
}
