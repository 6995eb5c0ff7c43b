//! `scp03-rotate` never destroys the only copy of the chip's keys (issue 20, finding 3): after
//! PUT KEY was sent, whatever the bus did to the answer, a key file with the keys the chip has
//! is left on disk, and the tool says which.
//!
//! The bus misbehaves from outside the virtual chip (an `ApduTransport` in front of its
//! `ApduHandler`): it loses PUT KEY's answer, forges 6982, breaks the R-MAC, loses the command
//! itself, or goes silent after PUT KEY.

use parking_lot::Mutex;
use pkcs11_se050::applet::Se050;
use pkcs11_se050::scp03::keys::DEFAULT_KVN;
use pkcs11_se050::scp03::rotate::INS_PUT_KEY;
use pkcs11_se050::scp03::rotation::{pending_path, rotate_key_file};
use pkcs11_se050::scp03::{Scp03Transport, StaticKeys};
use pkcs11_se050::t1::{ApduTransport, LinkError};
use pkcs11_se050::virtual_se050::applet::VirtualApplet;
use pkcs11_se050::virtual_se050::scp03::PlatformScp03;
use pkcs11_se050::virtual_se050::ApduHandler;
use pkcs11_se050::wipe::SecretBytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutKey {
    /// The chip runs it; its answer is lost (the link times out).
    AnswerLost,
    /// The chip runs it; the bus answers a bare 6982 instead.
    Forged6982,
    /// The chip runs it; a bit of its answer flips on the bus (the R-MAC fails).
    AnswerDamaged,
    /// The chip never sees it; the link times out.
    CommandLost,
    /// The chip runs it, then the bus is silent until `answer_again`.
    ThenSilence,
}

struct State {
    chip: Box<dyn ApduHandler>,
    put_key: Option<PutKey>,
    silent: bool,
}

#[derive(Clone)]
struct Bus(Arc<Mutex<State>>);

fn lost() -> LinkError {
    LinkError::ResponseTimeout {
        waited: Duration::from_millis(1000),
        wtx_requests: 0,
    }
}

impl ApduTransport for Bus {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        let mut bus = self.0.lock();
        if bus.silent {
            return Err(lost());
        }
        let is_put_key = command.get(1) == Some(&INS_PUT_KEY);
        let fault = if is_put_key { bus.put_key } else { None };
        if fault == Some(PutKey::CommandLost) {
            return Err(lost());
        }
        let mut response = bus.chip.process(command).response;
        match fault {
            None | Some(PutKey::CommandLost) => Ok(response),
            Some(PutKey::AnswerLost) => Err(lost()),
            Some(PutKey::Forged6982) => Ok(vec![0x69, 0x82].into()),
            Some(PutKey::AnswerDamaged) => {
                response[0] ^= 0x01;
                Ok(response)
            }
            Some(PutKey::ThenSilence) => {
                bus.silent = true;
                Err(lost())
            }
        }
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

impl Bus {
    fn new(put_key: Option<PutKey>) -> Bus {
        let applet: Box<dyn ApduHandler> = Box::new(VirtualApplet::in_memory());
        let chip = PlatformScp03::new(applet, dev_keys(), DEFAULT_KVN, None, true);
        Bus(Arc::new(Mutex::new(State {
            chip: Box::new(chip),
            put_key,
            silent: false,
        })))
    }

    fn answer_again(&self) {
        let mut bus = self.0.lock();
        bus.silent = false;
        bus.put_key = None;
    }

    /// The tool's opener: a channel with the keys of the file given.
    fn opener(&self) -> impl FnMut(&Path) -> Result<Box<dyn ApduTransport>, String> {
        let bus = self.clone();
        move |keys_file: &Path| {
            let keys = StaticKeys::load(keys_file).map_err(|e| e.to_string())?;
            let channel: Box<dyn ApduTransport> =
                Box::new(Scp03Transport::new(bus.clone(), keys, DEFAULT_KVN));
            Ok(channel)
        }
    }

    /// Whether a channel opens with the keys of `keys_file` and answers a command.
    fn opens_with(&self, keys_file: &Path) -> Result<(), String> {
        let channel = (self.opener())(keys_file)?;
        let mut se = Se050::select(channel).map_err(|e| e.to_string())?;
        se.get_version().map(|_| ()).map_err(|e| e.to_string())
    }
}

fn dev_keys() -> StaticKeys {
    StaticKeys::published("SE050C2").unwrap()
}

fn key_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("scp.keys");
    dev_keys().write_atomically(&path).unwrap();
    path
}

#[test]
fn the_chip_took_the_new_keys_but_the_host_never_heard_so() {
    for fault in [
        PutKey::AnswerLost,
        PutKey::Forged6982,
        PutKey::AnswerDamaged,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let keys = key_file(&dir);
        let bus = Bus::new(Some(fault));
        let new = StaticKeys::random();
        let result = rotate_key_file(&keys, &new, DEFAULT_KVN, &mut bus.opener());
        // The chip has the new keys: the key file must have them, and a channel must open.
        bus.opens_with(&keys).unwrap_or_else(|e| {
            panic!(
                "{fault:?}: the key file no longer opens the chip: {e} (the tool said {result:?})"
            )
        });
        assert_eq!(StaticKeys::load(&keys).unwrap(), new, "{fault:?}");
        let message = result.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert!(message.contains("new keys"), "{fault:?}: {message}");
        assert!(!pending_path(&keys).exists(), "{fault:?}");
    }
}

#[test]
fn the_chip_never_saw_put_key_the_current_keys_stay() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(&dir);
    let bus = Bus::new(Some(PutKey::CommandLost));
    let e =
        rotate_key_file(&keys, &StaticKeys::random(), DEFAULT_KVN, &mut bus.opener()).unwrap_err();
    assert!(e.contains("unchanged"), "{e}");
    assert_eq!(StaticKeys::load(&keys).unwrap(), dev_keys());
    bus.opens_with(&keys).unwrap();
    // A channel opened with the current keys: the new ones are of no use, and removed.
    assert!(!pending_path(&keys).exists());
}

#[test]
fn while_the_chip_is_silent_both_key_files_are_kept_then_the_working_one_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(&dir);
    let pending = pending_path(&keys);
    let bus = Bus::new(Some(PutKey::ThenSilence));
    let new = StaticKeys::random();
    let e = rotate_key_file(&keys, &new, DEFAULT_KVN, &mut bus.opener()).unwrap_err();
    assert_eq!(StaticKeys::load(&keys).unwrap(), dev_keys(), "{e}");
    assert_eq!(StaticKeys::load(&pending).unwrap(), new, "{e}");
    assert!(
        e.contains(&keys.display().to_string()) && e.contains(&pending.display().to_string()),
        "the message names both files: {e}"
    );

    // The chip answers again. The next run settles the unfinished rotation first: the chip
    // has the new keys, so they become the key file; no other rotation is done.
    bus.answer_again();
    let again = StaticKeys::random();
    let e = rotate_key_file(&keys, &again, DEFAULT_KVN, &mut bus.opener()).unwrap_err();
    assert!(e.contains("unfinished"), "{e}");
    assert_eq!(StaticKeys::load(&keys).unwrap(), new, "{e}");
    assert!(!pending.exists());
    bus.opens_with(&keys).unwrap();
    // And now a rotation runs as usual.
    rotate_key_file(&keys, &again, DEFAULT_KVN, &mut bus.opener()).unwrap();
    assert_eq!(StaticKeys::load(&keys).unwrap(), again);
    bus.opens_with(&keys).unwrap();
}

#[test]
fn a_clean_rotation_replaces_the_file_and_the_old_keys_no_longer_open() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(&dir);
    let bus = Bus::new(None);
    let new = StaticKeys::random();
    let message = rotate_key_file(&keys, &new, DEFAULT_KVN, &mut bus.opener()).unwrap();
    assert!(message.contains("replaced"), "{message}");
    assert_eq!(StaticKeys::load(&keys).unwrap(), new);
    assert!(!pending_path(&keys).exists());
    let old = dir.path().join("old.keys");
    dev_keys().write_atomically(&old).unwrap();
    let e = bus.opens_with(&old).unwrap_err();
    assert!(e.contains("wrong card cryptogram"), "{e}");
}
