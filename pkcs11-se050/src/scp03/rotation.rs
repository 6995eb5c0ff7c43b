//! `pkcs11-se050-tool scp03-rotate`: replacing the chip's PlatformSCP03 keys and the key file,
//! without ever destroying the only copy of the keys the chip has.
//!
//! Once PUT KEY is sent, no answer (nor the lack of one) proves what the chip did: the answer
//! may be lost on the link, its R-MAC broken, or a bare 6982 forged on the bus after the chip
//! applied the keys. So both key sets are kept, `SCP03_KEYS` (current) and `SCP03_KEYS.new`,
//! until a channel has opened with one of them (card cryptogram verified, a command answered
//! under R-MAC): the new keys are tried first, then the current ones. A file is removed or
//! replaced only once a channel opened with the other one; if neither opens, both stay, and the
//! message names both. The next run settles such an unfinished rotation before anything else.
//!
//! PUT KEY itself is sent once (applet/resend.rs): never again on a doubtful answer.

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

/// The applet selected through a channel opened with the keys of `keys_file` (the handshake
/// is done by then: the chip proved it has these keys).
fn open_channel(
    open: &mut Opener<'_>,
    keys_file: &Path,
) -> Result<Se050<Box<dyn ApduTransport>>, String> {
    Se050::select(open(keys_file)?).map_err(|e| e.to_string())
}

/// Whether a channel opens with the keys of `keys_file` and a command is answered in it.
fn opens_with(open: &mut Opener<'_>, keys_file: &Path) -> Result<(), String> {
    open_channel(open, keys_file)?
        .get_version()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Which of the two key files the chip answers to now.
enum Settled {
    /// The new keys opened a channel; they are now in `SCP03_KEYS`, `.new` is gone.
    New,
    /// The current keys opened a channel; `.new` is gone.
    Current,
}

/// After PUT KEY was (perhaps) sent: find which keys the chip has, keep that file as
/// `SCP03_KEYS`, and remove the other only then. Neither opening: both files stay.
fn settle(open: &mut Opener<'_>, keys_file: &Path) -> Result<Settled, String> {
    let pending = pending_path(keys_file);
    let new_failed = match opens_with(open, &pending) {
        Ok(()) => {
            std::fs::rename(&pending, keys_file).map_err(|e| {
                format!(
                    "the SE050 has the keys of {} (a channel opened with them), but renaming it \
                     to {} failed: {e}. Move it there by hand: it holds the chip's keys",
                    pending.display(),
                    keys_file.display()
                )
            })?;
            return Ok(Settled::New);
        }
        Err(e) => e,
    };
    match opens_with(open, keys_file) {
        Ok(()) => {
            if let Err(e) = std::fs::remove_file(&pending) {
                log::warn!("cannot remove {} (unused keys): {e}", pending.display());
            }
            Ok(Settled::Current)
        }
        Err(current_failed) => Err(format!(
            "no channel opens with either key set now. Both files are kept, one of them holds \
             the SE050's keys: {} (the new keys: {new_failed}) and {} (the previous keys: \
             {current_failed}). Run scp03-rotate again once the chip answers: it tries both \
             before anything else",
            pending.display(),
            keys_file.display()
        )),
    }
}

/// Replaces the chip's key set `kvn` (now the keys of `keys_file`) by `new`, and `keys_file`'s
/// contents with them. The message says what happened and which file holds the chip's keys.
pub fn rotate_key_file(
    keys_file: &Path,
    new: &StaticKeys,
    kvn: u8,
    open: &mut Opener<'_>,
) -> Result<String, String> {
    let pending = pending_path(keys_file);
    if std::fs::symlink_metadata(&pending).is_ok() {
        // A rotation that ended without knowing: settle it, rotate nothing else this time.
        return Err(match settle(open, keys_file)? {
            Settled::New => format!(
                "an unfinished rotation was settled: the SE050 has the keys of {}, which are now \
                 in {}. No other rotation was done: run scp03-rotate again for one",
                pending.display(),
                keys_file.display()
            ),
            Settled::Current => format!(
                "an unfinished rotation was settled: the SE050 still has the keys of {} (unchanged); \
                 {} was removed. Run scp03-rotate again to rotate",
                keys_file.display(),
                pending.display()
            ),
        });
    }
    let current = StaticKeys::load(keys_file).map_err(|e| e.to_string())?;
    if *new == current {
        return Err("the new keys are the current ones: nothing to rotate".into());
    }
    new.write_atomically(&pending).map_err(|e| e.to_string())?;
    // The channel is opened (handshake done) before PUT KEY: a failure here sent nothing.
    let mut se = match open_channel(open, keys_file) {
        Ok(se) => se,
        Err(e) => {
            let _ = std::fs::remove_file(&pending);
            return Err(format!(
                "cannot open a channel with the current keys ({e}): PUT KEY was not sent; {} is \
                 unchanged",
                keys_file.display()
            ));
        }
    };
    let sent = rotate::put_keys(se.transport_mut(), kvn, &current.dek, new);
    drop(se);
    let settled = settle(open, keys_file).map_err(|e| match &sent {
        Ok(()) => format!("the SE050 accepted the new keys, but {e}"),
        Err(put_key) => format!("PUT KEY got no trustworthy answer ({put_key}); {e}"),
    })?;
    match (settled, sent) {
        (Settled::New, Ok(())) => Ok(format!(
            "PlatformSCP03 keys of key version {kvn:#04x} replaced; the new keys are in {}",
            keys_file.display()
        )),
        (Settled::New, Err(e)) => {
            log::warn!("PUT KEY: {e}; the chip took the new keys all the same");
            Ok(format!(
                "PlatformSCP03 keys of key version {kvn:#04x} replaced (PUT KEY's answer was not \
                 trustworthy: {e}; a channel opened with the new keys shows the chip took them); \
                 the new keys are in {}",
                keys_file.display()
            ))
        }
        (Settled::Current, sent) => Err(format!(
            "the SE050 did not take the new keys ({}): a channel opened with the current ones; {} \
             is unchanged",
            match sent {
                Ok(()) => "it answered PUT KEY, yet still has the previous keys".to_string(),
                Err(e) => e.to_string(),
            },
            keys_file.display()
        )),
    }
}
