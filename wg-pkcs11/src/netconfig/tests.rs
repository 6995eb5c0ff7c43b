use super::*;
use std::path::Path;

const PRIV: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const PUB_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const PUB_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

/// A network namespace with a TUN interface (as the daemon has); removed on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("wgedge-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip(8)");
        assert!(ok.success(), "ip netns add {name}: these tests need root");
        let netns = Netns { name };
        netns.ip(&["tuntap", "add", "dev", "wgt0", "mode", "tun"]);
        netns
    }

    fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.name])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn prefix(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.name]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn config(text: &str) -> Config {
    Config::parse(Path::new("wgt0.conf"), text).unwrap()
}

#[test]
fn plans_fwmark_table_only_for_default_routes_with_table_auto() {
    let text = |extra: &str, ips: &str| {
        format!("[Interface]\nPrivateKey={PRIV}\n{extra}\n[Peer]\nPublicKey={PUB_A}\nAllowedIPs={ips}\n")
    };
    let ns = Netns::new("plan");
    let mut c = config(&text("", "10.0.0.0/8"));
    let net = NetConfig::with_prefix("wgt0", &mut c, ns.prefix());
    assert_eq!((net.policy_table(), c.interface.fwmark), (None, None));
    let mut c = config(&text("", "0.0.0.0/0"));
    let net = NetConfig::with_prefix("wgt0", &mut c, ns.prefix());
    assert_eq!(
        (net.policy_table(), c.interface.fwmark),
        (Some(51820), Some(51820))
    );
    // A table already in use is skipped.
    ns.ip(&["link", "set", "wgt0", "up"]);
    ns.ip(&[
        "route",
        "add",
        "10.99.0.0/16",
        "dev",
        "wgt0",
        "table",
        "51820",
    ]);
    let mut c = config(&text("", "::/0"));
    let net = NetConfig::with_prefix("wgt0", &mut c, ns.prefix());
    assert_eq!(net.policy_table(), Some(51821));
    let mut c = config(&text("FwMark = 0x77", "0.0.0.0/0"));
    let net = NetConfig::with_prefix("wgt0", &mut c, ns.prefix());
    assert_eq!(
        (net.policy_table(), c.interface.fwmark),
        (Some(0x77), Some(0x77))
    );
    let mut c = config(&text("Table = off", "0.0.0.0/0"));
    assert_eq!(
        NetConfig::with_prefix("wgt0", &mut c, ns.prefix()).policy_table(),
        None
    );
}

#[test]
fn configure_and_undo_in_a_namespace() {
    let ns = Netns::new("cfg");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hooks.log");
    let log = log.display();
    let mut c = config(&format!(
        "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.8.0.2/24, fd08::2/64\n\
             PreUp = echo pre-up %i >> {log}\nPostUp = echo post-up %i >> {log}\n\
             PreDown = echo pre-down %i >> {log}\nPostDown = echo post-down %i >> {log}\n\
             [Peer]\nPublicKey = {PUB_A}\nAllowedIPs = 10.8.0.0/24, 10.9.0.0/16, 0.0.0.0/0, ::/0\n\
             Endpoint = 127.0.0.1:51820\n\
             [Peer]\nPublicKey = {PUB_B}\nAllowedIPs = 192.168.50.7/24, fd09::/48\n"
    ));
    let mut net = NetConfig::with_prefix("wgt0", &mut c, ns.prefix());
    assert_eq!(c.interface.fwmark, Some(51820));
    net.pre_up().unwrap();
    net.configure().unwrap();

    let addr = ns.ip(&["address", "show", "dev", "wgt0"]);
    assert!(addr.contains("inet 10.8.0.2/24"), "{addr}");
    assert!(addr.contains("inet6 fd08::2/64"), "{addr}");
    let link = ns.ip(&["link", "show", "dev", "wgt0"]);
    // No route to the endpoint (lo is down) and no default route: 1420.
    assert!(link.contains("mtu 1420") && link.contains(",UP"), "{link}");
    let routes = ns.ip(&["-4", "route", "show", "dev", "wgt0"]);
    assert!(routes.contains("10.9.0.0/16"), "{routes}");
    assert!(routes.contains("192.168.50.0/24"), "{routes}");
    // 10.8.0.0/24 comes from the address itself; not added twice.
    assert_eq!(routes.matches("10.8.0.0/24").count(), 1, "{routes}");
    let routes6 = ns.ip(&["-6", "route", "show", "dev", "wgt0"]);
    assert!(routes6.contains("fd09::/48"), "{routes6}");
    let table = ns.ip(&["-4", "route", "show", "table", "51820"]);
    assert!(table.contains("default dev wgt0"), "{table}");
    let table6 = ns.ip(&["-6", "route", "show", "table", "51820"]);
    assert!(table6.contains("default dev wgt0"), "{table6}");
    let rules = ns.ip(&["-4", "rule"]);
    assert!(
        rules.contains("not from all fwmark 0xca6c lookup 51820"),
        "{rules}"
    );
    assert!(
        rules.contains("lookup main suppress_prefixlength 0"),
        "{rules}"
    );
    assert!(ns.ip(&["-6", "rule"]).contains("lookup 51820"));

    net.deconfigure();
    net.post_down();
    let addr = ns.ip(&["address", "show", "dev", "wgt0"]);
    assert!(
        !addr.contains("10.8.0.2") && !addr.contains("fd08::2"),
        "{addr}"
    );
    assert!(!ns.ip(&["link", "show", "dev", "wgt0"]).contains(",UP"));
    assert!(!ns.ip(&["-4", "rule"]).contains("51820"));
    assert!(!ns.ip(&["-6", "rule"]).contains("51820"));
    assert!(!ns.ip(&["-4", "rule"]).contains("suppress_prefixlength"));
    assert!(ns
        .ip(&["-4", "route", "show", "table", "51820"])
        .trim()
        .is_empty());
    assert!(ns
        .ip(&["-4", "route", "show", "dev", "wgt0"])
        .trim()
        .is_empty());
    let hooks = std::fs::read_to_string(dir.path().join("hooks.log")).unwrap();
    assert_eq!(
        hooks,
        "pre-up wgt0\npost-up wgt0\npre-down wgt0\npost-down wgt0\n"
    );
}

#[test]
fn explicit_mtu_table_and_failure_rolls_back() {
    let ns = Netns::new("tbl");
    let mut c = config(&format!(
        "[Interface]\nPrivateKey = {PRIV}\nAddress = 10.7.0.1/24\nMTU = 1300\nTable = 1234\n\
             PostUp = false\n[Peer]\nPublicKey = {PUB_A}\nAllowedIPs = 0.0.0.0/0, 10.6.0.0/16\n"
    ));
    let mut net = NetConfig::with_prefix("wgt0", &mut c, ns.prefix());
    assert_eq!(c.interface.fwmark, None, "a named table needs no fwmark");
    let e = net.configure().unwrap_err();
    assert!(e.0.contains("PostUp hook `false` failed"), "{e}");
    // Everything was taken back.
    assert!(!ns
        .ip(&["address", "show", "dev", "wgt0"])
        .contains("10.7.0.1"));
    assert!(ns.ip(&["route", "show", "table", "1234"]).trim().is_empty());

    c.interface.post_up.clear();
    let mut net = NetConfig::with_prefix("wgt0", &mut c, ns.prefix());
    net.configure().unwrap();
    assert!(ns.ip(&["link", "show", "dev", "wgt0"]).contains("mtu 1300"));
    let table = ns.ip(&["route", "show", "table", "1234"]);
    assert!(
        table.contains("default dev wgt0") && table.contains("10.6.0.0/16"),
        "{table}"
    );
    net.deconfigure();
    assert!(ns.ip(&["route", "show", "table", "1234"]).trim().is_empty());
}

#[test]
fn mtu_follows_the_route_to_the_endpoint() {
    let ns = Netns::new("mtu");
    ns.ip(&["link", "set", "wgt0", "mtu", "9000", "up"]);
    ns.ip(&["address", "add", "10.5.0.1/24", "dev", "wgt0"]);
    ns.ip(&["tuntap", "add", "dev", "wgt1", "mode", "tun"]);
    let mut c = config(&format!(
            "[Interface]\nPrivateKey = {PRIV}\n[Peer]\nPublicKey = {PUB_A}\nEndpoint = 10.5.0.9:51820\n"
        ));
    let net = NetConfig::with_prefix("wgt1", &mut c, ns.prefix());
    assert_eq!(net.computed_mtu(), 9000 - 80);
    // No endpoint: the default route's device.
    ns.ip(&["route", "add", "default", "dev", "wgt0", "mtu", "1400"]);
    let mut c = config(&format!("[Interface]\nPrivateKey = {PRIV}\n"));
    let net = NetConfig::with_prefix("wgt1", &mut c, ns.prefix());
    assert_eq!(net.computed_mtu(), 1400 - 80);
}

#[test]
fn pre_up_failure_is_reported() {
    let mut c = config(&format!(
        "[Interface]\nPrivateKey = {PRIV}\nPreUp = exit 3\n"
    ));
    let mut net = NetConfig::new("wgt9", &mut c);
    let e = net.pre_up().unwrap_err();
    assert!(e.0.contains("PreUp hook `exit 3` failed"), "{e}");
}
