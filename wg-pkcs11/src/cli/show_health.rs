//! The key-health part of `show`, and `show --json` (the whole device, machine-readable).
//!
//! The health comes over UAPI as `wg_pkcs11_*` device keys (see `key::health`); a daemon that
//! sends none (a software key, another implementation) shows none, and `--json` says `null`.

use base64::Engine;
use wg_pkcs11::device::stats::HandshakeStats;
use wg_pkcs11::key::health::KeyHealth;
use wg_pkcs11::uapi::{self, DeviceInfo};

fn b64(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

pub fn health_of(device: &DeviceInfo) -> Option<KeyHealth> {
    KeyHealth::from_pairs(
        device
            .extensions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

pub fn stats_of(device: &DeviceInfo) -> Option<HandshakeStats> {
    HandshakeStats::from_pairs(
        device
            .extensions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// The handshake path's counts, under the key's health (none from a daemon that sends none).
pub fn format_stats(device: &DeviceInfo) -> String {
    use std::fmt::Write;
    let Some(s) = stats_of(device) else {
        return String::new();
    };
    let ops = if device.key_in_hardware == Some(false) {
        "key operations"
    } else {
        "chip operations"
    };
    let mut out = String::new();
    let _ = writeln!(out, "  handshakes completed: {}", s.handshakes_completed);
    let _ = writeln!(
        out,
        "  initiations dropped: {} stale, {} replayed, {} low-order",
        s.initiations_stale, s.initiations_replayed, s.initiations_low_order
    );
    let _ = writeln!(
        out,
        "  cookie replies sent under load: {}",
        s.cookie_replies_sent
    );
    let _ = writeln!(
        out,
        "  {ops}: {} ({} failed)",
        s.chip_operations, s.chip_failures
    );
    out
}

fn stats_json(s: &HandshakeStats) -> String {
    format!(
        "{{\"handshakes_completed\":{},\"initiations_stale\":{},\"initiations_replayed\":{},\
         \"initiations_low_order\":{},\"cookie_replies_sent\":{},\"chip_operations\":{},\
         \"chip_operation_failures\":{}}}",
        s.handshakes_completed,
        s.initiations_stale,
        s.initiations_replayed,
        s.initiations_low_order,
        s.cookie_replies_sent,
        s.chip_operations,
        s.chip_failures
    )
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// The lines `show` prints under the interface's keys.
pub fn format_health(device: &DeviceInfo) -> String {
    use std::fmt::Write;
    let Some(h) = health_of(device) else {
        return String::new();
    };
    let mut out = String::new();
    let _ = writeln!(out, "  key uri: {}", h.uri);
    let _ = writeln!(
        out,
        "  chip: {} (token {}, model {}, manufacturer {}, serial {})",
        h.chip, h.token_label, h.token_model, h.token_manufacturer, h.token_serial
    );
    let _ = writeln!(
        out,
        "  chip ECDH since start: {} (errors {}, reconnects {})",
        h.ecdh_count, h.errors, h.reconnects
    );
    match (h.latency_last_us, h.latency_median_us, h.latency_p99_us) {
        (Some(last), Some(median), Some(p99)) => {
            let _ = writeln!(
                out,
                "  chip latency: last {}, median {}, p99 {}",
                ms(last),
                ms(median),
                ms(p99)
            );
        }
        _ => {
            let _ = writeln!(out, "  chip latency: (no operation yet)");
        }
    }
    let _ = writeln!(out, "  pin: {}", h.pin);
    out
}

/// A JSON string literal (RFC 8259 escaping).
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_opt_u64(value: Option<u64>) -> String {
    value.map_or("null".to_string(), |v| v.to_string())
}

fn health_json(h: &KeyHealth) -> String {
    let latency = match (h.latency_last_us, h.latency_median_us, h.latency_p99_us) {
        (None, None, None) => "null".to_string(),
        (last, median, p99) => format!(
            "{{\"last\":{},\"median\":{},\"p99\":{}}}",
            json_opt_u64(last),
            json_opt_u64(median),
            json_opt_u64(p99)
        ),
    };
    format!(
        "{{\"uri\":{},\"chip\":{},\"token\":{{\"label\":{},\"manufacturer\":{},\"model\":{},\"serial\":{}}},\
         \"ecdh_count\":{},\"errors\":{},\"reconnects\":{},\"latency_us\":{latency},\"pin\":{}}}",
        json_string(&h.uri),
        json_string(&h.chip),
        json_string(&h.token_label),
        json_string(&h.token_manufacturer),
        json_string(&h.token_model),
        json_string(&h.token_serial),
        h.ecdh_count,
        h.errors,
        h.reconnects,
        json_string(&h.pin),
    )
}

/// One interface as a JSON object.
pub fn device_json(ifname: &str, device: &DeviceInfo) -> String {
    let peers: Vec<String> = device
        .peers
        .iter()
        .map(|p| {
            let ips: Vec<String> = p
                .allowed_ips
                .iter()
                .map(|c| json_string(&c.to_string()))
                .collect();
            format!(
                "{{\"public_key\":{},\"preshared_key\":{},\"endpoint\":{},\"allowed_ips\":[{}],\
                 \"latest_handshake\":{},\"rx_bytes\":{},\"tx_bytes\":{},\"persistent_keepalive\":{}}}",
                json_string(&b64(&p.public_key)),
                p.preshared_key.is_some(),
                p.endpoint
                    .map_or("null".to_string(), |e| json_string(&e.to_string())),
                ips.join(","),
                json_opt_u64(p.last_handshake.map(|d| d.as_secs())),
                p.rx_bytes,
                p.tx_bytes,
                p.persistent_keepalive_interval,
            )
        })
        .collect();
    format!(
        "{{\"interface\":{},\"public_key\":{},\"listen_port\":{},\"fwmark\":{},\"key\":{},\
         \"handshake_stats\":{},\"peers\":[{}]}}",
        json_string(ifname),
        device
            .public_key
            .map_or("null".to_string(), |k| json_string(&b64(&k))),
        device.listen_port,
        device.fwmark,
        health_of(device).map_or("null".to_string(), |h| health_json(&h)),
        stats_of(device).map_or("null".to_string(), |s| stats_json(&s)),
        peers.join(",")
    )
}

/// `show --json IFNAME`: one object.
pub fn show_json(ifname: &str) -> Result<(), String> {
    let device = uapi::client::get(&uapi::socket_path(ifname))
        .map_err(|e| format!("interface `{ifname}`: {}", e.message))?;
    println!("{}", device_json(ifname, &device));
    Ok(())
}

/// `show --json`: an array of every interface that answers.
pub fn show_all_json() -> Result<(), String> {
    let names = uapi::client::interface_names();
    let mut objects = Vec::new();
    for name in names {
        match uapi::client::get(&uapi::socket_path(&name)) {
            Ok(device) => objects.push(device_json(&name, &device)),
            Err(e) => log::warn!("interface `{name}`: {}", e.message),
        }
    }
    println!("[{}]", objects.join(","));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn health_lines_and_json() {
        let health = KeyHealth {
            uri: "pkcs11:object=wg".into(),
            chip: "virtual".into(),
            token_label: "SE050".into(),
            token_manufacturer: "NXP".into(),
            token_model: "SE050 3.1.0".into(),
            token_serial: "0102".into(),
            ecdh_count: 2,
            errors: 0,
            reconnects: 0,
            latency_last_us: Some(31_200),
            latency_median_us: Some(31_000),
            latency_p99_us: Some(33_000),
            pin: "no PIN (the token requires no login)".into(),
        };
        let device = DeviceInfo {
            public_key: Some([1; 32]),
            listen_port: 51820,
            extensions: health
                .to_pairs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..Default::default()
        };
        let text = format_health(&device);
        assert!(
            text.contains("  chip: virtual (token SE050, model SE050 3.1.0"),
            "{text}"
        );
        assert!(
            text.contains("chip ECDH since start: 2 (errors 0, reconnects 0)"),
            "{text}"
        );
        assert!(
            text.contains("last 31.20 ms, median 31.00 ms, p99 33.00 ms"),
            "{text}"
        );
        let json = device_json("wg0", &device);
        assert!(json.contains("\"ecdh_count\":2"), "{json}");
        assert!(
            json.contains("\"latency_us\":{\"last\":31200,\"median\":31000,\"p99\":33000}"),
            "{json}"
        );
        assert!(format_health(&DeviceInfo::default()).is_empty());
        assert!(format_stats(&DeviceInfo::default()).is_empty());
        assert!(device_json("wg0", &DeviceInfo::default()).contains("\"handshake_stats\":null"));
        assert!(device_json("wg0", &DeviceInfo::default()).contains("\"key\":null"));
    }

    #[test]
    fn handshake_stats_lines_and_json() {
        let stats = HandshakeStats {
            handshakes_completed: 4,
            initiations_stale: 3,
            initiations_replayed: 2,
            initiations_low_order: 1,
            cookie_replies_sent: 9,
            chip_operations: 6,
            chip_failures: 0,
        };
        let mut device = DeviceInfo {
            key_in_hardware: Some(true),
            extensions: stats
                .to_pairs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..Default::default()
        };
        let text = format_stats(&device);
        assert_eq!(
            text,
            "  handshakes completed: 4\n  initiations dropped: 3 stale, 2 replayed, 1 low-order\n  \
             cookie replies sent under load: 9\n  chip operations: 6 (0 failed)\n"
        );
        device.key_in_hardware = Some(false);
        assert!(format_stats(&device).contains("  key operations: 6 (0 failed)"));
        let json = device_json("wg0", &device);
        assert!(
            json.contains(
                "\"handshake_stats\":{\"handshakes_completed\":4,\"initiations_stale\":3,\
                 \"initiations_replayed\":2,\"initiations_low_order\":1,\"cookie_replies_sent\":9,\
                 \"chip_operations\":6,\"chip_operation_failures\":0}"
            ),
            "{json}"
        );
    }
}
