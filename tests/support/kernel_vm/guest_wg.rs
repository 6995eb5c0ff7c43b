//! The guest kernel's WireGuard: interfaces made with `ip link add ... type wireguard` and
//! configured with `wg`, exactly as on a server; and traffic to and from the guest.

use std::time::Duration;

use super::vm::{KernelVm, COMMAND_TIMEOUT};
use crate::netns::Netns;
use crate::traffic::IperfResult;
use crate::wireguard::{parse_dump, PeerSpec, WgDump};

/// One kernel WireGuard interface in the guest. Removed (`ip link del`) when dropped.
pub struct GuestWg<'vm> {
    vm: &'vm KernelVm,
    pub ifname: String,
    pub listen_port: u16,
}

impl<'vm> GuestWg<'vm> {
    /// `ip link add IF type wireguard`, its private key (base64) and listen port, `addresses`
    /// (CIDR), MTU 1420, up: what wg-quick does on a server.
    pub fn create(
        vm: &'vm KernelVm,
        ifname: &str,
        private_key: &str,
        listen_port: u16,
        addresses: &[&str],
    ) -> GuestWg<'vm> {
        let key_file = format!("/tmp/{ifname}.key");
        vm.write_file(&key_file, private_key);
        let mut script = format!(
            "set -e\nip link add {ifname} type wireguard\n\
             wg set {ifname} private-key {key_file} listen-port {listen_port}\n"
        );
        for cidr in addresses {
            script.push_str(&format!("ip address add {cidr} dev {ifname}\n"));
        }
        script.push_str(&format!("ip link set {ifname} mtu 1420 up\n"));
        vm.run_ok(&script);
        GuestWg {
            vm,
            ifname: ifname.to_string(),
            listen_port,
        }
    }

    pub fn vm(&self) -> &'vm KernelVm {
        self.vm
    }

    /// Adds or updates a peer (`wg set IF peer ...`); its preshared key, if any, goes through a
    /// 0600 file in the guest.
    pub fn set_peer(&self, peer: &PeerSpec) {
        let mut plain = peer.clone();
        plain.preshared_key = None;
        let mut args = plain.wg_set_args();
        if let Some(psk) = &peer.preshared_key {
            let file = format!("/tmp/{}-{}.psk", self.ifname, self.vm.next_index());
            self.vm.write_file(&file, psk);
            args.push("preshared-key".into());
            args.push(file);
        }
        self.set(&args.join(" "));
    }

    /// `wg set IF <args>` (words separated by spaces).
    pub fn set(&self, args: &str) {
        self.vm.run_ok(&format!("wg set {} {args}", self.ifname));
    }

    /// `wg show IF dump`, parsed.
    pub fn dump(&self) -> WgDump {
        let text = self.vm.run_ok(&format!("wg show {} dump", self.ifname));
        parse_dump(&text).unwrap_or_else(|| {
            self.vm.fail(&format!(
                "cannot parse the guest's `wg show {} dump`:\n{text}",
                self.ifname
            ))
        })
    }

    /// `wg show IF` as a person reads it.
    pub fn show(&self) -> String {
        self.vm.run_ok(&format!("wg show {}", self.ifname))
    }

    /// The public key the kernel derived from the private key.
    pub fn public_key(&self) -> String {
        self.dump().public_key
    }
}

impl Drop for GuestWg<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.vm.run(&format!("ip link del {}", self.ifname));
        }
    }
}

impl KernelVm {
    /// `count` pings from the guest to `addr`, 0.2 s apart; true if every one was answered.
    pub fn ping(&self, addr: &str, count: u32) -> bool {
        self.run(&format!("ping -q -c {count} -i 0.2 -W 2 {addr}"))
            .success()
    }

    /// Pings `addr` from the guest once a second until one is answered, for at most `timeout`.
    pub fn ping_until_reply(&self, addr: &str, timeout: Duration) -> bool {
        let tries = timeout.as_secs().max(1);
        self.run_with_timeout(
            &format!(
                "i=0; while [ $i -lt {tries} ]; do ping -q -c 1 -W 1 {addr} >/dev/null && exit 0; \
                 i=$((i+1)); done; exit 1"
            ),
            timeout + COMMAND_TIMEOUT,
        )
        .success()
    }

    /// A one-shot iperf3 server in the guest, bound to `addr`:`port`.
    pub fn start_iperf3_server(&self, addr: &str, port: u16) {
        self.run_ok(&format!(
            "iperf3 -s -1 -D -B {addr} -p {port} --logfile /tmp/iperf3-{port}.log\n\
             i=0; while ! netstat -ltn | grep -q ':{port} '; do \
             i=$((i+1)); [ $i -gt 100 ] && exit 1; sleep 0.1; done"
        ));
    }
}

/// A TCP iperf3 transfer between `client_ns` on the host and the server the guest started on
/// `addr`:`port` (`start_iperf3_server`): host to guest, or guest to host when `reverse`.
pub fn iperf3_with_guest(
    client_ns: &Netns,
    addr: &str,
    port: u16,
    seconds: u32,
    reverse: bool,
) -> IperfResult {
    let port = port.to_string();
    let seconds = seconds.to_string();
    let mut argv = vec![
        "iperf3",
        "-c",
        addr,
        "-p",
        &port,
        "-t",
        &seconds,
        "-J",
        "--connect-timeout",
        "10000",
    ];
    if reverse {
        argv.push("-R");
    }
    let output = client_ns.output(&argv);
    let text = String::from_utf8_lossy(&output.stdout);
    crate::traffic::parse_iperf3_json(&text).unwrap_or_else(|e| {
        panic!(
            "iperf3 {argv:?} failed: {e}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}
