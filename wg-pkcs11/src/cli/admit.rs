//! `admit IFNAME EVIDENCE --nonce HEX --allowed-ips IPS [--endpoint HOST:PORT]
//! [--persistent-keepalive N] [--root PEM]... [--nonce-dir DIR]`: verify a device's evidence,
//! then add it as a peer with `wg set` (a kernel WireGuard server runs nothing else of ours).
//! `wg` is found on PATH (`WG_PKCS11_WG` names another binary).

use std::process::Command;

use base64::Engine;

use super::args::AdmitArgs;
use super::verify_attestation::check;

pub fn run(args: AdmitArgs) -> Result<(), String> {
    let ifname = args.ifname.as_str();
    let allowed_ips = args.allowed_ips.as_str();
    let verified = check(&args.verify)?;
    let key = base64::engine::general_purpose::STANDARD.encode(verified.wireguard_public_key);
    let wg = std::env::var("WG_PKCS11_WG").unwrap_or_else(|_| "wg".into());
    let mut command = Command::new(&wg);
    command.args(["set", ifname, "peer", &key, "allowed-ips", allowed_ips]);
    if let Some(endpoint) = &args.endpoint {
        command.args(["endpoint", endpoint]);
    }
    if let Some(keepalive) = &args.persistent_keepalive {
        command.args(["persistent-keepalive", keepalive]);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot run {wg}: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`{wg} set {ifname} peer {key} ...` failed: {status}"
        ));
    }
    println!("{key}");
    for line in verified.report() {
        println!("{line}");
    }
    println!("admitted as a peer of {ifname} (allowed-ips {allowed_ips})");
    Ok(())
}
