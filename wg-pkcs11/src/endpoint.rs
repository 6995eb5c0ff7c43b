//! A peer's `Endpoint` as written in a config file, and its resolution.
//!
//! Parsing is pure: `host.example:51820` stays a name until the interface is brought up,
//! so a config can be read (and fuzzed, and tested) without a DNS lookup. `up` resolves
//! every name once ([`crate::config::Config::resolve_endpoints`]); afterwards a
//! [`Reresolver`] resolves a name again while its peer has had no handshake for
//! [`RERESOLVE_AFTER`], as wireguard-tools' `reresolve-dns.sh` does for a peer whose
//! address changed behind a dynamic DNS name. The resolver is a parameter everywhere, so
//! tests count lookups and never ask the system's.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, SystemTime};

/// Looks up a host name: the system's ([`system_resolver`]) or a test's.
pub type Resolver<'a> = &'a dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

/// getaddrinfo(3), through the standard library.
pub fn system_resolver(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

/// A peer whose last handshake is older than this has its endpoint name resolved again
/// (wireguard-tools' reresolve-dns.sh uses the same 135 s: REKEY_TIMEOUT plus KEEPALIVE
/// plus REKEY_AFTER_TIME's slack, after which a live peer would have handshaken).
pub const RERESOLVE_AFTER: Duration = Duration::from_secs(135);

/// How often `up` looks for peers to resolve again (reresolve-dns.sh runs every 30 s).
pub const RERESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// `Endpoint = HOST:PORT` as written, with the address it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// An IP address or a host name (without the brackets of an IPv6 address).
    pub host: String,
    pub port: u16,
    /// Known at parse time for an IP address; for a name, after [`Endpoint::resolve`].
    address: Option<SocketAddr>,
}

impl Endpoint {
    /// `1.2.3.4:51820`, `[fd00::1]:51820` or `host.example:51820`; nothing is looked up.
    pub fn parse(value: &str) -> Result<Endpoint, String> {
        let (host, port) = if let Some(rest) = value.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{value}`: `[` without `]`"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| format!("`{value}`: expected `:PORT` after `]`"))?;
            (host, port)
        } else {
            let (host, port) = value
                .rsplit_once(':')
                .ok_or_else(|| format!("`{value}`: expected HOST:PORT"))?;
            if host.contains(':') {
                return Err(format!(
                    "`{value}`: an IPv6 endpoint must be written [ADDRESS]:PORT"
                ));
            }
            (host, port)
        };
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{value}`: port `{port}` is not a number from 0 to 65535"))?;
        if host.is_empty() {
            return Err(format!("`{value}`: no host"));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Endpoint::from(SocketAddr::new(ip, port)));
        }
        if value.starts_with('[') {
            return Err(format!("`{value}`: `{host}` is not an IPv6 address"));
        }
        if !is_host_name(host) {
            return Err(format!(
                "`{value}`: `{host}` is not an IP address or a host name"
            ));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
            address: None,
        })
    }

    /// Whether the host is a name (to resolve), not an IP address.
    pub fn is_name(&self) -> bool {
        self.host.parse::<IpAddr>().is_err()
    }

    /// The address: at once for an IP address, after [`Endpoint::resolve`] for a name.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// Look the name up (an IP address is its own answer) and keep the first address.
    pub fn resolve(&mut self, resolver: Resolver) -> Result<SocketAddr, String> {
        if let Some(address) = self.address.filter(|_| !self.is_name()) {
            return Ok(address);
        }
        let address = resolver(&self.host, self.port)
            .map_err(|e| format!("`{self}`: cannot resolve `{}`: {e}", self.host))?
            .into_iter()
            .next()
            .ok_or_else(|| format!("`{self}`: `{}` has no address", self.host))?;
        self.address = Some(address);
        Ok(address)
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(address: SocketAddr) -> Endpoint {
        Endpoint {
            host: address.ip().to_string(),
            port: address.port(),
            address: Some(address),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// RFC 1123 host name characters: what a resolver could be asked about at all.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// What the re-resolution needs to know of a running peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    /// Since the Unix epoch; `None` if never.
    pub last_handshake: Option<Duration>,
}

/// Resolves host-name endpoints again for peers that have gone quiet.
pub struct Reresolver {
    peers: Vec<([u8; 32], Endpoint)>,
}

impl Reresolver {
    /// For the peers of a config whose endpoint is a host name.
    pub fn new(peers: impl IntoIterator<Item = ([u8; 32], Endpoint)>) -> Reresolver {
        Reresolver {
            peers: peers.into_iter().filter(|(_, e)| e.is_name()).collect(),
        }
    }

    /// Whether there is any name to watch.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Resolve the name of every watched peer whose last handshake is older than
    /// [`RERESOLVE_AFTER`] at `now` (or that never had one); returns the peers whose
    /// endpoint should change. A failed lookup is logged and tried again next time.
    pub fn check(
        &mut self,
        running: &[PeerState],
        now: SystemTime,
        resolver: Resolver,
    ) -> Vec<([u8; 32], SocketAddr)> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut changes = Vec::new();
        for (key, endpoint) in &mut self.peers {
            let Some(peer) = running.iter().find(|p| p.public_key == *key) else {
                continue;
            };
            let quiet = peer
                .last_handshake
                .is_none_or(|at| now.saturating_sub(at) > RERESOLVE_AFTER);
            if !quiet {
                continue;
            }
            match endpoint.resolve(resolver) {
                Ok(address) if peer.endpoint != Some(address) => changes.push((*key, address)),
                Ok(_) => {}
                Err(e) => log::warn!("re-resolving a peer's endpoint: {e}"),
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn forms_parse_without_a_lookup() {
        let literal = Endpoint::parse("1.2.3.4:5").unwrap();
        assert_eq!(literal.address(), Some("1.2.3.4:5".parse().unwrap()));
        assert!(!literal.is_name());
        let v6 = Endpoint::parse("[fd00::1]:51820").unwrap();
        assert_eq!(v6.address(), Some("[fd00::1]:51820".parse().unwrap()));
        assert_eq!(v6.to_string(), "[fd00::1]:51820");
        // A name that no resolver knows still parses: it is looked up at `up`, not here.
        let name = Endpoint::parse("vpn.example.invalid:51820").unwrap();
        assert!(name.is_name());
        assert_eq!(name.address(), None);
        assert_eq!(name.to_string(), "vpn.example.invalid:51820");
        for bad in [
            "1.2.3.4",
            "fd00::1:80",
            "[fd00::1]",
            "[fd00::1:80",
            "[nothost]:1",
            ":80",
            "1.2.3.4:99999",
            "a b:1",
            "a..b:1",
            "x/y:1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} should fail");
        }
    }

    /// A resolver that knows one name and counts what it is asked.
    fn counting(table: &[(&str, &str)]) -> (RefCell<Vec<String>>, Vec<(String, IpAddr)>) {
        (
            RefCell::new(vec![]),
            table
                .iter()
                .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
                .collect(),
        )
    }

    fn lookup(
        asked: &RefCell<Vec<String>>,
        table: &[(String, IpAddr)],
        host: &str,
        port: u16,
    ) -> io::Result<Vec<SocketAddr>> {
        asked.borrow_mut().push(host.to_string());
        table
            .iter()
            .find(|(n, _)| n == host)
            .map(|(_, a)| vec![SocketAddr::new(*a, port)])
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "unknown host"))
    }

    #[test]
    fn resolve_uses_the_given_resolver_and_names_failures() {
        let (asked, table) = counting(&[("peer.test", "192.0.2.7")]);
        let resolver = |h: &str, p| lookup(&asked, &table, h, p);
        let mut e = Endpoint::parse("peer.test:4000").unwrap();
        assert_eq!(
            e.resolve(&resolver).unwrap(),
            "192.0.2.7:4000".parse().unwrap()
        );
        assert_eq!(e.address(), Some("192.0.2.7:4000".parse().unwrap()));
        let mut literal = Endpoint::parse("192.0.2.1:1").unwrap();
        literal.resolve(&resolver).unwrap();
        assert_eq!(
            *asked.borrow(),
            ["peer.test"],
            "an IP address is never looked up"
        );
        let err = Endpoint::parse("other.test:1")
            .unwrap()
            .resolve(&resolver)
            .unwrap_err();
        assert!(err.contains("cannot resolve `other.test`"), "{err}");
    }

    #[test]
    fn only_quiet_named_peers_are_resolved_again() {
        let (asked, table) = counting(&[("a.test", "192.0.2.1"), ("b.test", "192.0.2.2")]);
        let resolver = |h: &str, p| lookup(&asked, &table, h, p);
        let key = |n: u8| [n; 32];
        let mut reresolver = Reresolver::new([
            (key(1), Endpoint::parse("a.test:1").unwrap()),
            (key(2), Endpoint::parse("b.test:2").unwrap()),
            (key(3), Endpoint::parse("192.0.2.3:3").unwrap()),
        ]);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let at = |ago: u64| Some(Duration::from_secs(10_000 - ago));
        let state = |n: u8, endpoint: &str, last_handshake| PeerState {
            public_key: key(n),
            endpoint: Some(endpoint.parse().unwrap()),
            last_handshake,
        };
        // Peer 1 handshook 10 s ago: left alone. Peer 2's last handshake is 136 s old and
        // its name now points elsewhere. Peer 3 has an IP address: never looked up.
        let running = [
            state(1, "198.51.100.1:1", at(10)),
            state(2, "198.51.100.2:2", at(136)),
            state(3, "198.51.100.3:3", None),
        ];
        let changes = reresolver.check(&running, now, &resolver);
        assert_eq!(changes, vec![(key(2), "192.0.2.2:2".parse().unwrap())]);
        assert_eq!(*asked.borrow(), ["b.test"]);
        // At exactly 135 s a peer is not yet quiet; an unchanged answer changes nothing.
        let running = [
            state(1, "198.51.100.1:1", at(135)),
            state(2, "192.0.2.2:2", None),
        ];
        assert!(reresolver.check(&running, now, &resolver).is_empty());
        assert_eq!(*asked.borrow(), ["b.test", "b.test"]);
    }
}
