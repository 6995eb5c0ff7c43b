use super::*;

const PUB_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const PUB_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
const PRIV: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("wg0.conf"), text)
}

fn error(text: &str) -> ConfigError {
    parse(text).unwrap_err()
}

fn iface(extra: &str) -> String {
    format!("[Interface]\nPrivateKey = {PRIV}\n{extra}")
}

#[test]
fn a_multibyte_character_in_the_uri_scheme_is_an_error_not_a_panic() {
    let e = error("[Interface]\nPrivateKey = pkcs1é:object=wg\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.to_string().contains("PrivateKey"), "{e}");
}

#[test]
fn real_world_client() {
    let text = format!(
            "# client\n[Interface]\nPrivateKey = pkcs11:token=SE050;object=wg-key;type=private?module-name=se050&pin-value=1234\n\
             Address = 10.8.0.2/24, fd08::2/64\nAddress=192.168.7.2/32\nDNS = 10.8.0.1, vpn.example\n\
             MTU = 1380\n\n[Peer] # the server\nPublicKey = {PUB_A}\nPresharedKey = {PRIV}\n\
             AllowedIPs = 0.0.0.0/0, ::/0\nEndpoint = 127.0.0.1:51820\nPersistentKeepalive = 25\n"
        );
    let config = parse(&text).unwrap();
    let PrivateKeySource::Pkcs11(uri) = &config.interface.private_key else {
        panic!("expected a URI")
    };
    assert_eq!(uri.token.as_deref(), Some("SE050"));
    assert_eq!(uri.object.as_deref(), Some("wg-key"));
    assert_eq!(uri.module_name.as_deref(), Some("se050"));
    assert_eq!(
        config.interface.addresses,
        vec![
            "10.8.0.2/24".parse().unwrap(),
            "fd08::2/64".parse().unwrap(),
            "192.168.7.2/32".parse().unwrap()
        ]
    );
    assert_eq!(config.interface.dns, vec!["10.8.0.1", "vpn.example"]);
    assert_eq!(config.interface.mtu, Some(1380));
    assert_eq!(config.interface.table, Table::Auto);
    assert_eq!(config.peers.len(), 1);
    let peer = &config.peers[0];
    assert_eq!(peer.public_key, decode_key("k", PUB_A).unwrap());
    assert!(peer.preshared_key.is_some());
    assert_eq!(peer.allowed_ips.len(), 2);
    assert!(peer.allowed_ips.iter().all(Cidr::is_default_route));
    assert_eq!(
        peer.endpoint.as_ref().and_then(Endpoint::address),
        Some("127.0.0.1:51820".parse().unwrap())
    );
    assert_eq!(peer.persistent_keepalive, Some(25));
    assert!(config.warnings.is_empty());
}

#[test]
fn real_world_server_with_hooks_and_many_peers() {
    let text = format!(
        "[Interface]\nPrivateKey = {PRIV}\nListenPort = 51820\nAddress = 10.8.0.1/24\n\
             FwMark = 0x1234\nTable = off\nSaveConfig = true\n\
             PreUp = echo pre %i\nPostUp = iptables -A FORWARD -i %i -j ACCEPT; echo up\n\
             PostUp = echo second\nPreDown = echo down\nPostDown = echo gone %i\n\
             [Peer]\nPublicKey = {PUB_A}\nAllowedIPs = 10.8.0.2/32\nAllowedIPs = fd08::2/128\n\
             [peer]\npublickey = {PUB_B}\nallowedips = 10.8.0.3/32\nendpoint = [::1]:4000\n\
             PersistentKeepalive = off\n"
    );
    let config = parse(&text).unwrap();
    let i = &config.interface;
    assert!(matches!(i.private_key, PrivateKeySource::Inline(_)));
    assert_eq!(i.listen_port, Some(51820));
    assert_eq!(i.fwmark, Some(0x1234));
    assert_eq!(i.table, Table::Off);
    assert_eq!(i.pre_up, vec!["echo pre %i"]);
    assert_eq!(
        i.post_up,
        vec![
            "iptables -A FORWARD -i %i -j ACCEPT; echo up",
            "echo second"
        ]
    );
    assert_eq!(i.pre_down, vec!["echo down"]);
    assert_eq!(i.post_down, vec!["echo gone %i"]);
    assert_eq!(config.warnings.len(), 1, "SaveConfig warns");
    assert_eq!(config.peers.len(), 2);
    assert_eq!(config.peers[0].allowed_ips.len(), 2);
    assert_eq!(
        config.peers[1]
            .endpoint
            .as_ref()
            .and_then(Endpoint::address),
        Some("[::1]:4000".parse().unwrap())
    );
    assert_eq!(config.peers[1].persistent_keepalive, None);
    assert_eq!(config.peers[1].line, 17);
}

#[test]
fn values_and_defaults() {
    let c = parse(&iface("FwMark = off\nTable = 1234\n")).unwrap();
    assert_eq!(c.interface.fwmark, None);
    assert_eq!(c.interface.table, Table::Named("1234".into()));
    assert_eq!(c.interface.listen_port, None);
    assert!(c.peers.is_empty());
    let c = parse(&iface("FwMark = 51820\nTable = Auto\n")).unwrap();
    assert_eq!(c.interface.fwmark, Some(51820));
    assert_eq!(c.interface.table, Table::Auto);
    let c = parse(&format!(
        "{}[Peer]\nPublicKey={PUB_A}\nPersistentKeepalive = 0\n",
        iface("")
    ))
    .unwrap();
    assert_eq!(c.peers[0].persistent_keepalive, None);
    assert!(c.peers[0].allowed_ips.is_empty());
    assert_eq!(c.peers[0].endpoint, None);
}

#[test]
fn endpoint_names_are_kept_at_parse_and_resolved_by_resolve_endpoints() {
    let text = format!(
        "{}[Peer]\nPublicKey = {PUB_A}\nEndpoint = peer.test:51820\n\
             [Peer]\nPublicKey = {PUB_B}\nEndpoint = 192.0.2.9:7\n",
        iface("")
    );
    let asked = std::cell::RefCell::new(Vec::new());
    let resolver = |host: &str, port: u16| {
        asked.borrow_mut().push(host.to_string());
        match host {
            "peer.test" => Ok(vec![std::net::SocketAddr::new(
                "192.0.2.1".parse().unwrap(),
                port,
            )]),
            _ => Err(std::io::Error::other("unknown")),
        }
    };
    let mut config = parse(&text).unwrap();
    let named = config.peers[0].endpoint.clone().unwrap();
    assert_eq!((named.host.as_str(), named.port), ("peer.test", 51820));
    assert_eq!(named.address(), None, "parsing looked nothing up");
    assert_eq!(
        config.peers[1]
            .endpoint
            .as_ref()
            .and_then(Endpoint::address),
        Some("192.0.2.9:7".parse().unwrap())
    );
    config
        .resolve_endpoints(Path::new("wg0.conf"), &resolver)
        .unwrap();
    assert_eq!(
        *asked.borrow(),
        ["peer.test"],
        "one lookup, for the name only"
    );
    assert_eq!(
        config.peers[0]
            .endpoint
            .as_ref()
            .and_then(Endpoint::address),
        Some("192.0.2.1:51820".parse().unwrap())
    );
    // A name that does not resolve fails `up` with the file and the peer's line.
    let mut config = parse(&text.replace("peer.test", "gone.test")).unwrap();
    let e = config
        .resolve_endpoints(Path::new("wg0.conf"), &resolver)
        .unwrap_err();
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.to_string().contains("cannot resolve `gone.test`"), "{e}");
}

#[test]
fn cidr_parsing_and_network() {
    let c: Cidr = "10.1.2.3/8".parse().unwrap();
    assert_eq!(c.network().to_string(), "10.0.0.0/8");
    assert_eq!(
        "fd00::1:2/64"
            .parse::<Cidr>()
            .unwrap()
            .network()
            .to_string(),
        "fd00::/64"
    );
    assert_eq!(
        "0.0.0.0/0".parse::<Cidr>().unwrap().network().to_string(),
        "0.0.0.0/0"
    );
    assert_eq!(
        "::/0".parse::<Cidr>().unwrap().network().to_string(),
        "::/0"
    );
    assert_eq!("10.0.0.1".parse::<Cidr>().unwrap().prefix, 32);
    assert_eq!("::1".parse::<Cidr>().unwrap().prefix, 128);
    for bad in [
        "10.0.0.1/33",
        "::/129",
        "10.0.0/8",
        "x/1",
        "10.0.0.1/",
        "10.0.0.1/-1",
        "10.0.0.1/a",
    ] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad}");
    }
    assert_eq!(Cidr::new("1.1.1.1".parse().unwrap(), 33), None);
}

#[test]
fn errors_name_file_line_and_problem() {
    let e = error(&iface("Frobnicate = 1\n"));
    assert_eq!(e.line, Some(3));
    assert_eq!(
        e.kind,
        ConfigErrorKind::UnknownKey {
            section: "Interface",
            key: "Frobnicate".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "wg0.conf:3: unknown key `Frobnicate` in [Interface]"
    );

    let e = error(&format!(
        "{}[Peer]\nPublicKey = {PUB_A}\nListenPort = 1\n",
        iface("")
    ));
    assert_eq!(
        e.kind,
        ConfigErrorKind::UnknownKey {
            section: "Peer",
            key: "ListenPort".into()
        }
    );
    assert_eq!(e.line, Some(5));
}

#[test]
fn every_error_class() {
    use ConfigErrorKind::*;
    let peer = |extra: &str| format!("{}[Peer]\nPublicKey = {PUB_A}\n{extra}", iface(""));
    type Case = (String, Option<usize>, fn(&ConfigErrorKind) -> bool);
    let cases: Vec<Case> = vec![
        ("[Interfaces]\n".into(), Some(1), |k| {
            matches!(k, UnknownSection(_))
        }),
        ("[Interface\n".into(), Some(1), |k| {
            matches!(k, UnknownSection(_))
        }),
        ("PrivateKey = x\n".into(), Some(1), |k| {
            matches!(k, KeyOutsideSection(_))
        }),
        (iface("ListenPort\n"), Some(3), |k| {
            matches!(k, MissingEquals)
        }),
        (iface("ListenPort =   \n"), Some(3), |k| {
            matches!(k, EmptyValue(_))
        }),
        (iface("PrivateKey = x\n"), Some(3), |k| {
            matches!(k, DuplicateKey(_))
        }),
        (iface("ListenPort = 1\nlistenport = 2\n"), Some(4), |k| {
            matches!(k, DuplicateKey(_))
        }),
        (format!("{}[Interface]\n", iface("")), Some(3), |k| {
            matches!(k, DuplicateInterface)
        }),
        (format!("[Peer]\nPublicKey = {PUB_A}\n"), None, |k| {
            matches!(k, MissingInterface)
        }),
        (
            "[Interface]\nPrivateKey = not*base64\n".into(),
            Some(2),
            |k| matches!(k, BadBase64 { .. }),
        ),
        ("[Interface]\nPrivateKey = AAAA\n".into(), Some(2), |k| {
            matches!(k, BadKeyLength { length: 3, .. })
        }),
        (
            "[Interface]\nPrivateKey = pkcs11:colour=red\n".into(),
            Some(2),
            |k| matches!(k, BadUri(_)),
        ),
        (iface("Address = 10.0.0.1/33\n"), Some(3), |k| {
            matches!(k, BadCidr(_))
        }),
        (iface("Address = 10.0.0.1/24, banana\n"), Some(3), |k| {
            matches!(k, BadCidr(_))
        }),
        (peer("AllowedIPs = 10.0.0.0/8, ::/200\n"), Some(5), |k| {
            matches!(k, BadCidr(_))
        }),
        (iface("ListenPort = 70000\n"), Some(3), |k| {
            matches!(k, BadNumber { .. })
        }),
        (iface("MTU = 100\n"), Some(3), |k| {
            matches!(k, BadNumber { .. })
        }),
        (iface("MTU = big\n"), Some(3), |k| {
            matches!(k, BadNumber { .. })
        }),
        (iface("FwMark = 0xZZ\n"), Some(3), |k| {
            matches!(k, BadNumber { .. })
        }),
        (iface("Table = a b\n"), Some(3), |k| {
            matches!(k, BadNumber { .. })
        }),
        (iface("SaveConfig = maybe\n"), Some(3), |k| {
            matches!(k, BadNumber { .. })
        }),
        (peer("PersistentKeepalive = -1\n"), Some(5), |k| {
            matches!(k, BadNumber { .. })
        }),
        (peer("Endpoint = 10.0.0.1\n"), Some(5), |k| {
            matches!(k, BadEndpoint(_))
        }),
        (peer("Endpoint = fd00::1:51820\n"), Some(5), |k| {
            matches!(k, BadEndpoint(_))
        }),
        (peer("PresharedKey = AAAA\n"), Some(5), |k| {
            matches!(k, BadKeyLength { .. })
        }),
        (
            format!("{}[Peer]\nPublicKey = {PUB_A}\n", peer("")),
            Some(5),
            |k| matches!(k, DuplicatePeer(_)),
        ),
        (
            format!("{}[Peer]\nAllowedIPs = 10.0.0.0/8\n", iface("")),
            Some(3),
            |k| matches!(k, MissingPublicKey),
        ),
        ("[Interface]\nListenPort = 1\n".into(), Some(1), |k| {
            matches!(k, MissingPrivateKey)
        }),
        (peer(&format!("PublicKey = {PUB_B}\n")), Some(5), |k| {
            matches!(k, DuplicateKey(_))
        }),
    ];
    for (text, line, check) in cases {
        let e = error(&text);
        assert!(check(&e.kind), "unexpected {e} for:\n{text}");
        assert_eq!(e.line, line, "wrong line in {e} for:\n{text}");
        assert!(e.to_string().starts_with("wg0.conf"), "{e}");
    }
}

#[test]
fn missing_file_names_it() {
    let e = Config::load(Path::new("/nonexistent/wg9.conf")).unwrap_err();
    assert!(matches!(e.kind, ConfigErrorKind::Io(_)));
    assert!(e
        .to_string()
        .starts_with("/nonexistent/wg9.conf: cannot read"));
}

#[test]
fn comments_and_case() {
    let text = format!(
        "  # leading comment\n[INTERFACE]   # trailing\n  privatekey=   {PRIV}   # key\n\
             ADDRESS = 10.0.0.1/24#x\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.interface.addresses.len(), 1);
}

#[test]
fn debug_never_prints_secrets() {
    let text = format!(
        "{}[Peer]\nPublicKey = {PUB_A}\nPresharedKey = {PRIV}\n",
        iface("")
    );
    let c = parse(&text).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains(PRIV), "{debug}");
    assert!(debug.contains(PUB_A));
}

/// The example configurations shipped in conf/ are real files that must keep parsing.
#[test]
fn shipped_example_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "conf") {
            let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!config.peers.is_empty(), "{}", path.display());
            interface_name_from_path(&path).unwrap();
            seen += 1;
        }
    }
    assert!(
        seen >= 3,
        "expected the client and server examples in {}",
        dir.display()
    );
    let client = Config::load(&dir.join("wg0-client.conf")).unwrap();
    assert!(matches!(
        client.interface.private_key,
        PrivateKeySource::Pkcs11(_)
    ));
    let plain = Config::load(&dir.join("wg0-server-std.conf")).unwrap();
    let PrivateKeySource::Inline(key) = &plain.interface.private_key else {
        panic!("the plain server has a base64 key")
    };
    // The plain server's public key is the one the client config names.
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*key.expose()));
    assert_eq!(client.peers[0].public_key, *public.as_bytes());
    assert_eq!(
        plain.peers[0].public_key,
        Config::load(&dir.join("wg0-server.conf")).unwrap().peers[0].public_key
    );
}

#[test]
fn interface_names() {
    assert_eq!(
        interface_name_from_path(Path::new("conf/wg0.conf")).unwrap(),
        "wg0"
    );
    assert_eq!(
        interface_name_from_path(Path::new("/etc/wireguard/home-vpn.conf")).unwrap(),
        "home-vpn"
    );
    assert!(interface_name_from_path(Path::new("wg0.cfg")).is_err());
    assert!(interface_name_from_path(Path::new(".conf")).is_err());
    assert!(interface_name_from_path(Path::new("a-very-long-interface-name.conf")).is_err());
    assert!(interface_name_from_path(Path::new("wg 0.conf")).is_err());
}
