//! What wg-quick does around the tunnel: addresses, MTU, link up, DNS, routes for AllowedIPs
//! (with fwmark policy routing for default routes), and the PreUp/PostUp/PreDown/PostDown hooks,
//! all through ip(8) as wg-quick does it, and undone in reverse order on the way down.
//!
//! The daemon's sequence (see main.rs):
//! ```text
//! NetConfig::new   decide the fwmark/table for default routes (the device needs the mark)
//! pre_up           PreUp hooks                      (before the TUN exists)
//!   ... the device creates the TUN ...
//! configure        addresses, MTU + up, DNS, routes, PostUp hooks
//!   ... running ...
//! deconfigure      PreDown hooks, then every change undone in reverse
//!   ... the device closes the TUN ...
//! post_down        PostDown hooks
//! ```
//! Everything is done with child processes (`ip`, `resolvconf`, `bash`), so it works the same
//! inside a network namespace (`ip netns exec NS wg-pkcs11 up ...`).

use std::fmt;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use crate::config::{Cidr, Config, Table};

/// The table (and fwmark) wg-quick starts looking from for default routes.
pub const DEFAULT_ROUTE_TABLE: u32 = 51820;
/// The MTU when nothing better is known (1500 minus WireGuard's worst-case IPv6 overhead).
pub const DEFAULT_MTU: u32 = 1420;
/// IPv6 header (40) + UDP (8) + WireGuard data header (16) + tag (16).
pub const WIREGUARD_OVERHEAD: u32 = 80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetError(pub String);

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NetError {}

/// One change to take back on the way down.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Undo {
    /// Run this command (ip ... del / rule delete / resolvconf -d), ignoring failure: the link
    /// may already be gone and have taken its addresses and routes with it.
    Command(Vec<String>),
}

/// The network configuration of one interface, applied and undone.
pub struct NetConfig {
    ifname: String,
    addresses: Vec<Cidr>,
    dns: Vec<String>,
    mtu: Option<u32>,
    table: Table,
    /// Default routes go to this table, selected by `not fwmark` rules (Table = auto).
    policy_table: Option<u32>,
    allowed_ips: Vec<Cidr>,
    endpoints: Vec<IpAddr>,
    pre_up: Vec<String>,
    post_up: Vec<String>,
    pre_down: Vec<String>,
    post_down: Vec<String>,
    undo: Vec<Undo>,
    /// Prepended to every command: tests use `ip netns exec NS`.
    prefix: Vec<String>,
}

impl NetConfig {
    /// Plan the configuration of `ifname`. If a peer routes a default route (0.0.0.0/0 or ::/0)
    /// with Table = auto and no FwMark is set, pick a free table number as wg-quick does and
    /// write it into `config.interface.fwmark`: the device must mark its own UDP packets with it
    /// so that they do not loop into the tunnel.
    pub fn new(ifname: &str, config: &mut Config) -> NetConfig {
        NetConfig::with_prefix(ifname, config, Vec::new())
    }

    /// As [`NetConfig::new`], running every command behind `prefix` (e.g. `ip netns exec NS`).
    pub fn with_prefix(ifname: &str, config: &mut Config, prefix: Vec<String>) -> NetConfig {
        let mut allowed_ips: Vec<Cidr> = config
            .peers
            .iter()
            .flat_map(|p| p.allowed_ips.iter().map(Cidr::network))
            .collect();
        // Most specific first, as wg-quick sorts them; and no duplicates.
        allowed_ips.sort_by(|a, b| b.prefix.cmp(&a.prefix).then(a.addr.cmp(&b.addr)));
        allowed_ips.dedup();
        let mut net = NetConfig {
            ifname: ifname.to_string(),
            addresses: config.interface.addresses.clone(),
            dns: config.interface.dns.clone(),
            mtu: config.interface.mtu,
            table: config.interface.table.clone(),
            policy_table: None,
            allowed_ips,
            endpoints: config
                .peers
                .iter()
                .filter_map(|p| p.endpoint.as_ref().and_then(|e| e.address()))
                .map(|e| e.ip())
                .collect(),
            pre_up: config.interface.pre_up.clone(),
            post_up: config.interface.post_up.clone(),
            pre_down: config.interface.pre_down.clone(),
            post_down: config.interface.post_down.clone(),
            undo: Vec::new(),
            prefix,
        };
        let wants_default = net.allowed_ips.iter().any(Cidr::is_default_route);
        if wants_default && net.table == Table::Auto {
            let table = match config.interface.fwmark {
                Some(mark) => mark,
                None => {
                    let table = net.free_table();
                    log::info!("default route through {ifname}: fwmark and routing table {table}");
                    config.interface.fwmark = Some(table);
                    table
                }
            };
            net.policy_table = Some(table);
        }
        net
    }

    /// The routing table used for default routes, if any (also the device's fwmark).
    pub fn policy_table(&self) -> Option<u32> {
        self.policy_table
    }

    /// The first table from 51820 up with no routes in it.
    fn free_table(&self) -> u32 {
        let mut table = DEFAULT_ROUTE_TABLE;
        loop {
            let used = ["-4", "-6"].iter().any(|family| {
                self.output(&["ip", family, "route", "show", "table", &table.to_string()])
                    .map(|out| !out.trim().is_empty())
                    .unwrap_or(false)
            });
            if !used {
                return table;
            }
            table += 1;
        }
    }

    fn command(&self, argv: &[&str]) -> Command {
        let mut all: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        all.extend_from_slice(argv);
        let mut command = Command::new(all[0]);
        command.args(&all[1..]);
        command
    }

    /// Run a command that must succeed; log it as wg-quick does (`[#] ip ...`).
    fn run(&self, argv: &[&str]) -> Result<(), NetError> {
        log::info!("[#] {}", argv.join(" "));
        let output = self
            .command(argv)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| NetError(format!("cannot run `{}`: {e}", argv[0])))?;
        if !output.status.success() {
            return Err(NetError(format!(
                "`{}` failed ({}): {}",
                argv.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Run, and remember how to take it back.
    fn run_with_undo(&mut self, argv: &[&str], undo: &[&str]) -> Result<(), NetError> {
        self.run(argv)?;
        self.undo
            .push(Undo::Command(undo.iter().map(|s| s.to_string()).collect()));
        Ok(())
    }

    fn output(&self, argv: &[&str]) -> Option<String> {
        let output = self
            .command(argv)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn hooks(&self, hooks: &[String], stage: &str) -> Result<(), NetError> {
        for hook in hooks {
            let hook = hook.replace("%i", &self.ifname);
            log::info!("[#] {hook}");
            let status = self
                .command(&["bash", "-c", &hook])
                .stdin(Stdio::null())
                .status()
                .map_err(|e| NetError(format!("cannot run {stage} hook `{hook}`: {e}")))?;
            if !status.success() {
                return Err(NetError(format!("{stage} hook `{hook}` failed ({status})")));
            }
        }
        Ok(())
    }

    /// PreUp hooks: before the device exists.
    pub fn pre_up(&mut self) -> Result<(), NetError> {
        self.hooks(&self.pre_up.clone(), "PreUp")
    }

    /// Addresses, MTU and link up, DNS, routes, then PostUp hooks. On failure what was done
    /// is undone before the error is returned.
    pub fn configure(&mut self) -> Result<(), NetError> {
        let result = self.configure_steps();
        if result.is_err() {
            self.undo_all();
        }
        result
    }

    fn configure_steps(&mut self) -> Result<(), NetError> {
        let ifname = self.ifname.clone();
        for address in self.addresses.clone() {
            let family = family(&address);
            let address = address.to_string();
            self.run_with_undo(
                &["ip", family, "address", "add", &address, "dev", &ifname],
                &["ip", family, "address", "del", &address, "dev", &ifname],
            )?;
        }
        let mtu = self.mtu.unwrap_or_else(|| self.computed_mtu());
        self.run(&[
            "ip",
            "link",
            "set",
            "mtu",
            &mtu.to_string(),
            "up",
            "dev",
            &ifname,
        ])?;
        self.undo.push(Undo::Command(
            ["ip", "link", "set", "down", "dev", &ifname]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ));
        self.set_dns()?;
        for cidr in self.allowed_ips.clone() {
            self.add_route(&cidr)?;
        }
        self.hooks(&self.post_up.clone(), "PostUp")
    }

    /// wg-quick's MTU: the largest MTU on the way to any endpoint (else the default route's),
    /// minus WireGuard's overhead; 1420 when nothing is known.
    pub fn computed_mtu(&self) -> u32 {
        let mut best = 0;
        for endpoint in &self.endpoints {
            if let Some(mtu) = self.route_mtu(&["ip", "route", "get", &endpoint.to_string()]) {
                best = best.max(mtu);
            }
        }
        if best == 0 {
            for family in ["-4", "-6"] {
                if let Some(mtu) = self.route_mtu(&["ip", family, "route", "show", "default"]) {
                    best = best.max(mtu);
                    break;
                }
            }
        }
        if best == 0 {
            return DEFAULT_MTU;
        }
        best.saturating_sub(WIREGUARD_OVERHEAD).clamp(576, 65535)
    }

    /// `mtu N` on the route line, else the MTU of its `dev`.
    fn route_mtu(&self, argv: &[&str]) -> Option<u32> {
        let route = self.output(argv)?;
        let line = route.lines().next()?;
        if let Some(mtu) = word_after(line, "mtu").and_then(|m| m.parse().ok()) {
            return Some(mtu);
        }
        let dev = word_after(line, "dev")?;
        let link = self.output(&["ip", "link", "show", "dev", dev])?;
        word_after(&link, "mtu")?.parse().ok()
    }

    fn set_dns(&mut self) -> Result<(), NetError> {
        if self.dns.is_empty() {
            return Ok(());
        }
        if self
            .output(&["sh", "-c", "command -v resolvconf"])
            .is_none()
        {
            log::warn!(
                "DNS = {} not applied: resolvconf(8) is not installed",
                self.dns.join(", ")
            );
            return Ok(());
        }
        let mut input = String::new();
        let (servers, search): (Vec<&String>, Vec<&String>) =
            self.dns.iter().partition(|d| d.parse::<IpAddr>().is_ok());
        for server in servers {
            input.push_str(&format!("nameserver {server}\n"));
        }
        if !search.is_empty() {
            let domains: Vec<&str> = search.iter().map(|s| s.as_str()).collect();
            input.push_str(&format!("search {}\n", domains.join(" ")));
        }
        let record = format!("tun.{}", self.ifname);
        log::info!("[#] resolvconf -a {record} -m 0 -x");
        let mut child = self
            .command(&["resolvconf", "-a", &record, "-m", "0", "-x"])
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| NetError(format!("cannot run resolvconf: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            let _ = stdin.write_all(input.as_bytes());
        }
        let status = child
            .wait()
            .map_err(|e| NetError(format!("resolvconf: {e}")))?;
        if !status.success() {
            return Err(NetError(format!(
                "resolvconf -a {record} failed ({status})"
            )));
        }
        self.undo.push(Undo::Command(
            ["resolvconf", "-d", &record, "-f"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ));
        Ok(())
    }

    fn add_route(&mut self, cidr: &Cidr) -> Result<(), NetError> {
        let ifname = self.ifname.clone();
        let family = family(cidr);
        let prefix = cidr.to_string();
        match &self.table {
            Table::Off => Ok(()),
            Table::Named(table) => {
                let table = table.clone();
                self.run_with_undo(
                    &[
                        "ip", family, "route", "add", &prefix, "dev", &ifname, "table", &table,
                    ],
                    &[
                        "ip", family, "route", "del", &prefix, "dev", &ifname, "table", &table,
                    ],
                )
            }
            Table::Auto if cidr.is_default_route() => self.add_default_route(cidr),
            Table::Auto => {
                // Already covered by a route on this interface (e.g. its own Address subnet)?
                let covered = self
                    .output(&[
                        "ip", family, "route", "show", "dev", &ifname, "match", &prefix,
                    ])
                    .is_some_and(|out| !out.trim().is_empty());
                if covered {
                    return Ok(());
                }
                self.run_with_undo(
                    &["ip", family, "route", "add", &prefix, "dev", &ifname],
                    &["ip", family, "route", "del", &prefix, "dev", &ifname],
                )
            }
        }
    }

    /// wg-quick's policy routing: the default route goes to its own table, used by every packet
    /// not carrying the device's fwmark; the main table is still consulted first for anything
    /// more specific than a default route (suppress_prefixlength 0).
    fn add_default_route(&mut self, cidr: &Cidr) -> Result<(), NetError> {
        let table = self
            .policy_table
            .expect(
                "NetConfig::new plans a table whenever a default route is routed with Table = auto",
            )
            .to_string();
        let ifname = self.ifname.clone();
        let family = family(cidr);
        let prefix = cidr.to_string();
        self.run_with_undo(
            &[
                "ip", family, "rule", "add", "not", "fwmark", &table, "table", &table,
            ],
            &[
                "ip", family, "rule", "delete", "not", "fwmark", &table, "table", &table,
            ],
        )?;
        self.run_with_undo(
            &[
                "ip",
                family,
                "rule",
                "add",
                "table",
                "main",
                "suppress_prefixlength",
                "0",
            ],
            &[
                "ip",
                family,
                "rule",
                "delete",
                "table",
                "main",
                "suppress_prefixlength",
                "0",
            ],
        )?;
        self.run_with_undo(
            &[
                "ip", family, "route", "add", &prefix, "dev", &ifname, "table", &table,
            ],
            &[
                "ip", family, "route", "del", &prefix, "dev", &ifname, "table", &table,
            ],
        )?;
        if cidr.addr.is_ipv4() {
            // Replies to marked packets must pass reverse-path filtering, as wg-quick arranges.
            if let Err(e) = self.run(&["sysctl", "-q", "net.ipv4.conf.all.src_valid_mark=1"]) {
                log::warn!("{e}");
            }
        }
        Ok(())
    }

    fn undo_all(&mut self) {
        while let Some(Undo::Command(argv)) = self.undo.pop() {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            if let Err(e) = self.run(&argv) {
                log::debug!("undo: {e}");
            }
        }
    }

    /// PreDown hooks, then every change of `configure` taken back, newest first.
    /// Hook failures are logged, not fatal: the way down must always finish.
    pub fn deconfigure(&mut self) {
        if let Err(e) = self.hooks(&self.pre_down.clone(), "PreDown") {
            log::warn!("{e}");
        }
        self.undo_all();
    }

    /// PostDown hooks: after the device is gone.
    pub fn post_down(&mut self) {
        if let Err(e) = self.hooks(&self.post_down.clone(), "PostDown") {
            log::warn!("{e}");
        }
    }
}

fn family(cidr: &Cidr) -> &'static str {
    if cidr.addr.is_ipv4() {
        "-4"
    } else {
        "-6"
    }
}

fn word_after<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == word)?;
    words.next()
}

#[cfg(test)]
mod tests;
