//! `pkcs11-se050-tool scp03-rotate`: replacing the chip's PlatformSCP03 keys and the key file.

use super::{rotate, StaticKeys};
use crate::applet::Se050;
use crate::t1::ApduTransport;
use std::path::{Path, PathBuf};

/// Opens the chip through a PlatformSCP03 channel with the keys of the key file given (the
/// tool: the module's configuration with `scp03_keys` set to that file).
pub type Opener<'a> = dyn FnMut(&Path) -> Result<Box<dyn ApduTransport>, String> + 'a;

/// Where the new keys wait while the chip is being told: `SCP03_KEYS.new`.
pub fn pending_path(keys_file: &Path) -> PathBuf {
    let mut name = keys_file.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// Replaces the chip's key set `kvn` (now the keys of `keys_file`) by `new`, and `keys_file`'s
/// contents with them. The message says what happened.
pub fn rotate_key_file(
    keys_file: &Path,
    new: &StaticKeys,
    kvn: u8,
    open: &mut Opener<'_>,
) -> Result<String, String> {
    let current = StaticKeys::load(keys_file).map_err(|e| e.to_string())?;
    if *new == current {
        return Err("the new keys are the current ones: nothing to rotate".into());
    }
    let pending = pending_path(keys_file);
    new.write_atomically(&pending).map_err(|e| e.to_string())?;
    let mut channel = open(keys_file).map_err(|e| {
        let _ = std::fs::remove_file(&pending);
        e
    })?;
    if let Err(e) = rotate::put_keys(channel.as_mut(), kvn, &current.dek, new) {
        let _ = std::fs::remove_file(&pending);
        return Err(format!(
            "the SE050 did not accept the new keys ({e}); {} is unchanged",
            keys_file.display()
        ));
    }
    drop(channel);
    std::fs::rename(&pending, keys_file).map_err(|e| {
        format!(
            "the SE050 now has the new keys, but {} could not be renamed to {}: {e}. \
             Move it there by hand: it holds the chip's keys",
            pending.display(),
            keys_file.display()
        )
    })?;
    // Prove it: a channel with the new keys (as the module will open it from the file).
    let mut check = Se050::select(open(keys_file).map_err(|e| {
        format!("the keys were replaced and written, but a channel with them failed: {e}")
    })?)
    .map_err(|e| {
        format!("the keys were replaced and written, but a channel with them failed: {e}")
    })?;
    check.get_version().map_err(|e| {
        format!("the keys were replaced and written, but a channel with them failed: {e}")
    })?;
    Ok(format!(
        "PlatformSCP03 keys of key version {kvn:#04x} replaced; the new keys are in {}",
        keys_file.display()
    ))
}
