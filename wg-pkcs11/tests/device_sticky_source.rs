//! Sticky source addresses (IP_PKTINFO / IPV6_PKTINFO), in network namespaces: a server whose
//! interface has two addresses, a client that contacts the secondary one. The server's replies
//! (the handshake response, then transport packets) must leave from the address the client
//! contacted, not the one the OS would choose (the primary): the client's device follows the
//! source of every authenticated packet (roaming), so its endpoint for the server shows where
//! the replies came from. Then the secondary address is removed: the server's next send from it
//! is refused, it forgets it and the OS chooses (the primary), and the tunnel keeps working.
//! Both devices are wg-pkcs11 with software keys. Needs root.

mod device_support;

use std::net::SocketAddr;
use std::sync::Arc;

use device_support::*;
use wg_pkcs11::device::{Device, DeviceConfig, PeerConfig};
use wg_pkcs11::key::soft::SoftKey;
use wg_pkcs11::key::StaticKey;

/// The veth interface of a Pair namespace.
fn veth(ns: &Netns) -> String {
    let out = ns.ip(&["-o", "link", "show", "type", "veth"]);
    let line = out.lines().next().expect("a veth in the namespace");
    let name = line.split(':').nth(1).expect("ip -o link format").trim();
    name.split('@').next().unwrap().to_string()
}

fn endpoint_of(dev: &Device, peer: &[u8; 32]) -> Option<SocketAddr> {
    dev.peer_info(peer).and_then(|p| p.endpoint)
}

/// Server in `pair.a` (primary address from the Pair, secondary added here), client in
/// `pair.b` with the server's secondary address as its endpoint.
fn sticky_case(v6: bool, port_offset: u16) {
    let pair = Pair::new();
    let server_if = veth(&pair.a);
    let (primary, secondary, prefix) = if v6 {
        let secondary = pair.a_addr6.replace("::1", "::5");
        (pair.a_addr6.clone(), secondary, "64")
    } else {
        let secondary = pair.a_addr.rsplit_once('.').unwrap().0.to_string() + ".5";
        (pair.a_addr.clone(), secondary, "24")
    };
    let mut add = vec!["addr", "add"];
    let with_prefix = format!("{secondary}/{prefix}");
    add.extend([with_prefix.as_str(), "dev", server_if.as_str()]);
    if v6 {
        add.push("nodad");
    }
    pair.a.ip(&add);
    if v6 {
        // IPv6 picks among same-prefix addresses the newest (RFC 6724 rule 8 stops at the
        // prefix length): re-add the primary so that the OS's choice is the primary, as it is
        // for IPv4, and a reply from the secondary can only come from pktinfo.
        let p = format!("{primary}/64");
        pair.a.ip(&["addr", "del", &p, "dev", &server_if]);
        pair.a.ip(&["addr", "add", &p, "dev", &server_if, "nodad"]);
    }

    let server_key = Arc::new(SoftKey::generate());
    let client_key = Arc::new(SoftKey::generate());
    let (server_pub, client_pub) = (server_key.public_key(), client_key.public_key());
    let port = 30000 + (std::process::id() % 10000) as u16 * 2 + port_offset;
    let ip = |s: &str| -> String {
        if v6 {
            format!("[{s}]")
        } else {
            s.to_string()
        }
    };
    let at = |addr: &str| -> SocketAddr { format!("{}:{port}", ip(addr)).parse().unwrap() };

    let mut sc = DeviceConfig::new(&unique("wgss"), server_key);
    sc.listen_port = port;
    sc.peers.push(PeerConfig {
        public_key: client_pub,
        preshared_key: None,
        endpoint: None,
        allowed_ips: vec![("10.15.0.2".parse().unwrap(), 32)],
        persistent_keepalive: 0,
    });
    let mut cc = DeviceConfig::new(&unique("wgsc"), client_key);
    cc.listen_port = port + 1;
    cc.peers.push(PeerConfig {
        public_key: server_pub,
        preshared_key: None,
        endpoint: Some(at(&secondary)),
        allowed_ips: vec![("10.15.0.1".parse().unwrap(), 32)],
        persistent_keepalive: 0,
    });
    let server = start_device(&pair.a, sc, "10.15.0.1/24", "fd15::1/64");
    let client = start_device(&pair.b, cc, "10.15.0.2/24", "fd15::2/64");

    // The client initiates to the secondary address; the response must come from it, or the
    // client's endpoint moves to the primary.
    assert!(
        ping_until(&pair.b, "10.15.0.1", 10),
        "the client reaches the server through the tunnel"
    );
    assert_eq!(
        endpoint_of(&client, &server_pub),
        Some(at(&secondary)),
        "the handshake response and the replies came from the contacted address"
    );
    // Transport from the server (its own echo requests), not only replies.
    assert!(
        ping(&pair.a, "10.15.0.2", 3),
        "the server reaches the client"
    );
    assert_eq!(
        endpoint_of(&client, &server_pub),
        Some(at(&secondary)),
        "the server's transport packets leave from the contacted address"
    );

    // The floating address moves away: the server's sticky source is refused by the kernel; it
    // forgets it and sends from the OS's choice, the primary, and the client follows.
    pair.a.ip(&["addr", "del", &with_prefix, "dev", &server_if]);
    assert!(
        ping_until(&pair.a, "10.15.0.2", 10),
        "after the address is removed the server still reaches the client"
    );
    assert_eq!(
        endpoint_of(&client, &server_pub),
        Some(at(&primary)),
        "the server fell back to the address the OS chooses"
    );
    assert!(
        server
            .counters()
            .dropped(wg_pkcs11::device::DropReason::SendError)
            <= 1,
        "at most the one refused send is counted (the retry went out): {:?}",
        server.counters()
    );
    server.stop();
    client.stop();
}

#[test]
fn replies_leave_from_the_contacted_ipv4_address_and_fall_back_when_it_is_removed() {
    sticky_case(false, 0);
}

#[test]
fn replies_leave_from_the_contacted_ipv6_address_and_fall_back_when_it_is_removed() {
    sticky_case(true, 100);
}

/// The same with wireguard-go as the client: its endpoint for our server (which it, too,
/// follows to the source of authenticated packets) stays at the secondary address it contacted.
#[test]
fn wireguard_go_contacting_the_secondary_address_gets_replies_from_it() {
    let pair = Pair::new();
    let server_if = veth(&pair.a);
    let secondary = pair.a_addr.rsplit_once('.').unwrap().0.to_string() + ".5";
    pair.a
        .ip(&["addr", "add", &format!("{secondary}/24"), "dev", &server_if]);
    let server_key = Arc::new(SoftKey::generate());
    let go_key = SoftKey::generate();
    let port = 30000 + (std::process::id() % 10000) as u16 * 2 + 200;
    let mut sc = DeviceConfig::new(&unique("wgsg"), server_key.clone());
    sc.listen_port = port;
    sc.peers.push(PeerConfig {
        public_key: go_key.public_key(),
        preshared_key: None,
        endpoint: None,
        allowed_ips: vec![("10.15.0.2".parse().unwrap(), 32)],
        persistent_keepalive: 0,
    });
    let server = start_device(&pair.a, sc, "10.15.0.1/24", "fd15::1/64");
    let go = WireguardGo::start(
        &pair.b,
        &go_key.private_bytes(),
        port + 1,
        &server_key.public_key(),
        Some(SocketAddrLike(format!("{secondary}:{port}"))),
        "10.15.0.1/32",
        "10.15.0.2/24",
        "fd15::2/64",
    );
    assert!(
        ping_until(&pair.b, "10.15.0.1", 10),
        "wireguard-go reaches our server through the tunnel"
    );
    assert!(ping(&pair.a, "10.15.0.2", 2), "and our server reaches it");
    let out = pair.b.exec("wg", &["show", &go.ifname, "endpoints"]);
    let endpoints = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        endpoints
            .trim_end()
            .ends_with(&format!("\t{secondary}:{port}")),
        "wireguard-go's endpoint for us moved away from the address it contacted: {endpoints}"
    );
    server.stop();
}
