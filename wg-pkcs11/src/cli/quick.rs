//! `down`, `save` and `strip` for `IFNAME|CONF`, as wg-quick has them.
//!
//! - `down` asks the daemon that serves IFNAME's UAPI socket to go down (SIGTERM to the socket's
//!   owner, found with SO_PEERCRED) and waits until it has: PreDown, routes, PostDown are the
//!   daemon's (as `up` ran them). With `SaveConfig = true` the daemon saves the config first
//!   (on any SIGTERM, so `systemctl stop` saves as wg-quick@ does).
//! - `save` rewrites the file from the running interface (listen port, fwmark, peers) and keeps
//!   every line of `[Interface]` wg-quick's own save keeps or rebuilds, PrivateKey above all:
//!   a `pkcs11:` URI is never dropped (wg-quick's save would write what `wg showconf` says, and
//!   the daemon cannot give a private key). Written to a temporary file, then renamed.
//! - `strip` prints what `wg setconf`/`wg syncconf` can read: without wg-quick's additions and
//!   without a `pkcs11:` PrivateKey (the daemon keeps its key; wg would reject the URI).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use wg_pkcs11::config::interface_name_from_path;
use wg_pkcs11::uapi::{self, DeviceInfo};

use super::keyfile;

/// How long `down` waits for the daemon (its PreDown/PostDown hooks included).
const DOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The `[Interface]` keys wg-quick handles itself (not for `wg setconf`).
const WG_QUICK_KEYS: [&str; 9] = [
    "address",
    "dns",
    "mtu",
    "table",
    "preup",
    "postup",
    "predown",
    "postdown",
    "saveconfig",
];

fn resolve(argument: &str) -> Result<(PathBuf, String), String> {
    let path = keyfile::config_path(argument);
    let ifname = interface_name_from_path(&path)?;
    Ok((path, ifname))
}

/// A config line as wg-quick reads it: key (lower case) and value, comments removed.
fn key_value(line: &str) -> Option<(String, &str)> {
    let stripped = line.split('#').next().unwrap_or("");
    let (key, value) = stripped.split_once('=')?;
    Some((key.trim().to_ascii_lowercase(), value.trim()))
}

fn section_of(line: &str) -> Option<String> {
    let stripped = line.split('#').next().unwrap_or("").trim();
    stripped
        .starts_with('[')
        .then(|| stripped.to_ascii_lowercase())
}

/// `strip`: the config for `wg setconf`.
pub fn strip_text(text: &str) -> String {
    let mut out = String::new();
    let mut in_interface = false;
    for line in text.lines() {
        if let Some(section) = section_of(line) {
            in_interface = section == "[interface]";
        } else if in_interface {
            if let Some((key, value)) = key_value(line) {
                if WG_QUICK_KEYS.contains(&key.as_str())
                    || (key == "privatekey" && value.starts_with("pkcs11:"))
                {
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

pub fn strip(argument: &str) -> Result<(), String> {
    let (path, _) = resolve(argument)?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    print!("{}", strip_text(&text));
    Ok(())
}

fn b64(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// `save`: the file's `[Interface]` (all but ListenPort and FwMark, which come from the running
/// interface like the peers) followed by the running peers in `wg showconf`'s form.
pub fn saved_text(original: &str, device: &DeviceInfo) -> String {
    let mut interface = String::new();
    let mut head = String::new();
    let mut section = None::<String>;
    for line in original.lines() {
        if let Some(s) = section_of(line) {
            section = Some(s);
            if section.as_deref() == Some("[interface]") {
                interface.push_str(line);
                interface.push('\n');
            }
            continue;
        }
        match section.as_deref() {
            None => {
                head.push_str(line);
                head.push('\n');
            }
            Some("[interface]") => {
                if let Some((key, _)) = key_value(line) {
                    if key == "listenport" || key == "fwmark" {
                        continue;
                    }
                }
                interface.push_str(line);
                interface.push('\n');
            }
            // The peers are rewritten from the running interface.
            _ => {}
        }
    }
    if interface.is_empty() {
        interface.push_str("[Interface]\n");
    }
    while interface.ends_with("\n\n") {
        interface.pop();
    }
    let mut out = head;
    out.push_str(&interface);
    if device.listen_port != 0 {
        out.push_str(&format!("ListenPort = {}\n", device.listen_port));
    }
    if device.fwmark != 0 {
        out.push_str(&format!("FwMark = {:#x}\n", device.fwmark));
    }
    for peer in &device.peers {
        out.push_str(&format!(
            "\n[Peer]\nPublicKey = {}\n",
            b64(&peer.public_key)
        ));
        if let Some(psk) = &peer.preshared_key {
            out.push_str(&format!("PresharedKey = {}\n", b64(psk)));
        }
        if !peer.allowed_ips.is_empty() {
            let ips: Vec<String> = peer.allowed_ips.iter().map(|c| c.to_string()).collect();
            out.push_str(&format!("AllowedIPs = {}\n", ips.join(", ")));
        }
        if let Some(endpoint) = peer.endpoint {
            out.push_str(&format!("Endpoint = {endpoint}\n"));
        }
        if peer.persistent_keepalive_interval != 0 {
            out.push_str(&format!(
                "PersistentKeepalive = {}\n",
                peer.persistent_keepalive_interval
            ));
        }
    }
    out
}

fn has_private_key(text: &str) -> bool {
    let mut in_interface = false;
    text.lines().any(|line| {
        if let Some(section) = section_of(line) {
            in_interface = section == "[interface]";
            return false;
        }
        in_interface && key_value(line).is_some_and(|(k, _)| k == "privatekey")
    })
}

pub fn save(argument: &str) -> Result<(), String> {
    let (path, ifname) = resolve(argument)?;
    save_config(&path, &ifname)
}

pub fn save_config(path: &Path, ifname: &str) -> Result<(), String> {
    let device = uapi::client::get(&uapi::socket_path(ifname))
        .map_err(|_| format!("`{ifname}' is not a WireGuard interface"))?;
    let original = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = saved_text(&original, &device);
    // Fail closed: a save that would lose the key would leave the next start without one.
    if has_private_key(&original) && !has_private_key(&text) {
        return Err(format!(
            "{}: refusing to save: the PrivateKey line would be lost",
            path.display()
        ));
    }
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o600);
    let tmp = path.with_extension("conf.tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700 | 0o600))?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("could not write {}: {e}", path.display())
    })?;
    log::info!("{ifname}: saved to {}", path.display());
    Ok(())
}

/// Whether the file at `path` says `SaveConfig = true`.
pub fn wants_save(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| save_config_on_down(&text))
}

/// SaveConfig = true in `[Interface]`.
fn save_config_on_down(text: &str) -> bool {
    let mut in_interface = false;
    text.lines().any(|line| {
        if let Some(section) = section_of(line) {
            in_interface = section == "[interface]";
            return false;
        }
        in_interface && key_value(line).is_some_and(|(k, v)| k == "saveconfig" && v == "true")
    })
}

/// The pid of the process that listens on a unix socket.
fn socket_owner(path: &Path) -> std::io::Result<libc::pid_t> {
    let stream = UnixStream::connect(path)?;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes one `struct ucred` into `cred`, whose size `len` says; both
    // live across the call and the descriptor is the stream's own.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.pid)
}

/// Gone, or a zombie nobody has reaped yet: either way it has finished.
fn has_exited(pid: libc::pid_t) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

pub fn down(argument: &str) -> Result<(), String> {
    // With SaveConfig = true the daemon saves the file itself on its way down.
    let (_, ifname) = resolve(argument)?;
    let socket = uapi::socket_path(&ifname);
    let pid =
        socket_owner(&socket).map_err(|_| format!("`{ifname}' is not a WireGuard interface"))?;
    // SAFETY: kill(2) with a pid and a signal number; no memory involved.
    if unsafe { libc::kill(pid, libc::SIGTERM) } < 0 {
        return Err(format!(
            "{ifname}: cannot signal its daemon (pid {pid}): {}",
            std::io::Error::last_os_error()
        ));
    }
    let deadline = Instant::now() + DOWN_TIMEOUT;
    while !has_exited(pid) {
        if Instant::now() > deadline {
            return Err(format!(
                "{ifname}: the daemon (pid {pid}) did not exit within {DOWN_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wg_pkcs11::uapi::PeerInfo;

    const CONF: &str = "# office\n[Interface]\nPrivateKey = pkcs11:token=SE050;object=wg\n\
        Address = 10.8.0.2/24 # me\nListenPort = 51820\nPostUp = echo %i\nSaveConfig = true\n\n\
        [Peer]\nPublicKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nAllowedIPs = 10.8.0.0/24\n";

    #[test]
    fn strip_keeps_what_wg_reads() {
        let text = strip_text(CONF);
        assert_eq!(
            text,
            "# office\n[Interface]\nListenPort = 51820\n\n[Peer]\n\
             PublicKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nAllowedIPs = 10.8.0.0/24\n"
        );
        // A base64 key is for wg and stays.
        let plain = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n";
        assert_eq!(strip_text(plain), plain);
    }

    #[test]
    fn save_keeps_the_key_and_takes_peers_port_and_mark_from_the_interface() {
        let device = DeviceInfo {
            public_key: None,
            listen_port: 40000,
            fwmark: 0x10,
            peers: vec![PeerInfo {
                public_key: [2; 32],
                preshared_key: Some([3; 32]),
                endpoint: Some("10.0.0.1:51820".parse().unwrap()),
                allowed_ips: vec!["10.9.0.0/24".parse().unwrap()],
                persistent_keepalive_interval: 25,
                ..Default::default()
            }],
            ..Default::default()
        };
        let saved = saved_text(CONF, &device);
        assert_eq!(
            saved,
            format!(
                "# office\n[Interface]\nPrivateKey = pkcs11:token=SE050;object=wg\n\
                 Address = 10.8.0.2/24 # me\nPostUp = echo %i\nSaveConfig = true\n\
                 ListenPort = 40000\nFwMark = 0x10\n\n[Peer]\nPublicKey = {}\nPresharedKey = {}\n\
                 AllowedIPs = 10.9.0.0/24\nEndpoint = 10.0.0.1:51820\nPersistentKeepalive = 25\n",
                b64(&[2; 32]),
                b64(&[3; 32])
            )
        );
        assert!(has_private_key(&saved));
        assert!(save_config_on_down(CONF));
        assert!(!save_config_on_down("[Interface]\nSaveConfig = false\n"));
    }
}
