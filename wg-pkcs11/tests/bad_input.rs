//! Every parser of input from outside the daemon (config files, key URIs, UAPI requests, and
//! each message type off the wire) fed thousands of random and mutated inputs: each must answer
//! with a value or a clear error, never a panic; no daemon dies from a packet. The inputs come
//! from a fixed-seed PRNG, so a failure repeats; the panic message names the input.

use std::io::Cursor;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use wg_pkcs11::config::Config;
use wg_pkcs11::cookie::CookieChecker;
use wg_pkcs11::key::{SoftKey, StaticKey};
use wg_pkcs11::noise::handshake::{consume_initiation, Identity};
use wg_pkcs11::noise::index::IndexTable;
use wg_pkcs11::noise::{message_type, TRANSPORT_HEADER_LEN};
use wg_pkcs11::peer::Peer;
use wg_pkcs11::uapi::{parse_device, read_request};
use wg_pkcs11::uri::Pkcs11Uri;

/// xorshift64*: reproducible, spread enough to reach every branch of a length check.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.byte()).collect()
    }

    /// A valid input damaged the ways a network or an attacker damages one: bytes changed,
    /// inserted, removed, the end cut off or extended; text given the characters parsers
    /// split on, and multi-byte UTF-8.
    fn mutate(&mut self, valid: &[u8]) -> Vec<u8> {
        const SPECIAL: &[&[u8]] = &[
            b"=",
            b";",
            b"?",
            b"&",
            b"%",
            b"%4",
            b"/",
            b":",
            b"[",
            b"]",
            b"\n",
            b" ",
            b",",
            b"#",
            b"0",
            b"-",
            "é".as_bytes(),
            "€".as_bytes(),
            b"\xff",
            b"\0",
        ];
        let mut out = valid.to_vec();
        for _ in 0..=self.below(3) {
            let at = if out.is_empty() {
                0
            } else {
                self.below(out.len())
            };
            match self.below(7) {
                0 if !out.is_empty() => out[at] ^= 1 << self.below(8),
                1 if !out.is_empty() => out[at] = self.byte(),
                2 => {
                    let special = SPECIAL[self.below(SPECIAL.len())];
                    out.splice(at..at, special.iter().copied());
                }
                3 => out.insert(at, self.byte()),
                4 if !out.is_empty() => {
                    let end = (at + 1 + self.below(8)).min(out.len());
                    out.drain(at..end);
                }
                5 => out.truncate(at),
                _ => {
                    let tail = self.bytes(8);
                    out.extend(tail)
                }
            }
        }
        out
    }

    /// Half random bytes, half mutations of one of `valid`.
    fn input(&mut self, valid: &[Vec<u8>], max_len: usize) -> Vec<u8> {
        if valid.is_empty() || self.below(4) == 0 {
            self.bytes(max_len)
        } else {
            let pick = self.below(valid.len());
            self.mutate(&valid[pick])
        }
    }
}

fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// Runs `check` on `input`; a panic becomes a test failure that names the input.
fn must_not_panic(what: &str, input: &[u8], check: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(check)).is_err() {
        panic!("{what} panicked on input {}", show(input));
    }
}

fn clear_error(what: &str, input: &[u8], e: impl std::fmt::Display) {
    assert!(
        !e.to_string().trim().is_empty(),
        "{what}: empty error on {}",
        show(input)
    );
}

const ROUNDS: usize = 20_000;
const K1: &str = "GDjTSRtzOzAJXQAxj+b2FsC6Nmv7OEFMoHjIyc4VTlE=";
const K2: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";

#[test]
fn config_parse_never_panics() {
    let valid: Vec<Vec<u8>> = [
        format!(
            "[Interface]\nPrivateKey = {K1}\nListenPort = 51820\nAddress = 10.0.0.1/24, fd00::1/64\n\
             MTU = 1420\nFwMark = 0x10\nTable = off\nPostUp = echo up %i\n\n\
             [Peer]\nPublicKey = {K2}\nPresharedKey = {K1}\nAllowedIPs = 0.0.0.0/0, ::/0\n\
             Endpoint = [fd00::2]:51820\nPersistentKeepalive = 25\n"
        ),
        format!(
            "[Interface]\nPrivateKey = pkcs11:token=SE050;object=wg?module-name=se050&pin-value=1234\n\
             [Peer]\nPublicKey = {K2}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 10.0.0.2/32\n"
        ),
    ]
    .map(String::into_bytes)
    .to_vec();
    let mut rng = Rng::new(11);
    let mut accepted = 0;
    for _ in 0..ROUNDS / 2 {
        let input = rng.input(&valid, 300);
        // Parsing is pure (an Endpoint host name is resolved only at `up`), so every
        // mutation can be parsed: none sends a lookup.
        let text = String::from_utf8_lossy(&input);
        must_not_panic("Config::parse", &input, || {
            match Config::parse(Path::new("wg0.conf"), &text) {
                Ok(_) => accepted += 1,
                Err(e) => clear_error("Config::parse", &input, e),
            }
        });
    }
    assert!(
        accepted > 0,
        "no mutation was accepted: the inputs are all trivially wrong"
    );
}

#[test]
fn pkcs11_uri_parse_never_panics() {
    let valid: Vec<Vec<u8>> = [
        "pkcs11:token=SE050%20virtual;object=wg-key;type=private;id=%01%02",
        "pkcs11:object=k?pin-value=12%2634&module-name=se050&module-path=/opt/x.so",
        "PKCS11:manufacturer=NXP;serial=0001?pin-source=file:/etc/pin",
        "pkcs11:",
    ]
    .map(|s| s.as_bytes().to_vec())
    .to_vec();
    let mut rng = Rng::new(12);
    for _ in 0..ROUNDS {
        let input = rng.input(&valid, 100);
        let text = String::from_utf8_lossy(&input);
        must_not_panic("Pkcs11Uri::parse", &input, || {
            match Pkcs11Uri::parse(&text) {
                // What parses prints as a URI that parses to the same thing.
                Ok(uri) => assert_eq!(Pkcs11Uri::parse(&uri.to_string()).as_ref(), Ok(&uri)),
                Err(e) => clear_error("Pkcs11Uri::parse", &input, e),
            }
        });
    }
}

#[test]
fn uapi_request_and_reply_parse_never_panic() {
    let valid: Vec<Vec<u8>> = [
        "get=1\n\n".to_string(),
        format!(
            "set=1\nprivate_key=00\nlisten_port=51820\nfwmark=7\nreplace_peers=true\n\
             public_key={}\nupdate_only=true\npreshared_key={}\nendpoint=[fd00::1]:4000\n\
             persistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.0.0.0/24\n\
             allowed_ip=fd00::/64\nprotocol_version=1\nremove=true\n\n",
            "11".repeat(32),
            "22".repeat(32)
        ),
        format!(
            "private_key=00\nlisten_port=51820\nfwmark=7\npublic_key={}\npreshared_key={}\n\
             endpoint=192.0.2.1:51820\nlast_handshake_time_sec=1700000000\n\
             last_handshake_time_nsec=999999999\nrx_bytes=1\ntx_bytes=2\n\
             persistent_keepalive_interval=25\nallowed_ip=10.0.0.0/24\nerrno=0\n\n",
            "11".repeat(32),
            "22".repeat(32)
        ),
    ]
    .map(String::into_bytes)
    .to_vec();
    let mut rng = Rng::new(13);
    for _ in 0..ROUNDS {
        let input = rng.input(&valid, 200);
        must_not_panic("read_request", &input, || {
            if let Err(e) = read_request(&mut Cursor::new(&input)) {
                clear_error("read_request", &input, e);
            }
        });
        must_not_panic("parse_device", &input, || {
            if let Err(e) = parse_device(&String::from_utf8_lossy(&input)) {
                clear_error("parse_device", &input, e);
            }
        });
    }
}

/// Two parties with software keys, each knowing the other as a peer.
struct Party {
    id: Identity,
    table: IndexTable<Peer>,
    peer: Arc<Peer>,
}

fn parties(now: Instant) -> (Party, Party) {
    let a: Arc<dyn StaticKey> = Arc::new(SoftKey::generate());
    let b: Arc<dyn StaticKey> = Arc::new(SoftKey::generate());
    let party = |own: &Arc<dyn StaticKey>, other: &Arc<dyn StaticKey>| Party {
        id: Identity::new(own.clone()),
        table: IndexTable::new(),
        peer: Peer::new(other.public_key(), Some([7; 32]), None, 0, now),
    };
    (party(&a, &b), party(&b, &a))
}

const SRC: &str = "192.0.2.1:51820";

#[test]
fn handshake_cookie_and_transport_messages_never_panic() {
    let now = Instant::now();
    let src: SocketAddr = SRC.parse().unwrap();
    let (alice, bob) = parties(now);
    let bob_checker = CookieChecker::new(&bob.id.public_key());

    // One real exchange gives valid messages of every type to mutate.
    let initiation = alice
        .peer
        .create_initiation(&alice.id, &alice.table, false, now)
        .unwrap();
    let received = consume_initiation(&bob.id, &initiation).unwrap();
    let response = bob
        .peer
        .accept_initiation(&bob.id, &bob.table, received, src, now)
        .unwrap();
    let cookie_reply = bob_checker
        .create_cookie_reply(&response, src, now)
        .expect("a cookie reply to a response with a valid mac1");
    alice
        .peer
        .consume_response(&alice.id, &alice.table, &response, src, now)
        .unwrap();
    let sending = alice.peer.current_keypair(now).unwrap();
    let mut transport = vec![0u8; 200];
    transport[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + 20].fill(0x45);
    let len = sending.encrypt(&mut transport, 20, now).unwrap();
    transport.truncate(len);
    let receiving = bob
        .peer
        .keypair_for_index(sending.remote_index())
        .expect("bob's session for alice's index");

    let valid = vec![
        initiation.to_vec(),
        response.to_vec(),
        cookie_reply.to_vec(),
        transport.clone(),
    ];
    let mut rng = Rng::new(14);
    let mut opened = 0;
    for _ in 0..ROUNDS / 4 {
        let input = rng.input(&valid, 200);
        must_not_panic("message parsing", &input, || {
            let _ = message_type(&input);
            if bob_checker.check_mac1(&input) {
                let _ = bob_checker.check_mac2(&input, src, now);
                let _ = bob_checker.create_cookie_reply(&input, src, now);
                if let Err(e) = consume_initiation(&bob.id, &input) {
                    clear_error("consume_initiation", &input, e);
                }
            }
            if let Err(e) = alice
                .peer
                .consume_response(&alice.id, &alice.table, &input, src, now)
            {
                clear_error("consume_response", &input, e);
            }
            if let Err(e) = alice.peer.consume_cookie_reply(&input, now) {
                clear_error("consume_cookie_reply", &input, e);
            }
            let mut buf = input.clone();
            match receiving.decrypt(&mut buf, now) {
                Ok(n) => {
                    assert!(n + TRANSPORT_HEADER_LEN <= buf.len());
                    opened += 1;
                }
                Err(e) => clear_error("Keypair::decrypt", &input, e),
            }
        });
    }
    // The transport message itself went through once; every forgery was refused.
    assert!(
        opened <= 1,
        "{opened} damaged transport messages were accepted"
    );
}
