//! The TUN device: /dev/net/tun opened with raw ioctls.
//!
//! The `tun` crate can create a device but leaves out what throughput needs:
//! it sets IFF_VNET_HDR without TUNSETVNETHDRSZ / TUNSETOFFLOAD, and cannot open
//! extra queues. The handful of ioctls below are all we need, so the device is
//! opened directly. With IFF_VNET_HDR and TSO offloads the kernel hands us TCP
//! "super-packets" of up to 64 KiB (one read instead of ~45) and accepts
//! coalesced ones back; see `offload.rs` for what we do with them.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Size of `struct virtio_net_hdr` (without num_buffers), which precedes every
/// packet read from or written to a TUN opened with IFF_VNET_HDR.
pub const VNET_HDR_LEN: usize = 10;

/// The largest packet the TUN can hand us with TSO (IP total length is 16 bits).
pub const MAX_SUPER_PACKET: usize = 65535;

#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[repr(C)]
struct IfReqMtu {
    name: [libc::c_char; libc::IFNAMSIZ],
    mtu: libc::c_int,
    _pad: [u8; 20],
}

/// One queue of a TUN device.
pub struct Tun {
    fd: OwnedFd,
    name: String,
    offload: bool,
}

fn ifname(name: &str) -> io::Result<[libc::c_char; libc::IFNAMSIZ]> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?} (1 to 15 bytes, no '/', space or NUL)"),
        ));
    }
    let mut out = [0 as libc::c_char; libc::IFNAMSIZ];
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b as libc::c_char;
    }
    Ok(out)
}

impl Tun {
    /// Create (or attach to) the TUN interface `name`. With `offload`, the
    /// device carries virtio-net headers and accepts TSO4/TSO6 super-packets
    /// and partial checksums; if the kernel refuses the offloads the device
    /// falls back to plain packets (`offload()` then says false).
    pub fn create(name: &str, offload: bool) -> io::Result<Tun> {
        let req_name = ifname(name)?;
        // SAFETY: a NUL-terminated path literal; open(2) has no other preconditions.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if raw < 0 {
            return Err(io::Error::new(
                io::Error::last_os_error().kind(),
                format!("open /dev/net/tun: {}", io::Error::last_os_error()),
            ));
        }
        // SAFETY: `raw` is a freshly opened descriptor we exclusively own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if offload {
            flags |= libc::IFF_VNET_HDR;
        }
        let mut req = IfReqFlags {
            name: req_name,
            flags: flags as libc::c_short,
            _pad: [0; 22],
        };
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which IfReqFlags
        // lays out (name, then the flags union member), and it lives across the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
        }
        // SAFETY: the kernel NUL-terminates ifr_name within IFNAMSIZ.
        let actual = unsafe { CStr::from_ptr(req.name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let mut tun = Tun {
            fd,
            name: actual,
            offload: false,
        };
        if offload {
            tun.offload = tun.enable_offload().is_ok();
        }
        Ok(tun)
    }

    fn enable_offload(&self) -> io::Result<()> {
        let hdr_len: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer, valid for the call.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        // SAFETY: TUNSETOFFLOAD takes the feature bits as the integer argument itself.
        if unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                features as libc::c_ulong,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The interface name the kernel gave (the requested one, or `tunN` for a pattern).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether packets carry a virtio-net header (IFF_VNET_HDR + TSO accepted).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Read one packet (non-blocking: `WouldBlock` when the queue is empty).
    /// With offload, `buf` starts with the virtio-net header.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is a valid writable region of buf.len() bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Write one packet (with its virtio-net header when offload is on).
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: buf is a valid readable region of buf.len() bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Set the interface MTU (through an AF_INET control socket, as ip(8) does).
    pub fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        let mut req = IfReqMtu {
            name: ifname(&self.name)?,
            mtu: mtu as libc::c_int,
            _pad: [0; 20],
        };
        // SAFETY: plain socket(2) call.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `s` was just opened and is owned here.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        // SAFETY: SIOCSIFMTU reads a `struct ifreq` with ifr_mtu, laid out by IfReqMtu.
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFMTU, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
