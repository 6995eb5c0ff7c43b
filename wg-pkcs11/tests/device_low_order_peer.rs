//! Issue 20, finding 7: a peer whose public key is a small-order point can never complete a
//! handshake (every static-static DH with it is all zeros), yet each packet routed to it asked
//! for an initiation that cost the token one ECDH, queued ahead of every incoming handshake.
//! `set_peer` refuses such a key (as it ignores our own key). Needs root (a network namespace).

mod device_support;

use std::sync::Arc;

use device_support::*;
use wg_pkcs11::device::{DeviceConfig, PeerConfig};
use wg_pkcs11::key::soft::SoftKey;
use wg_pkcs11::key::StaticKey;

fn peer_with(key: [u8; 32], allowed: &str) -> PeerConfig {
    PeerConfig {
        public_key: key,
        preshared_key: None,
        endpoint: Some("192.0.2.9:51820".parse().unwrap()),
        allowed_ips: vec![(allowed.parse().unwrap(), 32)],
        persistent_keepalive: 0,
    }
}

#[test]
fn a_small_order_peer_key_is_refused_and_costs_no_token_operation() {
    let ns = Netns::new("wglo");
    let key: Arc<dyn StaticKey> = Arc::new(SoftKey::generate());
    let mut config = DeviceConfig::new(&unique("wglo"), key);
    // 0 and the order-8 point (from the low-order list), the latter with its ignored top bit
    // set: both are small-order.
    let zero = [0u8; 32];
    let mut order8 = [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ];
    order8[31] |= 0x80;
    let good = SoftKey::generate().public_key();
    config.peers.push(peer_with(zero, "10.15.0.2"));
    config.peers.push(peer_with(order8, "10.15.0.3"));
    config.peers.push(peer_with(good, "10.15.0.4"));
    let device = start_device(&ns, config, "10.15.0.1/24", "fd15::1/64");
    assert_eq!(device.peer_keys(), vec![good]);
    // Added at run time (wg set) too.
    device.set_peer(&peer_with(zero, "10.15.0.5"));
    assert_eq!(device.peer_keys(), vec![good]);
    assert!(!device.force_handshake(&zero));
    // Traffic toward the refused peers' addresses finds no route, and no token operation.
    let _ = ns.exec("ping", &["-c", "3", "-i", "0.2", "-W", "1", "10.15.0.2"]);
    assert!(
        wait_for(10, || device.counters().token_operations >= 1),
        "the good peer's static-static DH"
    );
    assert_eq!(
        device.counters().token_operations,
        1,
        "{:?}",
        device.counters()
    );
}
