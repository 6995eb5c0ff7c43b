//! Tests of the UAPI protocol: parser and serializer, the server, and the real `wg` tool.

use super::*;
use parking_lot::Mutex;
use std::io::{self, Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

const K1: &str = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a";
const K2: &str = "58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceae086a7c8b2";

fn key(hex: &str) -> [u8; 32] {
    hex_key("key", hex).unwrap()
}

fn request(text: &str) -> Result<Option<Request>, UapiError> {
    read_request(&mut Cursor::new(text.as_bytes().to_vec()))
}

fn set_error(body: &str) -> UapiError {
    request(&format!("set=1\n{body}\n")).unwrap_err()
}

#[test]
fn parses_get_and_end_of_stream() {
    assert_eq!(request("get=1\n\n").unwrap(), Some(Request::Get));
    assert_eq!(request("").unwrap(), None);
}

#[test]
fn parses_a_full_set() {
    let text = format!(
        "set=1\nlisten_port=51820\nfwmark=7\nreplace_peers=true\n\
         public_key={K1}\nupdate_only=true\npreshared_key={K2}\nendpoint=[fd00::1]:4000\n\
         persistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.0.0.0/24\n\
         allowed_ip=fd00::/64\nallowed_ip=-10.9.0.0/16\nprotocol_version=1\n\
         public_key={K2}\nremove=true\n\n"
    );
    let Some(Request::Set(set)) = request(&text).unwrap() else {
        panic!()
    };
    assert_eq!(set.listen_port, Some(51820));
    assert_eq!(set.fwmark, Some(7));
    assert!(set.replace_peers);
    assert_eq!(set.peers.len(), 2);
    let p = &set.peers[0];
    assert_eq!(p.public_key, key(K1));
    assert!(p.update_only && !p.remove && p.replace_allowed_ips);
    assert_eq!(p.preshared_key.as_deref(), Some(&key(K2)));
    assert_eq!(p.endpoint, Some("[fd00::1]:4000".parse().unwrap()));
    assert_eq!(p.persistent_keepalive_interval, Some(25));
    assert_eq!(
        p.allowed_ips,
        vec!["10.0.0.0/24".parse().unwrap(), "fd00::/64".parse().unwrap()]
    );
    assert_eq!(p.remove_allowed_ips, vec!["10.9.0.0/16".parse().unwrap()]);
    assert!(set.peers[1].remove);
}

#[test]
fn empty_fwmark_means_off() {
    let Some(Request::Set(set)) = request("set=1\nfwmark=\n\n").unwrap() else {
        panic!()
    };
    assert_eq!(set.fwmark, Some(0));
}

#[test]
fn private_key_is_parsed_for_the_backend_to_check() {
    let Some(Request::Set(set)) = request(&format!("set=1\nprivate_key={K1}\n\n")).unwrap() else {
        panic!()
    };
    assert_eq!(set.private_key.as_deref(), Some(&key(K1)));
    assert_eq!(set_error("private_key=00\n").errno, libc::EINVAL);
}

#[test]
fn only_a_private_key_that_changes_nothing_is_accepted() {
    let token_secret = x25519_dalek::StaticSecret::from(key(K2));
    let token_public = *x25519_dalek::PublicKey::from(&token_secret).as_bytes();
    // What wg setconf / syncconf send for a config without PrivateKey.
    assert!(check_private_key(&[0; 32], &token_public).is_ok());
    // The token key itself (its public half matches): nothing changes.
    assert!(check_private_key(&key(K2), &token_public).is_ok());
    // Any other key would replace the token's identity.
    let e = check_private_key(&key(K1), &token_public).unwrap_err();
    assert_eq!(e.errno, libc::EPERM);
    assert!(e.message.contains("token"), "{}", e.message);
}

#[test]
fn every_set_error() {
    let peer = |line: &str| format!("public_key={K1}\n{line}\n");
    let cases: Vec<(String, i32)> = vec![
        ("listen_port\n".into(), libc::EPROTO),
        ("listen_port=70000\n".into(), libc::EINVAL),
        ("listen_port=x\n".into(), libc::EINVAL),
        ("fwmark=-1\n".into(), libc::EINVAL),
        ("replace_peers=yes\n".into(), libc::EINVAL),
        ("bogus=1\n".into(), libc::EINVAL),
        ("public_key=abcd\n".into(), libc::EINVAL),
        (format!("public_key={}\n", "zz".repeat(32)), libc::EINVAL),
        (peer("remove=1"), libc::EINVAL),
        (peer("update_only=no"), libc::EINVAL),
        (peer("preshared_key=00"), libc::EINVAL),
        (peer("endpoint=localhost:1"), libc::EINVAL),
        (peer("endpoint=fd00::1:1"), libc::EINVAL),
        (peer("persistent_keepalive_interval=65536"), libc::EINVAL),
        (peer("allowed_ip=10.0.0.1"), libc::EINVAL),
        (peer("allowed_ip=10.0.0.0/33"), libc::EINVAL),
        (peer("allowed_ip=::/129"), libc::EINVAL),
        (peer("allowed_ip=banana/8"), libc::EINVAL),
        (peer("protocol_version=2"), libc::EINVAL),
        (peer("listen_port=1"), libc::EINVAL),
        (peer("last_handshake_time_sec=1"), libc::EINVAL),
    ];
    for (body, errno) in cases {
        let e = set_error(&body);
        assert_eq!(e.errno, errno, "{body:?}: {e}");
        assert!(!e.message.is_empty());
    }
}

#[test]
fn protocol_errors() {
    let e = |t: &str| request(t).unwrap_err().errno;
    assert_eq!(e("put=1\n\n"), libc::EPROTO);
    assert_eq!(e("get=1\nx\n"), libc::EPROTO);
    assert_eq!(e("get=1\n"), libc::EPROTO);
    assert_eq!(e("get=1"), libc::EPROTO);
    assert_eq!(e("set=1\nlisten_port=1\n"), libc::EPROTO);
    assert_eq!(
        e(&format!("set=1\nfwmark={}\n\n", "1".repeat(MAX_LINE + 10))),
        libc::EPROTO
    );
    let mut bad_utf8 = b"set=1\nfwmark=\xff\n\n".to_vec();
    assert_eq!(
        read_request(&mut Cursor::new(&mut bad_utf8))
            .unwrap_err()
            .errno,
        libc::EPROTO
    );
}

fn sample_device() -> DeviceInfo {
    DeviceInfo {
        public_key: Some(key(K2)),
        key_in_hardware: Some(false),
        listen_port: 51820,
        fwmark: 0x20,
        peers: vec![
            PeerInfo {
                public_key: key(K1),
                preshared_key: Some(key(K2)),
                endpoint: Some("127.0.0.1:4000".parse().unwrap()),
                last_handshake: Some(Duration::new(1_700_000_000, 123)),
                rx_bytes: 1000,
                tx_bytes: 2000,
                persistent_keepalive_interval: 25,
                allowed_ips: vec![
                    "10.0.0.2/32".parse().unwrap(),
                    "fd00::2/128".parse().unwrap(),
                ],
                session_static_key: Some(key(K2)),
            },
            PeerInfo {
                public_key: key(K2),
                endpoint: Some("[::1]:5".parse().unwrap()),
                ..Default::default()
            },
        ],
        extensions: vec![
            ("chip".into(), "virtual".into()),
            ("ecdh_count".into(), "2".into()),
        ],
    }
}

#[test]
fn get_reply_round_trips() {
    let device = sample_device();
    let text = serialize_device(&device);
    assert!(text.starts_with(&format!(
        "{PUBLIC_KEY_EXTENSION}={K2}\n{KEY_IN_HARDWARE_EXTENSION}=0\nlisten_port=51820\nfwmark=32\n"
    )));
    assert!(text.contains(&format!(
        "public_key={K1}\npreshared_key={K2}\nprotocol_version=1\n"
    )));
    assert!(text.contains("endpoint=[::1]:5\n"));
    assert!(text.contains("last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=123\n"));
    assert!(!text.contains("private_key"));
    assert!(text.contains("fwmark=32\nwg_pkcs11_chip=virtual\nwg_pkcs11_ecdh_count=2\npublic_key="));
    assert_eq!(parse_device(&format!("{text}errno=0\n\n")).unwrap(), device);
    // A reply without fwmark, peers or public key.
    let bare = DeviceInfo {
        listen_port: 1,
        ..Default::default()
    };
    assert_eq!(serialize_device(&bare), "listen_port=1\n");
    assert_eq!(parse_device("listen_port=1\nerrno=0\n").unwrap(), bare);
    assert_eq!(parse_device("errno=-13\n").unwrap_err().errno, 13);
    assert!(parse_device("listen_port\n").is_err());
}

#[test]
fn set_request_round_trips() {
    let set = SetRequest {
        private_key: Some(Zeroizing::new([0; 32])),
        listen_port: Some(1),
        fwmark: Some(0),
        replace_peers: true,
        peers: vec![
            PeerUpdate {
                public_key: key(K1),
                update_only: true,
                preshared_key: Some(Zeroizing::new(key(K2))),
                endpoint: Some("1.2.3.4:5".parse().unwrap()),
                persistent_keepalive_interval: Some(0),
                replace_allowed_ips: true,
                allowed_ips: vec!["0.0.0.0/0".parse().unwrap()],
                remove_allowed_ips: vec!["::/0".parse().unwrap()],
                ..Default::default()
            },
            PeerUpdate {
                public_key: key(K2),
                remove: true,
                ..Default::default()
            },
        ],
        private_key_uri: Some(Zeroizing::new("pkcs11:object=wg-2026".into())),
    };
    let text = serialize_set(&set);
    assert!(text.contains("\nwg_pkcs11_private_key_uri=pkcs11:object=wg-2026\npublic_key="));
    assert_eq!(request(&text).unwrap(), Some(Request::Set(set)));
}

/// A backend that keeps the state in memory and applies `set` with the protocol's meaning.
#[derive(Default)]
struct MemoryBackend {
    device: Mutex<DeviceInfo>,
    sets: Mutex<Vec<SetRequest>>,
}

impl UapiBackend for MemoryBackend {
    fn get(&self) -> Result<DeviceInfo, UapiError> {
        Ok(self.device.lock().clone())
    }

    fn set(&self, request: SetRequest) -> Result<(), UapiError> {
        if let Some(sent) = &request.private_key {
            // This backend's "token" key is K2's (any other key is refused, as by the device).
            let token_public =
                x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(key(K2)));
            check_private_key(sent, token_public.as_bytes())?;
        }
        self.sets.lock().push(request.clone());
        let mut d = self.device.lock();
        if let Some(port) = request.listen_port {
            d.listen_port = port;
        }
        if let Some(mark) = request.fwmark {
            d.fwmark = mark;
        }
        if request.replace_peers {
            d.peers.clear();
        }
        for update in request.peers {
            let index = d
                .peers
                .iter()
                .position(|p| p.public_key == update.public_key);
            if update.remove {
                if let Some(i) = index {
                    d.peers.remove(i);
                }
                continue;
            }
            let index = match index {
                Some(i) => i,
                None if update.update_only => continue,
                None => {
                    d.peers.push(PeerInfo {
                        public_key: update.public_key,
                        ..Default::default()
                    });
                    d.peers.len() - 1
                }
            };
            let peer = &mut d.peers[index];
            if let Some(psk) = update.preshared_key {
                peer.preshared_key = (*psk != [0; 32]).then_some(*psk);
            }
            if let Some(e) = update.endpoint {
                peer.endpoint = Some(e);
            }
            if let Some(k) = update.persistent_keepalive_interval {
                peer.persistent_keepalive_interval = k;
            }
            if update.replace_allowed_ips {
                peer.allowed_ips.clear();
            }
            peer.allowed_ips
                .retain(|ip| !update.remove_allowed_ips.contains(ip));
            peer.allowed_ips.extend(update.allowed_ips);
        }
        Ok(())
    }
}

#[test]
fn one_connection_many_requests_then_protocol_error_closes() {
    let backend = MemoryBackend::default();
    let input = format!(
        "get=1\n\nset=1\nlisten_port=9\n\nget=1\n\nset=1\nprivate_key={K1}\n\nget=1\n\nput=1\n\nget=1\n\n"
    );
    let mut stream = Duplex {
        input: Cursor::new(input.into_bytes()),
        output: Vec::new(),
    };
    serve_connection(&mut stream, &backend).unwrap();
    let out = String::from_utf8(stream.output).unwrap();
    assert_eq!(
        out,
        "listen_port=0\nerrno=0\n\nerrno=0\n\nlisten_port=9\nerrno=0\n\nerrno=-1\n\n\
         listen_port=9\nerrno=0\n\nerrno=-71\n\n",
        "a refused set keeps the connection, a protocol error ends it"
    );
    assert_eq!(backend.sets.lock().len(), 1);
}

struct Duplex {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl io::Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn server_on_a_socket_mode_removal_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t0.sock");
    let backend = Arc::new(MemoryBackend::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let server = UapiServer::start_at(
        &path,
        backend.clone(),
        Some(Box::new(move || tx.send(()).unwrap())),
    )
    .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // A second daemon on the same name is refused while the first lives.
    let second = UapiServer::start_at(&path, backend.clone(), None);
    assert_eq!(
        second.err().map(|e| e.kind()),
        Some(io::ErrorKind::AddrInUse)
    );

    let set = SetRequest {
        listen_port: Some(4242),
        ..Default::default()
    };
    client::set(&path, &set).unwrap();
    assert_eq!(client::get(&path).unwrap().listen_port, 4242);
    let refused = client::set(
        &path,
        &parse_set([format!("public_key={K1}").as_str()]).unwrap(),
    );
    assert!(refused.is_ok());
    assert_eq!(client::get(&path).unwrap().peers.len(), 1);

    // Removing the socket file stops the server and tells the daemon.
    std::fs::remove_file(&path).unwrap();
    rx.recv_timeout(Duration::from_secs(3))
        .expect("removal noticed");
    assert!(server.socket_removed());
    server.shutdown();

    // Shutdown removes the socket; a stale socket file is replaced.
    let server = UapiServer::start_at(&path, backend.clone(), None).unwrap();
    drop(server);
    assert!(!path.exists());
    let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
    drop(stale);
    assert!(path.exists());
    let server = UapiServer::start_at(&path, backend, None).unwrap();
    assert!(client::get(&path).is_ok());
    server.shutdown();
}

fn wg(args: &[&str]) -> std::process::Output {
    Command::new("wg")
        .args(args)
        .output()
        .expect("the wg tool (wireguard-tools) must be installed")
}

/// The stock `wg` against our server on /var/run/wireguard: needs root (fails loudly if not).
#[test]
fn real_wg_tool_show_and_set() {
    let name = format!("wgedget{}", std::process::id() % 100000);
    let backend = Arc::new(MemoryBackend::default());
    *backend.device.lock() = sample_device();
    let server = UapiServer::start(&name, backend.clone())
        .expect("bind /var/run/wireguard (run tests as root)");

    let out = wg(&["show", &name, "dump"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = dump.lines().collect();
    // Interface line: private key and public key "(none)", port, fwmark.
    assert_eq!(lines[0], "(none)\t(none)\t51820\t0x20", "{dump}");
    let b64 = |hex: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(key(hex))
    };
    assert_eq!(
        lines[1],
        format!(
            "{}\t{}\t127.0.0.1:4000\t10.0.0.2/32,fd00::2/128\t1700000000\t1000\t2000\t25",
            b64(K1),
            b64(K2)
        )
    );
    assert!(
        lines[2].starts_with(&format!(
            "{}\t(none)\t[::1]:5\t(none)\t0\t0\t0\toff",
            b64(K2)
        )),
        "{}",
        lines[2]
    );

    let out = wg(&["show", &name]);
    let pretty = String::from_utf8(out.stdout).unwrap();
    assert!(pretty.contains(&format!("interface: {name}")), "{pretty}");
    assert!(pretty.contains("listening port: 51820"), "{pretty}");
    assert!(
        pretty.contains("transfer: 1000 B received, 1.95 KiB sent"),
        "{pretty}"
    );

    // wg set: a new peer with everything, then remove the old ones.
    let k3 = x25519_dalek::PublicKey::from([9u8; 32]);
    let k3_b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(k3.as_bytes())
    };
    let out = wg(&[
        "set",
        &name,
        "listen-port",
        "4000",
        "fwmark",
        "0x44",
        "peer",
        &k3_b64,
        "endpoint",
        "127.0.0.1:7",
        "persistent-keepalive",
        "15",
        "allowed-ips",
        "10.1.0.0/16,fd01::/48",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let d = backend.device.lock();
        assert_eq!(d.listen_port, 4000);
        assert_eq!(d.fwmark, 0x44);
        let p = d
            .peers
            .iter()
            .find(|p| &p.public_key == k3.as_bytes())
            .expect("peer added");
        assert_eq!(p.endpoint, Some("127.0.0.1:7".parse().unwrap()));
        assert_eq!(p.persistent_keepalive_interval, 15);
        assert_eq!(
            p.allowed_ips,
            vec!["10.1.0.0/16".parse().unwrap(), "fd01::/48".parse().unwrap()]
        );
    }
    assert!(
        backend.sets.lock().last().unwrap().peers[0].replace_allowed_ips,
        "wg replaces allowed ips"
    );
    let out = wg(&[
        "set",
        &name,
        "peer",
        &b64(K1),
        "remove",
        "peer",
        &b64(K2),
        "remove",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(backend.device.lock().peers.len(), 1);

    // wg set private-key is refused, with a clear message from wg.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{}\n", b64(K1))).unwrap();
    let out = wg(&["set", &name, "private-key", key_file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Operation not permitted"), "{stderr}");

    // wg show lists the interface among the userspace ones.
    let out = wg(&["show", "interfaces"]);
    assert!(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|i| i == name));

    server.shutdown();
    assert!(!socket_path(&name).exists());
}

#[test]
fn keys_are_exactly_64_hex_digits_and_errors_do_not_echo_them() {
    // One wrong digit in a preshared key: refused, and the (logged) error holds no part of it.
    let psk = format!("{}x", &K2[..63]);
    let e = set_error(&format!("public_key={K1}\npreshared_key={psk}\n"));
    assert_eq!(e.errno, EINVAL);
    assert!(e.message.contains("preshared_key"), "{}", e.message);
    assert!(!e.message.contains(&K2[..63]), "{}", e.message);
    // Signs that u8::from_str_radix would take, and 64 bytes that are not 64 characters
    // (slicing them in pairs used to panic).
    for bad in ["+f".repeat(32), format!("é{}", &K1[..62])] {
        let e = set_error(&format!("public_key={bad}\n"));
        assert_eq!(e.errno, EINVAL, "{bad}");
    }
}

#[test]
fn get_reply_numbers_out_of_range_are_errors() {
    let peer = format!("public_key={K1}\n");
    for line in [
        "listen_port=70000".to_string(),
        "fwmark=4294967296".to_string(),
        format!("{peer}persistent_keepalive_interval=65536"),
        // A nanosecond count of a second or more would overflow Duration::new with a huge
        // second count, and is not a valid reply anyway.
        format!("{peer}last_handshake_time_sec=18446744073709551615\nlast_handshake_time_nsec=1000000000"),
    ] {
        let e = parse_device(&format!("{line}\nerrno=0\n\n")).unwrap_err();
        assert_eq!(e.errno, EPROTO, "{line}");
    }
}

#[test]
fn a_set_request_is_bounded_in_bytes_and_peers() {
    // Bytes: lines of a legal length, but too many of them together.
    let line = "allowed_ip=10.0.0.1/32\n".to_string();
    let mut big = format!("set=1\npublic_key={K1}\n");
    while big.len() <= MAX_REQUEST_BYTES {
        big.push_str(&line);
    }
    big.push('\n');
    let e = read_request(&mut Cursor::new(big.into_bytes())).unwrap_err();
    assert_eq!(e.errno, EPROTO, "{}", e.message);
    // Peers: one more than the device may hold.
    let mut peers = String::from("set=1\n");
    for i in 0..=MAX_PEERS {
        peers.push_str(&format!("public_key={:064x}\n", i + 1));
    }
    peers.push('\n');
    let e = read_request(&mut Cursor::new(peers.into_bytes())).unwrap_err();
    assert_eq!(e.errno, EINVAL, "{}", e.message);
    assert!(e.message.contains("peers"), "{}", e.message);
}
