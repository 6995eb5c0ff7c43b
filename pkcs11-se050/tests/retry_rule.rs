//! The module's retry rule under a hostile bus (issue 20, finding 1): a command that changes the
//! chip's state is sent once, whatever comes back; only reads and ECDH are sent again after a
//! bare 6982 / 6D00.
//!
//! The bus lies from outside the virtual chip: an `ApduHandler` wrapper lets the chip run a
//! command, then replaces the chip's answer with a status word of its choosing (under SCP03 an
//! error status word carries no MAC, so anyone on the bus can do that).

use parking_lot::Mutex;
use pkcs11_se050::applet::protocol::*;
use pkcs11_se050::applet::{ObjectId, Se050};
use pkcs11_se050::device::Reselecting;
use pkcs11_se050::scp03::keys::DEFAULT_KVN;
use pkcs11_se050::scp03::{Scp03Transport, StaticKeys};
use pkcs11_se050::virtual_se050::applet::{InProcessTransport, VirtualApplet};
use pkcs11_se050::virtual_se050::scp03::PlatformScp03;
use pkcs11_se050::virtual_se050::{ApduHandler, Processed};
use std::sync::Arc;

const USER_PIN: u32 = 0x7AFF_0001;
const KEY: u32 = 0x5000_0001;

fn id(value: u32) -> ObjectId {
    ObjectId::new(value).unwrap()
}

fn dev_keys() -> StaticKeys {
    StaticKeys::published("SE050C2").unwrap()
}

/// The plain command APDUs the applet ran, in order.
#[derive(Clone, Default)]
struct Ran(Arc<Mutex<Vec<Vec<u8>>>>);

impl Ran {
    /// How many of them had this header (CLA INS P1 P2), looking inside ProcessSessionCmd.
    fn count(&self, header: [u8; 4]) -> usize {
        self.0
            .lock()
            .iter()
            .filter(|c| c.starts_with(&header) || session_inner(c).starts_with(&header))
            .count()
    }
}

/// The command a ProcessSessionCmd carries (`10 08 <id> 41 <len> <command>`), else nothing.
fn session_inner(command: &[u8]) -> &[u8] {
    if !command.starts_with(&[CLA_IOT, INS_PROCESS]) || command.len() < 17 {
        return &[];
    }
    let at = 5 + 10;
    match command[at + 1] {
        0x81 => &command[at + 3..],
        0x82 => &command[at + 4..],
        _ => &command[at + 2..],
    }
}

struct Spy {
    applet: VirtualApplet,
    ran: Ran,
}

impl ApduHandler for Spy {
    fn process(&mut self, command: &[u8]) -> Processed {
        self.ran.0.lock().push(command.to_vec());
        self.applet.process(command)
    }
    fn reset(&mut self) {
        self.applet.reset()
    }
}

/// The bus: the next command whose CLA INS is `forge.0` reaches the chip and runs there, and
/// its answer is replaced by the status word `forge.1`.
/// The CLA INS of the command to lie about, and the status word to answer instead.
type Lie = ([u8; 2], [u8; 2]);

#[derive(Clone, Default)]
struct Forger(Arc<Mutex<Option<Lie>>>);

impl Forger {
    fn next(&self, cla_ins: [u8; 2], sw: [u8; 2]) {
        *self.0.lock() = Some((cla_ins, sw));
    }
}

struct LyingBus {
    chip: Box<dyn ApduHandler>,
    forger: Forger,
}

impl ApduHandler for LyingBus {
    fn process(&mut self, command: &[u8]) -> Processed {
        let mut processed = self.chip.process(command);
        let mut forge = self.forger.0.lock();
        if let Some((cla_ins, sw)) = *forge {
            if command.starts_with(&cla_ins) {
                *forge = None;
                processed.response = sw.to_vec().into();
            }
        }
        processed
    }
    fn reset(&mut self) {
        self.chip.reset()
    }
}

/// Host stack over the chip: `Se050<Scp03Transport<..>>` when `scp03`, else
/// `Se050<Reselecting<..>>` ("Platform SCP required" set on the chip when `scp03`).
fn stack(scp03: bool) -> (Se050<Box<dyn pkcs11_se050::t1::ApduTransport>>, Ran, Forger) {
    let ran = Ran::default();
    let forger = Forger::default();
    let spy: Box<dyn ApduHandler> = Box::new(Spy {
        applet: VirtualApplet::in_memory(),
        ran: ran.clone(),
    });
    let chip: Box<dyn ApduHandler> = if scp03 {
        Box::new(PlatformScp03::new(spy, dev_keys(), DEFAULT_KVN, None, true))
    } else {
        spy
    };
    let bus = InProcessTransport::new(LyingBus {
        chip,
        forger: forger.clone(),
    });
    let transport: Box<dyn pkcs11_se050::t1::ApduTransport> = if scp03 {
        Box::new(Scp03Transport::new(bus, dev_keys(), DEFAULT_KVN))
    } else {
        Box::new(Reselecting::new(bus))
    };
    (Se050::select(transport).unwrap(), ran, forger)
}

const VERIFY_USER_ID: [u8; 4] = [CLA_IOT, INS_MGMT, P1_DEFAULT, P2_SESSION_USERID];
const GENERATE: [u8; 4] = [CLA_IOT, INS_WRITE, P1_KEY_PAIR | P1_EC, P2_DEFAULT];
const DELETE: [u8; 4] = [CLA_IOT, INS_MGMT, P1_DEFAULT, P2_DELETE_OBJECT];
const READ: [u8; 4] = [CLA_IOT, INS_READ, P1_DEFAULT, P2_DEFAULT];

fn failures<T: pkcs11_se050::t1::ApduTransport>(se: &mut Se050<T>) -> u16 {
    se.read_attributes(id(USER_PIN)).unwrap().failures
}

/// One wrong PIN, as C_Login sends it: CreateSession, VerifySessionUserID, CloseSession.
fn wrong_pin<T: pkcs11_se050::t1::ApduTransport>(se: &mut Se050<T>) {
    se.open_session(id(USER_PIN)).unwrap();
    let e = se.verify_user_id(b"0000").unwrap_err();
    assert!(e.to_string().contains("6982"), "{e}");
    let _ = se.close_session();
}

#[test]
fn a_wrong_pin_costs_one_attempt_with_and_without_scp03() {
    for scp03 in [false, true] {
        let (mut se, ran, _) = stack(scp03);
        se.write_user_id(id(USER_PIN), b"1234", 4, &[]).unwrap();
        for attempt in 1..=3u16 {
            wrong_pin(&mut se);
            assert_eq!(
                failures(&mut se),
                attempt,
                "scp03 {scp03}: failures after {attempt} wrong PINs"
            );
        }
        assert_eq!(ran.count(VERIFY_USER_ID), 3, "scp03 {scp03}");
        // The last attempt is still there: the right PIN opens the session.
        se.open_session(id(USER_PIN)).unwrap();
        se.verify_user_id(b"1234").unwrap();
        se.close_session().unwrap();
        assert_eq!(failures(&mut se), 0, "scp03 {scp03}");
    }
}

#[test]
fn a_forged_6982_or_6d00_never_makes_the_host_run_a_state_change_twice() {
    for scp03 in [false, true] {
        for sw in [[0x69, 0x82], [0x6D, 0x00]] {
            let what = format!("scp03 {scp03}, forged {sw:02X?}");
            let (mut se, ran, forger) = stack(scp03);
            // The chip sees CLA 84 under SCP03 (the header stays in clear).
            let cla = if scp03 { 0x84 } else { CLA_IOT };

            forger.next([cla, INS_WRITE], sw);
            assert!(se.generate_x25519(id(KEY)).is_err(), "{what}");
            assert_eq!(ran.count(GENERATE), 1, "{what}: key generations");
            // The chip did generate it: the next command (a read) works and finds it.
            assert!(se.exists(id(KEY)).unwrap(), "{what}");

            forger.next([cla, INS_MGMT], sw);
            assert!(se.delete(id(KEY)).is_err(), "{what}");
            assert_eq!(ran.count(DELETE), 1, "{what}: deletions");

            se.write_user_id(id(USER_PIN), b"1234", 4, &[]).unwrap();
            se.open_session(id(USER_PIN)).unwrap();
            // The right PIN, the answer forged: the host counts it failed and never resends.
            forger.next([cla, INS_PROCESS], sw);
            assert!(se.verify_user_id(b"1234").is_err(), "{what}");
            assert_eq!(ran.count(VERIFY_USER_ID), 1, "{what}: PIN checks");
            let _ = se.close_session();
        }
    }
}

#[test]
fn a_read_answered_6982_or_6d00_is_sent_once_more() {
    // Without SCP03 only 6D00 (applet deselected) is a reason to send again.
    for (scp03, sw) in [
        (false, [0x6D, 0x00]),
        (true, [0x6D, 0x00]),
        (true, [0x69, 0x82]),
    ] {
        {
            let what = format!("scp03 {scp03}, forged {sw:02X?}");
            let (mut se, ran, forger) = stack(scp03);
            se.generate_x25519(id(KEY)).unwrap();
            let public = se.read_x25519_public(id(KEY)).unwrap();
            let before = ran.count(READ);
            let cla = if scp03 { 0x84 } else { CLA_IOT };
            forger.next([cla, INS_READ], sw);
            assert_eq!(se.read_x25519_public(id(KEY)).unwrap(), public, "{what}");
            assert_eq!(ran.count(READ) - before, 2, "{what}: sent once more");
        }
    }
}
