//! The key rotation of the original article, with the key in the virtual SE050:
//! a client (wg-pkcs11) talks to a server (wireguard-go); a new key pair is generated under a new
//! label; the server is told the new public key with `wg set` and the old one is removed (the
//! client on the old key is then locked out); the client's config is changed to the new URI, and
//! the tunnel comes back up.

use std::process::Command;

use e2e_tests::interop::{HANDSHAKE_TIMEOUT, TOKEN_LATENCY_MS};
use e2e_tests::topology::*;
use e2e_tests::*;

#[test]
fn rotating_the_token_key_keeps_the_tunnel() {
    let net = NamespacePair::new("rot");
    let token = VirtualToken::new(TOKEN_LATENCY_MS);
    let old_label = "wg-2025";
    let new_label = "wg-2026";
    let old_public = wg_pkcs11_genkey(&token, old_label);

    let (server_private, server_public) = wg_genkey();
    let server = UserspacePeer::start(
        UserspaceWireGuard::WireguardGo,
        &net.b,
        &unique_interface_name("srv"),
        net.dir(),
    );
    server.configure(
        &server_private,
        LISTEN_PORT_B,
        &[PeerSpec::new(&old_public, &["10.10.0.1/32"])],
    );
    server.address_and_up(&["10.10.0.2/24"]);

    let ifname = unique_interface_name("cli");
    let client_conf = |label: &str| WgPkcs11Conf {
        private_key: token.key_uri(label),
        listen_port: Some(LISTEN_PORT_A),
        addresses: vec!["10.10.0.1/24".into()],
        mtu: Some(1420),
        peers: vec![PeerSpec::new(&server_public, &["10.10.0.2/32"]).endpoint(&net.b_endpoint())],
    };
    let conf_path = client_conf(old_label).write(net.dir(), &ifname);
    let client = WgPkcs11::up(&net.a, &token, &conf_path, net.dir());
    ping_until_reply(&net.a, B_TUNNEL, HANDSHAKE_TIMEOUT);
    let before = server.dump();
    assert!(
        before
            .peer(&old_public)
            .is_some_and(|p| p.latest_handshake > 0),
        "server never completed a handshake with the old key: {before:?}"
    );

    // A new key under a new label; the old one stays on the chip until the operator deletes it.
    let new_public = wg_pkcs11_genkey(&token, new_label);
    assert_ne!(
        new_public, old_public,
        "the new key pair equals the old one"
    );
    assert_eq!(
        wg_pkcs11_pubkey(&token, old_label),
        old_public,
        "the old key changed"
    );
    let objects = pkcs11_tool_list_objects(&token);
    for label in [old_label, new_label] {
        assert!(
            objects.contains(label),
            "pkcs11-tool does not list the key labelled {label}:\n{objects}"
        );
    }

    // The server learns the new key and forgets the old one.
    server.set(&PeerSpec::new(&new_public, &["10.10.0.1/32"]).wg_set_args());
    server.set(&["peer".into(), old_public.clone(), "remove".into()]);
    let rotated = server.dump();
    assert!(
        rotated.peer(&old_public).is_none(),
        "server still lists the old key"
    );
    assert!(
        rotated.peer(&new_public).is_some(),
        "server does not list the new key"
    );
    assert!(
        !ping(&net.a, B_TUNNEL, 3),
        "the server still answers a client using the removed key"
    );

    // The client moves to the new URI.
    client.down();
    let conf_path = client_conf(new_label).write(net.dir(), &ifname);
    let client = WgPkcs11::up(&net.a, &token, &conf_path, net.dir());
    let back_in = ping_until_reply(&net.a, B_TUNNEL, HANDSHAKE_TIMEOUT);
    eprintln!("tunnel back up with the new key after {back_in:?}");
    assert!(
        ping(&net.b, A_TUNNEL, 3),
        "server -> client ping failed after rotation"
    );
    let after = server.dump();
    let peer = after.peer(&new_public).expect("server lost the new key");
    assert!(
        peer.latest_handshake > 0,
        "no handshake with the new key: {after:?}"
    );
    assert_eq!(
        after.peers.len(),
        1,
        "server should know only the new key: {after:?}"
    );
    let client_view = client.dump();
    assert!(
        client_view
            .peer(&server_public)
            .is_some_and(|p| p.latest_handshake > 0 && p.rx_bytes > 0),
        "wg show on the client reports no handshake or traffic: {client_view:?}"
    );
    client.down();
}

/// `pkcs11-tool -O` through the module, on the test's chip.
fn pkcs11_tool_list_objects(token: &VirtualToken) -> String {
    let mut command = Command::new("pkcs11-tool");
    command.arg("--module").arg(module_path()).arg("-O");
    token.apply(&mut command);
    let output = command
        .output()
        .expect("cannot run pkcs11-tool (install opensc)");
    assert!(
        output.status.success(),
        "pkcs11-tool -O failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
