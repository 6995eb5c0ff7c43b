//! The TUN device: created with the `tun` crate, tuned with two ioctls it lacks.
//!
//! The `tun` crate creates the interface (TUNSETIFF, with IFF_VNET_HDR when we ask) but leaves
//! out what throughput needs: TUNSETVNETHDRSZ and TUNSETOFFLOAD. Those two ioctls are done here,
//! on the descriptor the crate hands over. With IFF_VNET_HDR and TSO offloads the kernel hands
//! us TCP "super-packets" of up to 64 KiB (one read instead of ~45) and accepts coalesced ones
//! back; see `offload.rs` for what we do with them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// Size of `struct virtio_net_hdr` (without num_buffers), which precedes every
/// packet read from or written to a TUN opened with IFF_VNET_HDR.
pub const VNET_HDR_LEN: usize = 10;

/// The largest packet the TUN can hand us with TSO (IP total length is 16 bits).
pub const MAX_SUPER_PACKET: usize = 65535;

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
    /// UDP segmentation offload accepted too (TUN_F_USO4/USO6, Linux 6.2+).
    uso: bool,
}

// Not in the libc crate yet (include/uapi/linux/if_tun.h, Linux 6.2).
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

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

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own; no pointers involved.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Tun {
    /// Create (or attach to) the TUN interface `name`. With `offload`, the
    /// device carries virtio-net headers and accepts TSO4/TSO6 super-packets
    /// and partial checksums; if the kernel refuses the offloads the device
    /// falls back to plain packets (`offload()` then says false).
    pub fn create(name: &str, offload: bool) -> io::Result<Tun> {
        ifname(name)?;
        let mut config = tun::Configuration::default();
        config
            .tun_name(name)
            .layer(tun::Layer::L3)
            .platform_config(|p| {
                p.vnet_hdr(offload);
                // Addresses, MTU and link state are netconfig's (ip(8)), not the crate's.
                p.ensure_root_privileges(false);
            });
        let device = tun::create(&config)
            .map_err(|e| io::Error::other(format!("creating TUN {name}: {e}")))?;
        let actual = tun::AbstractDevice::tun_name(&device)
            .map_err(|e| io::Error::other(format!("TUN {name}: {e}")))?;
        // SAFETY: into_raw_fd hands over the crate's descriptor (it will not close it); we are
        // its only owner from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(device.into_raw_fd()) };
        set_nonblocking(&fd)?;
        let mut tun = Tun {
            fd,
            name: actual,
            offload,
            uso: false,
        };
        if offload {
            // USO where the kernel has it; older kernels refuse the unknown bits (EINVAL) and
            // get the TCP offloads alone.
            tun.uso = tun.enable_offload(TUN_F_USO4 | TUN_F_USO6).is_ok();
        }
        if offload && !tun.uso {
            if let Err(e) = tun.enable_offload(0) {
                // Headers without the offloads would only cost: start again without them
                // (closing the only descriptor removes the interface).
                log::info!("TUN {name}: offloads refused ({e}); packets go one by one");
                drop(tun);
                return Tun::create(name, false);
            }
        }
        Ok(tun)
    }

    /// TUNSETVNETHDRSZ, and TUNSETOFFLOAD with checksums, TSO4/6 and `extra` feature bits.
    fn enable_offload(&self, extra: libc::c_uint) -> io::Result<()> {
        let hdr_len: libc::c_int = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer, valid for the call.
        if unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | extra;
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

    /// Whether UDP super-datagrams (VIRTIO_NET_HDR_GSO_UDP_L4) pass in both directions.
    pub fn uso(&self) -> bool {
        self.uso
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
        self.mtu_ioctl(libc::SIOCSIFMTU, mtu as libc::c_int)
            .map(drop)
    }

    /// The interface MTU as it is now (ip(8) or wg-quick may change it at any time).
    pub fn mtu(&self) -> io::Result<u32> {
        self.mtu_ioctl(libc::SIOCGIFMTU, 0).map(|mtu| mtu as u32)
    }

    fn mtu_ioctl(&self, request: libc::c_ulong, mtu: libc::c_int) -> io::Result<libc::c_int> {
        let mut req = IfReqMtu {
            name: ifname(&self.name)?,
            mtu,
            _pad: [0; 20],
        };
        // SAFETY: plain socket(2) call.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `s` was just opened and is owned here.
        let s = unsafe { OwnedFd::from_raw_fd(s) };
        // SAFETY: SIOCSIFMTU and SIOCGIFMTU take a `struct ifreq` with ifr_mtu, laid out by
        // IfReqMtu, which lives across the call.
        if unsafe { libc::ioctl(s.as_raw_fd(), request, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(req.mtu)
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
