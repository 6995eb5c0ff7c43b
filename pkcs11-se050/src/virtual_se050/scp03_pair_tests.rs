//! The driver's PlatformSCP03 transport against the chip's own SCP03 side (se050_sim::scp03,
//! written separately from GP Amendment D): every mix of commands with and without data, and
//! responses with and without data, must come through. A host whose encryption counter or
//! response IV differed from the chip's would fail here.

use super::applet::{InProcessTransport, VirtualApplet};
use super::scp03::PlatformScp03;
use crate::scp03::keys::{StaticKeys, DEFAULT_KVN};
use crate::scp03::Scp03Transport;
use crate::t1::ApduTransport;

fn channel() -> Scp03Transport<InProcessTransport<PlatformScp03>> {
    let keys = StaticKeys::random();
    let chip = PlatformScp03::new(
        Box::new(VirtualApplet::in_memory()),
        &keys,
        DEFAULT_KVN,
        None,
        true,
    );
    Scp03Transport::new(InProcessTransport::new(chip), keys, DEFAULT_KVN)
}

fn ok(response: &[u8]) -> &[u8] {
    let n = response.len();
    assert_eq!(response[n - 2..], [0x90, 0x00], "{response:02X?}");
    &response[..n - 2]
}

#[test]
fn commands_with_and_without_data_in_every_order_come_through() {
    let mut t = channel();
    let version = [0x80, 0x04, 0x00, 0x20, 0x00];
    let exists_unique_id = [
        0x80, 0x04, 0x00, 0x27, 0x06, 0x41, 0x04, 0x7F, 0xFF, 0x02, 0x06, 0x00,
    ];
    let random_16 = [0x80, 0x04, 0x00, 0x49, 0x04, 0x41, 0x02, 0x00, 0x10, 0x00];
    // Data-less first (the counter has not moved), then data, then data-less twice, ...
    for command in [
        &version[..],
        &exists_unique_id,
        &version,
        &version,
        &random_16,
        &exists_unique_id,
        &version,
        &random_16,
    ] {
        let response = t.transceive(command).unwrap();
        let data = ok(&response);
        match command[3] {
            0x20 => assert_eq!(data[..2], [0x41, 0x07]),
            0x27 => assert_eq!(data, [0x41, 0x01, 0x01]),
            _ => assert_eq!(data[..2], [0x41, 0x10]),
        }
    }
}
