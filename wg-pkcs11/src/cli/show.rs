//! `show`: the interface's state over its UAPI socket, printed the way `wg show` prints it,
//! plus the interface public key (which `wg show` cannot know for a token-backed key).

use std::time::{Duration, SystemTime};

use base64::Engine;
use wg_pkcs11::uapi::{self, DeviceInfo};

fn b64(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

pub fn show(ifname: &str) -> Result<(), String> {
    let device = uapi::client::get(&uapi::socket_path(ifname))
        .map_err(|e| format!("interface `{ifname}`: {}", e.message))?;
    print!("{}", format_device(ifname, &device, SystemTime::now()));
    Ok(())
}

pub fn show_all() -> Result<(), String> {
    let names = uapi::client::interface_names();
    let mut first = true;
    for name in names {
        match uapi::client::get(&uapi::socket_path(&name)) {
            Ok(device) => {
                if !first {
                    println!();
                }
                first = false;
                print!("{}", format_device(&name, &device, SystemTime::now()));
            }
            Err(e) => log::warn!("interface `{name}`: {}", e.message),
        }
    }
    Ok(())
}

fn plural(n: u64, unit: &str) -> String {
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// `1 day, 2 hours, 3 minutes, 4 seconds` as wg prints it.
pub fn format_ago(elapsed: Duration) -> String {
    let mut secs = elapsed.as_secs();
    if secs == 0 {
        return "Now".to_string();
    }
    let mut parts = Vec::new();
    for (size, unit) in [
        (365 * 86400, "year"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
        (1, "second"),
    ] {
        if secs >= size {
            parts.push(plural(secs / size, unit));
            secs %= size;
        }
    }
    format!("{} ago", parts.join(", "))
}

/// `1.95 KiB` as wg prints byte counts.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, unit) in UNITS {
        if bytes >= size {
            return format!("{:.2} {unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} B")
}

pub fn format_device(ifname: &str, device: &DeviceInfo, now: SystemTime) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "interface: {ifname}");
    if let Some(key) = &device.public_key {
        let _ = writeln!(out, "  public key: {}", b64(key));
        let _ = match device.key_in_hardware {
            Some(false) => writeln!(
                out,
                "  private key: NOT IN HARDWARE (a software key or token: it can be copied)"
            ),
            _ => writeln!(out, "  private key: (in the PKCS#11 token)"),
        };
    }
    out.push_str(&super::show_health::format_health(device));
    out.push_str(&super::show_health::format_stats(device));
    if device.listen_port != 0 {
        let _ = writeln!(out, "  listening port: {}", device.listen_port);
    }
    if device.fwmark != 0 {
        let _ = writeln!(out, "  fwmark: 0x{:x}", device.fwmark);
    }
    let mut peers = device.peers.clone();
    // Most recent handshake first, as wg sorts them.
    peers.sort_by_key(|p| std::cmp::Reverse(p.last_handshake));
    for peer in &peers {
        let _ = writeln!(out, "\npeer: {}", b64(&peer.public_key));
        if peer.preshared_key.is_some() {
            let _ = writeln!(out, "  preshared key: (hidden)");
        }
        if let Some(endpoint) = peer.endpoint {
            let _ = writeln!(out, "  endpoint: {endpoint}");
        }
        let ips: Vec<String> = peer.allowed_ips.iter().map(|c| c.to_string()).collect();
        let ips = if ips.is_empty() {
            "(none)".to_string()
        } else {
            ips.join(", ")
        };
        let _ = writeln!(out, "  allowed ips: {ips}");
        if let Some(at) = peer.last_handshake {
            let elapsed = now
                .duration_since(SystemTime::UNIX_EPOCH + at)
                .unwrap_or_default();
            let _ = writeln!(out, "  latest handshake: {}", format_ago(elapsed));
        }
        if peer.rx_bytes != 0 || peer.tx_bytes != 0 {
            let _ = writeln!(
                out,
                "  transfer: {} received, {} sent",
                format_bytes(peer.rx_bytes),
                format_bytes(peer.tx_bytes)
            );
        }
        if peer.persistent_keepalive_interval != 0 {
            let _ = writeln!(
                out,
                "  persistent keepalive: every {}",
                plural(peer.persistent_keepalive_interval as u64, "second")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wg_pkcs11::uapi::PeerInfo;

    #[test]
    fn formats_like_wg() {
        assert_eq!(format_ago(Duration::from_secs(0)), "Now");
        assert_eq!(format_ago(Duration::from_secs(1)), "1 second ago");
        assert_eq!(
            format_ago(Duration::from_secs(3 * 60 + 2)),
            "3 minutes, 2 seconds ago"
        );
        assert_eq!(
            format_ago(Duration::from_secs(86400 + 3600)),
            "1 day, 1 hour ago"
        );
        assert_eq!(format_bytes(1000), "1000 B");
        assert_eq!(format_bytes(2000), "1.95 KiB");
        assert_eq!(format_bytes(5 << 20), "5.00 MiB");
        assert_eq!(format_bytes(3 << 30), "3.00 GiB");
    }

    #[test]
    fn device_output() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        let device = DeviceInfo {
            public_key: Some([1; 32]),
            key_in_hardware: Some(true),
            listen_port: 51820,
            fwmark: 0xca6c,
            peers: vec![
                PeerInfo {
                    public_key: [2; 32],
                    ..Default::default()
                },
                PeerInfo {
                    public_key: [3; 32],
                    preshared_key: Some([4; 32]),
                    endpoint: Some("10.0.0.1:51820".parse().unwrap()),
                    last_handshake: Some(Duration::from_secs(1_700_000_000)),
                    rx_bytes: 100,
                    tx_bytes: 4096,
                    persistent_keepalive_interval: 25,
                    allowed_ips: vec!["10.8.0.0/24".parse().unwrap(), "fd08::/64".parse().unwrap()],
                    session_static_key: None,
                },
            ],
            extensions: Vec::new(),
        };
        let text = format_device("wg0", &device, now);
        let expected = format!(
            "interface: wg0\n  public key: {}\n  private key: (in the PKCS#11 token)\n  listening port: 51820\n  fwmark: 0xca6c\n\
             \npeer: {}\n  preshared key: (hidden)\n  endpoint: 10.0.0.1:51820\n  allowed ips: 10.8.0.0/24, fd08::/64\n\
             \x20 latest handshake: 1 minute, 40 seconds ago\n  transfer: 100 B received, 4.00 KiB sent\n\
             \x20 persistent keepalive: every 25 seconds\n\
             \npeer: {}\n  allowed ips: (none)\n",
            b64(&[1; 32]),
            b64(&[3; 32]),
            b64(&[2; 32])
        );
        assert_eq!(text, expected);
        let software = DeviceInfo {
            key_in_hardware: Some(false),
            ..device
        };
        let text = format_device("wg0", &software, now);
        assert!(text.contains("private key: NOT IN HARDWARE"), "{text}");
    }
}
