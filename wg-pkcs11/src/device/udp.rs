//! The UDP socket: one dual-stack socket (IPv6 with v4-mapped addresses, or
//! IPv4 only where IPv6 is off), read with recvmmsg + UDP_GRO and written with
//! UDP_SEGMENT (GSO), so a burst of datagrams costs one system call each way.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::pktinfo;
use super::sockopt::setsockopt_int;
use crate::sticky::LocalAddr;

// Not exported by libc for glibc targets (include/uapi/linux/udp.h).
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
/// The kernel's UDP_MAX_SEGMENTS on older kernels (newer allow 128).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// The most payload one GSO send may carry (65535 less IPv6 and UDP headers, rounded down).
pub const MAX_GSO_BYTES: usize = 65000;
/// The largest datagram (or GRO-coalesced run of them) one receive slot holds.
pub const MAX_UDP_PAYLOAD: usize = 65535;

pub struct UdpSocket {
    fd: OwnedFd,
    fwmark: std::sync::atomic::AtomicU32,
    v6: bool,
    gso: std::sync::atomic::AtomicBool,
    gro: bool,
    port: u16,
}

/// A socket address in the kernel's layout.
pub(crate) fn to_sockaddr(
    addr: SocketAddr,
    v6_socket: bool,
) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let addr = match (addr, v6_socket) {
        (SocketAddr::V4(a), true) => {
            SocketAddr::V6(SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0))
        }
        (a, _) => a,
    };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            (ss, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            (ss, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

pub(crate) fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

impl UdpSocket {
    /// Bind the listening socket on `port` (0: any free port) for both address
    /// families, with `fwmark` (SO_MARK) when non-zero.
    pub fn bind(port: u16, fwmark: u32) -> io::Result<UdpSocket> {
        match Self::bind_family(port, fwmark, true) {
            Ok(s) => Ok(s),
            Err(e)
                if e.raw_os_error() == Some(libc::EAFNOSUPPORT)
                    || e.raw_os_error() == Some(libc::EADDRNOTAVAIL) =>
            {
                Self::bind_family(port, fwmark, false)
            }
            Err(e) => Err(e),
        }
    }

    fn bind_family(port: u16, fwmark: u32, v6: bool) -> io::Result<UdpSocket> {
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just opened and is owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let rfd = fd.as_raw_fd();
        // Blocking on purpose: a full socket buffer makes the sender wait
        // (back-pressure to TCP inside the tunnel) instead of dropping.
        // Receives never block: recvmmsg runs with MSG_DONTWAIT after poll.
        if v6 {
            setsockopt_int(rfd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)?;
        }
        if fwmark != 0 {
            setsockopt_int(rfd, libc::SOL_SOCKET, libc::SO_MARK, fwmark as libc::c_int)?;
        }
        // Deep buffers absorb bursts while a loop is busy encrypting; the
        // FORCE variants work as root, the plain ones are the fallback.
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if setsockopt_int(rfd, libc::SOL_SOCKET, force, 7 << 20).is_err() {
                let _ = setsockopt_int(rfd, libc::SOL_SOCKET, plain, 7 << 20);
            }
        }
        let gro = setsockopt_int(rfd, libc::SOL_UDP, UDP_GRO, 1).is_ok();
        // The local address of each datagram, to answer from it (sticky source).
        if let Err(e) = pktinfo::enable(rfd, v6) {
            log::warn!("UDP port {port}: no IP_PKTINFO ({e}); replies leave from the OS's choice");
        }
        let any = if v6 {
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))
        } else {
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
        };
        let (ss, len) = to_sockaddr(any, v6);
        // SAFETY: ss/len describe a valid socket address of the socket's family.
        if unsafe { libc::bind(rfd, (&ss as *const libc::sockaddr_storage).cast(), len) } < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("bind UDP port {port}: {e}"),
            ));
        }
        // SAFETY: sockaddr_storage is POD; getsockname writes at most `len` bytes.
        let mut bound: libc::sockaddr_storage = unsafe { zeroed() };
        let mut blen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: bound/blen are valid for writing.
        if unsafe {
            libc::getsockname(
                rfd,
                (&mut bound as *mut libc::sockaddr_storage).cast(),
                &mut blen,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        let port = from_sockaddr(&bound).map(|a| a.port()).unwrap_or(port);
        Ok(UdpSocket {
            fd,
            fwmark: std::sync::atomic::AtomicU32::new(fwmark),
            v6,
            gso: std::sync::atomic::AtomicBool::new(true),
            gro,
            port,
        })
    }

    pub fn fwmark(&self) -> u32 {
        self.fwmark.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Set SO_MARK on the socket (0 clears it): later sends carry the new mark.
    pub fn set_fwmark(&self, mark: u32) -> io::Result<()> {
        setsockopt_int(
            self.fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            mark as libc::c_int,
        )?;
        self.fwmark
            .store(mark, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The bound port (the kernel's choice when 0 was asked for).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether received slots may hold several datagrams (UDP_GRO accepted).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Send one datagram.
    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<()> {
        let (ss, len) = to_sockaddr(to, self.v6);
        // SAFETY: buf and the address are valid for the duration of the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&ss as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Send one datagram from `from` (None: the OS chooses the source; see `pktinfo`).
    pub fn send_to_from(
        &self,
        buf: &[u8],
        to: SocketAddr,
        from: Option<LocalAddr>,
    ) -> io::Result<()> {
        match from {
            None => self.send_to(buf, to),
            Some(local) => self.send_msg(buf, to, None, Some(local)),
        }
    }

    /// Send `buf` as datagrams of `segment` bytes each (the last may be
    /// shorter) to one destination: one sendmsg with UDP_SEGMENT when the
    /// kernel takes it, else one sendto per datagram.
    pub fn send_segments(&self, buf: &[u8], segment: usize, to: SocketAddr) -> io::Result<()> {
        self.send_segments_from(buf, segment, to, None)
    }

    /// `send_segments` from the local address `from` (None: the OS chooses). A refused source
    /// is returned as the error (EINVAL included, which then says nothing about GSO), for the
    /// caller to forget it and send again without.
    pub fn send_segments_from(
        &self,
        buf: &[u8],
        segment: usize,
        to: SocketAddr,
        from: Option<LocalAddr>,
    ) -> io::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut last = Ok(());
        // One GSO send is one UDP "super-datagram": at most 64 segments and,
        // with its headers, at most 64 KiB.
        let per_send = MAX_GSO_SEGMENTS.min(MAX_GSO_BYTES / segment.max(1)).max(1);
        for run in buf.chunks(segment * per_send) {
            if run.len() <= segment {
                if let Err(e) = self.send_to_from(run, to, from) {
                    last = Err(e);
                }
                continue;
            }
            if self.gso.load(Relaxed) {
                match self.send_msg(run, to, Some(segment), from) {
                    Ok(()) => continue,
                    // With a source asked for, EINVAL is more likely the source (removed) than
                    // GSO: let the caller retry without it before judging GSO.
                    Err(e) if from.is_some() && pktinfo::source_refused(&e) => return Err(e),
                    // EIO: the route's device cannot checksum; EINVAL/ENOPROTOOPT: no GSO.
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT)
                        ) =>
                    {
                        log::info!("UDP GSO unavailable ({e}); sending datagrams one by one");
                        self.gso.store(false, Relaxed);
                    }
                    // EMSGSIZE: a segment is larger than the path allows, which GSO may not
                    // fragment; sent alone, the kernel may (IPv6 at the source). GSO stays on.
                    Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                        log::debug!("UDP GSO send of {segment}-byte segments: {e}; one by one");
                    }
                    Err(e) => {
                        last = Err(e);
                        continue;
                    }
                }
            }
            for chunk in run.chunks(segment) {
                if let Err(e) = self.send_to_from(chunk, to, from) {
                    last = Err(e);
                }
            }
        }
        last
    }

    /// One sendmsg: with UDP_SEGMENT when `segment` is given (GSO), with a pktinfo source when
    /// `from` is.
    fn send_msg(
        &self,
        buf: &[u8],
        to: SocketAddr,
        segment: Option<usize>,
        from: Option<LocalAddr>,
    ) -> io::Result<()> {
        let (mut ss, len) = to_sockaddr(to, self.v6);
        let mut iov = libc::iovec {
            iov_base: buf.as_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        #[repr(C, align(8))]
        struct Cmsg([u8; SEGMENT_SPACE + pktinfo::PKTINFO_SPACE]);
        let mut cbuf = Cmsg([0; SEGMENT_SPACE + pktinfo::PKTINFO_SPACE]);
        // SAFETY: msghdr is POD; every pointer stored in it points at locals that outlive sendmsg.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        let mut used = 0;
        if let Some(segment) = segment {
            // SAFETY: the control buffer is aligned, zeroed and has SEGMENT_SPACE bytes first.
            unsafe {
                let c = cbuf.0.as_mut_ptr().cast::<libc::cmsghdr>();
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment as u16);
            }
            // The next message starts where CMSG_NXTHDR looks for it: the target's alignment.
            used += pktinfo::cmsg_space(size_of::<u16>());
        }
        if let Some(local) = from {
            // SAFETY: `used` is a CMSG_SPACE, so aligned for a cmsghdr, and PKTINFO_SPACE zeroed
            // bytes follow it.
            used += unsafe { pktinfo::write(cbuf.0.as_mut_ptr().add(used).cast(), local, to) };
        }
        if used == 0 {
            msg.msg_control = std::ptr::null_mut();
        }
        msg.msg_controllen = used;
        // SAFETY: msg is fully initialised above.
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Control space of one UDP_SEGMENT (u16) or UDP_GRO (int) message: CMSG_SPACE of the larger,
/// for the target's ABI (24 bytes on 64-bit targets, 16 on armhf).
const SEGMENT_SPACE: usize = pktinfo::cmsg_space(size_of::<libc::c_int>());

/// Per receive slot: UDP_GRO and one pktinfo message, with room to spare.
type Control = [u64; (2 * SEGMENT_SPACE + pktinfo::PKTINFO_SPACE).div_ceil(8)];

/// Preallocated receive slots for recvmmsg: buffers, addresses, control
/// space and the kernel's header arrays, built once and reused forever.
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<Control>,
    /// Valid after `recv`: the local address each slot's datagrams arrived on (pktinfo).
    locals: Vec<Option<LocalAddr>>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Valid after `recv`: the GRO segment size of each slot (its length when not coalesced).
    seg: Vec<usize>,
    count: usize,
}

// SAFETY: the raw pointers inside iovs/hdrs point only into this struct's own
// heap allocations (which move with it); nothing is shared.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    pub fn new(slots: usize, slot_size: usize) -> RecvBatch {
        // SAFETY: sockaddr_storage and mmsghdr are POD; zero is valid.
        let zero_ss: libc::sockaddr_storage = unsafe { zeroed() };
        let mut b = RecvBatch {
            bufs: (0..slots)
                .map(|_| vec![0u8; slot_size].into_boxed_slice())
                .collect(),
            addrs: vec![zero_ss; slots],
            cmsgs: vec![[0u64; size_of::<Control>() / 8]; slots],
            locals: vec![None; slots],
            iovs: Vec::with_capacity(slots),
            // SAFETY: as above.
            hdrs: (0..slots).map(|_| unsafe { zeroed() }).collect(),
            seg: vec![0; slots],
            count: 0,
        };
        for i in 0..slots {
            b.iovs.push(libc::iovec {
                iov_base: b.bufs[i].as_mut_ptr().cast(),
                iov_len: slot_size,
            });
        }
        b
    }

    /// The capacity of one slot.
    pub fn slot_size(&self) -> usize {
        self.bufs.first().map_or(0, |b| b.len())
    }

    /// Slots filled by the last `recv`.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Slot `i`: its sender, its bytes, and the size of each datagram in it
    /// (GRO packs several same-size datagrams, the last possibly shorter).
    pub fn slot(&mut self, i: usize) -> (Option<SocketAddr>, &mut [u8], usize) {
        let len = self.hdrs[i].msg_len as usize;
        (
            from_sockaddr(&self.addrs[i]),
            &mut self.bufs[i][..len],
            self.seg[i],
        )
    }

    /// The bytes of every slot the last `recv` filled, all at once, so that several threads can
    /// work on different slots.
    pub fn filled_mut(&mut self) -> impl Iterator<Item = &mut [u8]> + '_ {
        self.bufs
            .iter_mut()
            .zip(self.hdrs.iter())
            .take(self.count)
            .map(|(buf, hdr)| &mut buf[..hdr.msg_len as usize])
    }

    /// The local address slot `i`'s datagrams arrived on (None: no pktinfo message).
    pub fn local(&self, i: usize) -> Option<LocalAddr> {
        self.locals[i]
    }

    /// Receive up to the batch size without blocking; Ok(0) when nothing is queued.
    pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let slots = self.bufs.len();
        for i in 0..slots {
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = size_of::<Control>();
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at buffers owned by self, sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                slots as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.count = 0;
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        for i in 0..n {
            let len = self.hdrs[i].msg_len as usize;
            let mut seg = len;
            let mut local = None;
            let h = &self.hdrs[i].msg_hdr;
            // SAFETY: walking the control messages the kernel wrote into our buffer,
            // bounded by msg_controllen via the CMSG_* macros.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                        let s = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                        if s > 0 {
                            seg = s as usize;
                        }
                    } else if let Some(l) = pktinfo::parse(c) {
                        local = Some(l);
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
            self.seg[i] = seg.max(1);
            self.locals[i] = local;
        }
        self.count = n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GSO send from a chosen source carries two control messages; the second must start
    /// where the target's CMSG_NXTHDR finds it (offset 16 on armhf, 24 on 64-bit targets), or the
    /// kernel refuses the send (EINVAL, which then reads as a refused source).
    #[test]
    fn a_gso_send_from_a_chosen_source_arrives() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let to = receiver.local_addr().unwrap();
        let sender = UdpSocket::bind(0, 0).unwrap();
        let from = LocalAddr {
            ip: "127.0.0.1".parse().unwrap(),
            ifindex: 0,
        };
        let payload: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        // The GSO path itself, not its one-by-one fallback.
        sender
            .send_msg(&payload, to, Some(100), Some(from))
            .expect("sendmsg with UDP_SEGMENT and IP_PKTINFO");
        let mut buf = [0u8; 512];
        for chunk in payload.chunks(100) {
            let (n, src) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], chunk);
            assert_eq!(src.ip(), from.ip);
        }
    }
}
