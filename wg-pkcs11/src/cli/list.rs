//! `list [URI]`: the X25519 keys of a token, each with the `pkcs11:` URI to paste into a config.
//!
//! Without a URI, every token p11-kit's proxy offers. The URI printed for a key is the one the
//! public key was read through (see `key::inventory`), so it opens that key and no other.

use base64::Engine;
use wg_pkcs11::key::inventory::{list_keys, ListedKey};
use wg_pkcs11::uri::Pkcs11Uri;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn run(uri: Option<&str>) -> Result<(), String> {
    let text = uri.unwrap_or("pkcs11:");
    let query = Pkcs11Uri::parse(text).map_err(|e| format!("`{text}`: {e}"))?;
    let keys = list_keys(&query).map_err(|e| e.to_string())?;
    if keys.is_empty() {
        eprintln!("no X25519 private keys match {}", query.redacted());
    }
    print!("{}", format_keys(&keys));
    // A key that no URI can name is reported, and makes the listing fail: a fleet script must
    // not take a partial list for the whole.
    let unnamed = keys.iter().filter(|k| k.opened.is_err()).count();
    if unnamed > 0 {
        return Err(format!(
            "{unnamed} key(s) could not be opened by a URI (see above)"
        ));
    }
    Ok(())
}

pub fn format_keys(keys: &[ListedKey]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (n, key) in keys.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "key: {}", key.label.as_deref().unwrap_or("(no label)"));
        let _ = writeln!(
            out,
            "  id: {}",
            if key.id.is_empty() {
                "(none)".into()
            } else {
                hex(&key.id)
            }
        );
        let _ = writeln!(out, "  token: {} (serial {})", key.token, key.serial);
        match &key.opened {
            Ok((uri, public)) => {
                let _ = writeln!(
                    out,
                    "  public key: {}",
                    base64::engine::general_purpose::STANDARD.encode(public)
                );
                let _ = writeln!(out, "  uri: {uri}");
            }
            Err(why) => {
                let _ = writeln!(out, "  error: {why}");
            }
        }
    }
    out
}
