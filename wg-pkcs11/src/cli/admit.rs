//! `admit IFNAME EVIDENCE --nonce HEX --allowed-ips IPS [--endpoint HOST:PORT]
//! [--persistent-keepalive N] [--root PEM]... [--nonce-dir DIR]`: verify a device's evidence,
//! then add it as a peer with `wg set` (a kernel WireGuard server runs nothing else of ours).
//! `wg` is found on PATH (`WG_PKCS11_WG` names another binary).

use std::process::Command;

use base64::Engine;

use super::verify_attestation::{check, take_verify_options, VerifyArgs};

pub fn run(args: &[&str]) -> Result<(), String> {
    let mut verify_args = VerifyArgs::default();
    let rest = take_verify_options(args, &mut verify_args)?;
    let mut positional = Vec::new();
    let mut allowed_ips = None;
    let mut endpoint = None;
    let mut keepalive = None;
    let mut it = rest.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg {
            "--allowed-ips" => allowed_ips = Some(value("--allowed-ips")?),
            "--endpoint" => endpoint = Some(value("--endpoint")?),
            "--persistent-keepalive" => keepalive = Some(value("--persistent-keepalive")?),
            other if other.starts_with("--") => {
                return Err(format!("`admit`: unknown option `{other}`"))
            }
            other => positional.push(other),
        }
    }
    let [ifname, evidence] = positional.as_slice() else {
        return Err("`admit` takes IFNAME and EVIDENCE".into());
    };
    let allowed_ips = allowed_ips.ok_or("`admit` needs --allowed-ips")?;
    verify_args.evidence = evidence.to_string();
    let verified = check(&verify_args)?;
    let key = base64::engine::general_purpose::STANDARD.encode(verified.wireguard_public_key);
    let wg = std::env::var("WG_PKCS11_WG").unwrap_or_else(|_| "wg".into());
    let mut command = Command::new(&wg);
    command.args(["set", ifname, "peer", &key, "allowed-ips", allowed_ips]);
    if let Some(endpoint) = endpoint {
        command.args(["endpoint", endpoint]);
    }
    if let Some(keepalive) = keepalive {
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
