//! Key health in `wg-pkcs11 show` and `show --json`: wg-pkcs11 (key in a virtual SE050 with a
//! 20 ms latency) against wireguard-go in network namespaces, after a handshake.
//!
//! Every field is checked against an independent source: the URI against the config, the token's
//! label/model/serial against pkcs11-tool -L, the ECDH count against the chip's own counters,
//! the latency against the chip's simulated time per operation (a lower bound that holds on any
//! machine), and `wg show` still works with the extra UAPI keys.

use std::process::Command;

use e2e_tests::interop::{HANDSHAKE_TIMEOUT, TOKEN_LATENCY_MS};
use e2e_tests::topology::*;
use e2e_tests::*;

/// `pkcs11-tool -L` on the test's chip: (model, serial) of its token.
fn pkcs11_tool_token(token: &VirtualToken) -> (String, String) {
    let mut command = Command::new("pkcs11-tool");
    command.arg("--module").arg(module_path()).arg("-L");
    token.apply(&mut command);
    let out = command.output().expect("cannot run pkcs11-tool");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(name)
                    .map(|v| v.trim_start_matches([' ', ':']).trim().to_string())
            })
            .unwrap_or_else(|| panic!("pkcs11-tool -L shows no {name}:\n{text}"))
    };
    (field("token model"), field("serial num"))
}

fn show(ns: &Netns, args: &[&str]) -> String {
    let mut command = ns.command(wg_pkcs11_binary());
    command.arg("show").args(args);
    let out = command.output().expect("cannot run wg-pkcs11 show");
    assert!(
        out.status.success(),
        "wg-pkcs11 show {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}"))
}

/// "31.20 ms" -> microseconds.
fn micros(text: &str) -> u64 {
    let ms: f64 = text
        .trim()
        .strip_suffix(" ms")
        .unwrap_or_else(|| panic!("`{text}` is not N ms"))
        .parse()
        .unwrap();
    (ms * 1000.0).round() as u64
}

#[test]
fn show_and_show_json_report_the_keys_health() {
    let net = NamespacePair::new("hlth");
    let token = VirtualToken::new(TOKEN_LATENCY_MS);
    let label = "wg-health";
    let public = wg_pkcs11_genkey(&token, label);
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
        &[PeerSpec::new(&public, &["10.10.0.1/32"])],
    );
    server.address_and_up(&["10.10.0.2/24"]);
    let ifname = unique_interface_name("hl");
    let conf = WgPkcs11Conf {
        private_key: token.key_uri(label),
        listen_port: Some(LISTEN_PORT_A),
        addresses: vec!["10.10.0.1/24".into()],
        mtu: Some(1420),
        peers: vec![PeerSpec::new(&server_public, &["10.10.0.2/32"]).endpoint(&net.b_endpoint())],
    };
    let conf_path = conf.write(net.dir(), &ifname);
    let client = WgPkcs11::up(&net.a, &token, &conf_path, net.dir());
    ping_until_reply(&net.a, B_TUNNEL, HANDSHAKE_TIMEOUT);
    assert!(ping(&net.a, B_TUNNEL, 2));

    let (model, serial) = pkcs11_tool_token(&token);
    let chip_ecdh = token.counters().ecdh;
    assert!(chip_ecdh >= 1, "the chip did no ECDH for the handshake");

    // The human form.
    let text = show(&net.a, &[&ifname]);
    eprintln!("wg-pkcs11 show:\n{text}");
    assert_eq!(line(&text, "public key: "), public, "{text}");
    assert_eq!(line(&text, "key uri: "), token.key_uri(label), "{text}");
    let chip = line(&text, "chip: ");
    assert!(chip.starts_with("virtual (token SE050"), "{text}");
    assert!(
        chip.contains(&format!("model {model}")),
        "model is not pkcs11-tool's {model}: {text}"
    );
    assert!(
        chip.contains(&format!("serial {serial})")),
        "serial is not pkcs11-tool's {serial}: {text}"
    );
    assert_eq!(
        line(&text, "chip ECDH since start: "),
        format!("{chip_ecdh} (errors 0, reconnects 0)"),
        "the daemon's count differs from the chip's own: {text}"
    );
    let latency = line(&text, "chip latency: ");
    let parts: Vec<&str> = latency.split(", ").collect();
    assert_eq!(parts.len(), 3, "{latency}");
    let last = micros(parts[0].strip_prefix("last ").unwrap());
    let median = micros(parts[1].strip_prefix("median ").unwrap());
    let p99 = micros(parts[2].strip_prefix("p99 ").unwrap());
    let floor = u64::from(TOKEN_LATENCY_MS) * 1000;
    for (what, v) in [("last", last), ("median", median), ("p99", p99)] {
        assert!(
            v >= floor,
            "{what} latency {v} us is below the chip's simulated {floor} us: {text}"
        );
    }
    assert!(median <= p99, "{text}");
    assert_eq!(
        line(&text, "pin: "),
        "no PIN (the token requires no login)",
        "{text}"
    );

    // The machine form says the same.
    let json: serde_json::Value =
        serde_json::from_str(&show(&net.a, &["--json", &ifname])).expect("show --json is not JSON");
    assert_eq!(json["interface"], ifname.as_str());
    assert_eq!(json["public_key"], public.as_str());
    let key = &json["key"];
    assert_eq!(key["uri"], token.key_uri(label).as_str(), "{json}");
    assert_eq!(key["chip"], "virtual");
    assert_eq!(key["token"]["label"], "SE050");
    assert_eq!(key["token"]["model"], model.as_str());
    assert_eq!(key["token"]["serial"], serial.as_str());
    assert_eq!(key["ecdh_count"], chip_ecdh);
    assert_eq!(key["errors"], 0);
    assert_eq!(key["reconnects"], 0);
    assert!(
        key["latency_us"]["median"].as_u64().unwrap() >= floor,
        "{json}"
    );
    assert!(
        key["latency_us"]["p99"].as_u64().unwrap() >= floor,
        "{json}"
    );
    assert!(
        key["latency_us"]["last"].as_u64().unwrap() >= floor,
        "{json}"
    );
    assert_eq!(key["pin"], "no PIN (the token requires no login)");
    let peer = &json["peers"][0];
    assert_eq!(peer["public_key"], server_public.as_str());
    assert!(peer["latest_handshake"].as_u64().unwrap() > 0, "{json}");
    assert!(peer["rx_bytes"].as_u64().unwrap() > 0, "{json}");
    // Every interface: an array that holds this one.
    let all: serde_json::Value = serde_json::from_str(&show(&net.a, &["--json"])).unwrap();
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|d| d["interface"] == ifname.as_str()),
        "{all}"
    );

    // The extra UAPI keys do not disturb the stock tool.
    let dump = client.dump();
    assert!(
        dump.peer(&server_public)
            .is_some_and(|p| p.latest_handshake > 0),
        "{dump:?}"
    );
    client.down();
}
