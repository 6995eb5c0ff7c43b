//! Issue 20, finding 7: the sticky source is forgotten when the route to the peer changes, as
//! the kernel's send4/send6 forget it when the route no longer leaves through the interface it
//! was learned on. A server with a secondary address on its first link answers a client that
//! contacted that address (sticky source); then the route to the client moves to a second link:
//! the server's packets must leave from that link's address (the OS's choice), not from the
//! first link's secondary address, and the client's endpoint follows. Both devices are
//! wg-pkcs11 with software keys. Needs root.

mod device_support;

use std::net::SocketAddr;
use std::sync::Arc;

use device_support::*;
use wg_pkcs11::device::{Device, DeviceConfig, PeerConfig};
use wg_pkcs11::key::soft::SoftKey;
use wg_pkcs11::key::StaticKey;

fn endpoint_of(dev: &Device, peer: &[u8; 32]) -> Option<SocketAddr> {
    dev.peer_info(peer).and_then(|p| p.endpoint)
}

/// The veth interface of a Pair namespace.
fn veth(ns: &Netns) -> String {
    let out = ns.ip(&["-o", "link", "show", "type", "veth"]);
    let line = out.lines().next().expect("a veth in the namespace");
    let name = line.split(':').nth(1).expect("ip -o link format").trim();
    name.split('@').next().unwrap().to_string()
}

#[test]
fn a_route_moving_to_another_interface_makes_the_server_forget_its_sticky_source() {
    let pair = Pair::new();
    let server_if = veth(&pair.a);
    let net = pair.a_addr.rsplit_once('.').unwrap().0.to_string();
    let secondary = format!("{net}.5");
    pair.a
        .ip(&["addr", "add", &format!("{secondary}/24"), "dev", &server_if]);
    // A second link between the namespaces.
    let (second_a, second_b) = (unique("vx"), unique("vy"));
    must(
        "ip",
        &[
            "link",
            "add",
            &second_a,
            "netns",
            &pair.a.name,
            "type",
            "veth",
            "peer",
            "name",
            &second_b,
            "netns",
            &pair.b.name,
        ],
    );
    let sub = (std::process::id() % 200) as u8 + 20;
    let second_addr = format!("172.31.{sub}.1");
    pair.a.ip(&[
        "addr",
        "add",
        &format!("{second_addr}/24"),
        "dev",
        &second_a,
    ]);
    pair.b.ip(&[
        "addr",
        "add",
        &format!("172.31.{sub}.2/24"),
        "dev",
        &second_b,
    ]);
    pair.a.ip(&["link", "set", &second_a, "up"]);
    pair.b.ip(&["link", "set", &second_b, "up"]);

    let server_key = Arc::new(SoftKey::generate());
    let client_key = Arc::new(SoftKey::generate());
    let (server_pub, client_pub) = (server_key.public_key(), client_key.public_key());
    let port = 20000 + (std::process::id() % 10000) as u16 * 2;
    let at = |addr: &str| -> SocketAddr { format!("{addr}:{port}").parse().unwrap() };
    let mut sc = DeviceConfig::new(&unique("wgrs"), server_key);
    sc.listen_port = port;
    sc.peers.push(PeerConfig {
        public_key: client_pub,
        preshared_key: None,
        endpoint: None,
        allowed_ips: vec![("10.16.0.2".parse().unwrap(), 32)],
        persistent_keepalive: 0,
    });
    let mut cc = DeviceConfig::new(&unique("wgrc"), client_key);
    cc.listen_port = port + 1;
    cc.peers.push(PeerConfig {
        public_key: server_pub,
        preshared_key: None,
        endpoint: Some(at(&secondary)),
        allowed_ips: vec![("10.16.0.1".parse().unwrap(), 32)],
        persistent_keepalive: 0,
    });
    let server = start_device(&pair.a, sc, "10.16.0.1/24", "fd16::1/64");
    let client = start_device(&pair.b, cc, "10.16.0.2/24", "fd16::2/64");
    assert!(ping_until(&pair.b, "10.16.0.1", 10), "tunnel up");
    assert!(
        ping(&pair.a, "10.16.0.2", 2),
        "the server reaches the client"
    );
    assert_eq!(
        endpoint_of(&client, &server_pub),
        Some(at(&secondary)),
        "the server answers from the contacted address"
    );

    // The route to the client now leaves through the second link.
    pair.a.ip(&[
        "route",
        "add",
        &format!("{}/32", pair.b_addr),
        "dev",
        &second_a,
    ]);
    // The server's own packets (no new datagram from the client teaches it a source first).
    let moved = wait_for(15, || {
        let _ = pair
            .a
            .exec("ping", &["-c", "1", "-W", "1", "-q", "10.16.0.2"]);
        endpoint_of(&client, &server_pub) == Some(at(&second_addr))
    });
    assert!(
        moved,
        "the server still sends from {:?}, not from the second link's address {second_addr}",
        endpoint_of(&client, &server_pub)
    );
    server.stop();
    client.stop();
}
