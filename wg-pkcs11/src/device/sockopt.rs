//! Setting a socket option that takes one `c_int` (what the UDP socket and its pktinfo option
//! need): the one `setsockopt` call, shared by `udp.rs` and `pktinfo.rs`.

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;

pub(super) fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int living across the call, its size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
