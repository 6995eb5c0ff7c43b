//! The device side of a USB I2C adapter, as a gadgetfs program on the guest's dummy_hcd (an
//! emulated USB host and device controller joined inside the guest's kernel). The guest's own
//! driver for that adapter binds to it and registers a real I2C adapter, so that `/dev/i2c-N`,
//! i2c-dev, the i2c core and its tracepoints are the kernel's own code; each I2C message the
//! driver sends is relayed to the host, where the virtual SE050 answers it.
//!
//! Two adapters, both speaking vendor control requests on endpoint 0 (wIndex the 7-bit
//! address, wValue the message flags, one message per request, then a status request):
//! - `osif`: RobotFuzz OSIF (drivers/i2c/busses/i2c-robotfuzz-osif.c), whose driver reports an
//!   address NACK as EREMOTEIO, as the Raspberry Pi's i2c-bcm2835 does;
//! - `tiny-usb`: i2c-tiny-usb (drivers/i2c/busses/i2c-tiny-usb.c), which says ENXIO, as most
//!   bus drivers do.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;

use crate::relay_wire::{ACK, NAK, READ, WRITE};

/// gadgetfs names ep0's file after the device controller.
const EP0: &str = "/dev/gadget/dummy_udc";

/// Which adapter this program is.
#[derive(Clone, Copy)]
pub enum Adapter {
    Osif,
    TinyUsb,
}

impl Adapter {
    pub fn parse(name: &str) -> Result<Adapter, String> {
        match name {
            "osif" => Ok(Adapter::Osif),
            "tiny-usb" => Ok(Adapter::TinyUsb),
            other => Err(format!("unknown adapter {other:?} (osif or tiny-usb)")),
        }
    }

    /// The USB IDs its driver binds to.
    fn ids(self) -> (u16, u16) {
        match self {
            Adapter::Osif => (0x1964, 0x0001),
            // EZPrototypes' i2c-tiny-usb
            Adapter::TinyUsb => (0x1c40, 0x0534),
        }
    }

    /// The status byte for an address ACKed or NAKed.
    fn status(self, acked: bool) -> u8 {
        match (self, acked) {
            (Adapter::Osif, true) => 0,
            (Adapter::Osif, false) => 2,
            (Adapter::TinyUsb, true) => 1,
            (Adapter::TinyUsb, false) => 2,
        }
    }
}

// i2c-tiny-usb's requests
const TINY_ECHO: u8 = 0;
const TINY_GET_FUNC: u8 = 1;
const TINY_SET_DELAY: u8 = 2;
const TINY_GET_STATUS: u8 = 3;
const TINY_I2C_IO: u8 = 4; // | BEGIN (1) | END (2)
                           // RobotFuzz OSIF's requests
const OSIF_READ: u8 = 20;
const OSIF_WRITE: u8 = 21;
const OSIF_STOP: u8 = 22;
const OSIF_STATUS: u8 = 23;
const OSIF_SET_BIT_RATE: u8 = 24;

const I2C_M_RD: u16 = 0x0001;
/// I2C_FUNC_I2C | I2C_FUNC_SMBUS_EMUL (include/uapi/linux/i2c.h), for i2c-tiny-usb's
/// GET_FUNC (the OSIF driver says the same by itself).
const FUNCTIONALITY: u32 = 0x0000_0001 | 0x0eff_0008;

const USB_DIR_IN: u8 = 0x80;
const USB_TYPE_MASK: u8 = 0x60;
const USB_TYPE_VENDOR: u8 = 0x40;

/// enum usb_gadgetfs_event_type
const GADGETFS_CONNECT: u32 = 1;
const GADGETFS_DISCONNECT: u32 = 2;
const GADGETFS_SETUP: u32 = 3;
/// struct usb_gadgetfs_event: an 8-byte union (the SETUP packet) and the type.
const EVENT_SIZE: usize = 12;

/// What ep0 is configured with: tag 0, the full-speed configuration (one vendor-specific
/// interface, no endpoints: i2c-tiny-usb uses control transfers only), the device descriptor.
/// The vendor-specific device class makes gadgetfs hand every vendor request to this program.
fn descriptors(adapter: Adapter) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0];
    // configuration: wTotalLength 18, 1 interface, value 1, self-powered, 100 mA
    out.extend_from_slice(&[9, 2, 18, 0, 1, 1, 0, 0xc0, 50]);
    // interface 0, alt 0, no endpoints, class 0xff
    out.extend_from_slice(&[9, 4, 0, 0, 0, 0xff, 0, 0, 0]);
    // device: USB 2.0, class 0xff, ep0 64 bytes, the IDs, release 1.00, no strings, 1 config
    let (vendor, product) = adapter.ids();
    let [vl, vh] = vendor.to_le_bytes();
    let [pl, ph] = product.to_le_bytes();
    out.extend_from_slice(&[
        18, 1, 0x00, 0x02, 0xff, 0, 0, 64, vl, vh, pl, ph, 0x00, 0x01, 0, 0, 0, 1,
    ]);
    out
}

struct Setup {
    request_type: u8,
    request: u8,
    value: u16,
    index: u16,
    length: u16,
}

/// Serves the adapter until the relay or ep0 fails.
pub fn run(adapter: Adapter, relay_address: &str) -> Result<(), String> {
    let mut relay = TcpStream::connect(relay_address)
        .map_err(|e| format!("cannot reach the relay at {relay_address}: {e}"))?;
    relay.set_nodelay(true).ok();
    let mut ep0 = OpenOptions::new()
        .read(true)
        .write(true)
        .open(EP0)
        .map_err(|e| format!("cannot open {EP0} (gadgetfs mounted, dummy_hcd loaded?): {e}"))?;
    ep0.write_all(&descriptors(adapter))
        .map_err(|e| format!("{EP0} refused the descriptors: {e}"))?;
    run_first()?;
    let (vendor, product) = adapter.ids();
    eprintln!("gadget: {vendor:04x}:{product:04x} on {EP0}");
    let mut status = 0;
    let mut events = [0u8; EVENT_SIZE * 8];
    loop {
        let n = match ep0.read(&mut events) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(format!("reading {EP0}: {e}")),
        };
        for event in events[..n].chunks_exact(EVENT_SIZE) {
            let kind = u32::from_ne_bytes(event[8..12].try_into().unwrap());
            match kind {
                GADGETFS_SETUP => {
                    let setup = Setup {
                        request_type: event[0],
                        request: event[1],
                        value: u16::from_le_bytes([event[2], event[3]]),
                        index: u16::from_le_bytes([event[4], event[5]]),
                        length: u16::from_le_bytes([event[6], event[7]]),
                    };
                    if let Err(e) = handle(adapter, &mut ep0, &mut relay, &setup, &mut status) {
                        // A failed control transfer is the host driver's to report (-EIO);
                        // the adapter itself goes on.
                        eprintln!("gadget: request {:#04x}: {e}", setup.request);
                    }
                }
                GADGETFS_CONNECT => eprintln!("gadget: connected"),
                GADGETFS_DISCONNECT => eprintln!("gadget: disconnected"),
                _ => {}
            }
        }
    }
}

/// gadgetfs completes the data stage of a control OUT request (an I2C write) before this
/// program has read the data, and the host driver then sends CMD_GET_STATUS; if that SETUP
/// reaches gadgetfs before the data was read, gadgetfs drops the data (EIDRM) and its ep0 stays
/// busy for good. At real-time priority on the guest's one CPU (qemu -smp 1) this program runs
/// before the host driver's thread can submit the next request, and it blocks only after it
/// has the data (waiting for the relay), so that order cannot happen.
fn run_first() -> Result<(), String> {
    let param = libc::sched_param { sched_priority: 50 };
    // SAFETY: sched_setscheduler(2) on this process with a valid, initialised sched_param.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if r != 0 {
        return Err(format!(
            "cannot run at real-time priority: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn handle(
    adapter: Adapter,
    ep0: &mut File,
    relay: &mut TcpStream,
    setup: &Setup,
    status: &mut u8,
) -> Result<(), String> {
    let device_to_host = setup.request_type & USB_DIR_IN != 0;
    if setup.request_type & USB_TYPE_MASK != USB_TYPE_VENDOR {
        // Standard requests gadgetfs passes on (SET_CONFIGURATION, SET_INTERFACE): accepted.
        return if device_to_host {
            stall(ep0, true)
        } else {
            ack(ep0)
        };
    }
    let message = match (adapter, setup.request) {
        (Adapter::TinyUsb, request) if request & !3 == TINY_I2C_IO => true,
        (Adapter::Osif, OSIF_READ | OSIF_WRITE) => true,
        _ => false,
    };
    if message {
        let acked = relay_message(ep0, relay, setup)?;
        *status = adapter.status(acked);
        return Ok(());
    }
    match (adapter, setup.request, device_to_host) {
        (Adapter::TinyUsb, TINY_ECHO, true) => {
            answer(ep0, &setup.value.to_le_bytes(), setup.length)
        }
        (Adapter::TinyUsb, TINY_GET_FUNC, true) => {
            answer(ep0, &FUNCTIONALITY.to_le_bytes(), setup.length)
        }
        (Adapter::TinyUsb, TINY_GET_STATUS, true) | (Adapter::Osif, OSIF_STATUS, true) => {
            answer(ep0, &[*status], setup.length)
        }
        (Adapter::TinyUsb, TINY_SET_DELAY, false)
        | (Adapter::Osif, OSIF_SET_BIT_RATE | OSIF_STOP, false) => ack(ep0),
        _ => stall(ep0, device_to_host),
    }
}

/// One I2C message: a read answered with what the chip sent (0xFF after a NACK, as an idle bus
/// reads), a write's data collected and handed on. Returns whether the address was ACKed.
fn relay_message(ep0: &mut File, relay: &mut TcpStream, setup: &Setup) -> Result<bool, String> {
    let address = (setup.index & 0x7f) as u8;
    let len = setup.length as usize;
    if setup.value & I2C_M_RD != 0 {
        let (acked, data) = relay_read(relay, address, len)?;
        answer(ep0, &data, setup.length)?;
        Ok(acked)
    } else {
        let data = if len > 0 {
            let mut buf = vec![0u8; len];
            let got = ep0
                .read(&mut buf)
                .map_err(|e| format!("reading the write's data: {e}"))?;
            buf.truncate(got);
            buf
        } else {
            ack(ep0)?;
            Vec::new()
        };
        relay_write(relay, address, &data)
    }
}

/// The data stage of an IN request (at most wLength bytes).
fn answer(ep0: &mut File, data: &[u8], max: u16) -> Result<(), String> {
    let n = data.len().min(max as usize);
    ep0.write_all(&data[..n])
        .map_err(|e| format!("answering: {e}"))
}

/// The status stage of an OUT request without data.
fn ack(ep0: &mut File) -> Result<(), String> {
    // SAFETY: a zero-length read on ep0's descriptor (gadgetfs: "ack"), no buffer touched.
    let r = unsafe { libc::read(ep0.as_raw_fd(), std::ptr::null_mut(), 0) };
    if r < 0 {
        return Err(format!(
            "acknowledging: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Refuses a request: I/O in the direction opposite to the request's stalls ep0 (gadgetfs).
fn stall(ep0: &mut File, device_to_host: bool) -> Result<(), String> {
    // SAFETY: a zero-length read or write on ep0's descriptor, with a valid (empty) buffer.
    let r = unsafe {
        if device_to_host {
            libc::read(ep0.as_raw_fd(), std::ptr::null_mut(), 0)
        } else {
            libc::write(ep0.as_raw_fd(), std::ptr::null(), 0)
        }
    };
    let _ = r; // EL2HLT is how gadgetfs says it stalled
    Ok(())
}

fn relay_write(relay: &mut TcpStream, address: u8, data: &[u8]) -> Result<bool, String> {
    let mut request = vec![WRITE, address];
    request.extend_from_slice(&(data.len() as u16).to_le_bytes());
    request.extend_from_slice(data);
    relay
        .write_all(&request)
        .map_err(|e| format!("relay: {e}"))?;
    let mut answer = [0u8; 1];
    relay
        .read_exact(&mut answer)
        .map_err(|e| format!("relay: {e}"))?;
    Ok(answer[0] == ACK)
}

fn relay_read(relay: &mut TcpStream, address: u8, len: usize) -> Result<(bool, Vec<u8>), String> {
    let mut request = vec![READ, address];
    request.extend_from_slice(&(len as u16).to_le_bytes());
    relay
        .write_all(&request)
        .map_err(|e| format!("relay: {e}"))?;
    let mut answer = vec![0u8; 1 + len];
    relay
        .read_exact(&mut answer)
        .map_err(|e| format!("relay: {e}"))?;
    let acked = match answer[0] {
        ACK => true,
        NAK => false,
        other => return Err(format!("relay answered {other:#04x}")),
    };
    Ok((acked, answer.split_off(1)))
}
