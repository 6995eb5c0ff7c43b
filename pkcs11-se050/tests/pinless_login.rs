//! C_Login without a chip session only on positive evidence that no PIN exists (issue 20,
//! finding 2): a 6A80 ("no such object"), which under SCP03 carries no MAC and which anyone on
//! the bus can forge, never logs anybody in.
//!
//! The bus lies from outside the virtual chip (an `ApduHandler` wrapper): it answers 6A80 to a
//! command instead of passing it on.

use parking_lot::Mutex;
use pkcs11_se050::applet::protocol::*;
use pkcs11_se050::applet::Se050;
use pkcs11_se050::config::Config;
use pkcs11_se050::scp03::keys::DEFAULT_KVN;
use pkcs11_se050::scp03::{Scp03Transport, StaticKeys};
use pkcs11_se050::t1::{ApduTransport, LinkError};
use pkcs11_se050::token::{applet_chip, Token};
use pkcs11_se050::virtual_se050::applet::VirtualApplet;
use pkcs11_se050::virtual_se050::scp03::PlatformScp03;
use pkcs11_se050::virtual_se050::ApduHandler;
use pkcs11_se050::wipe::SecretBytes;
use pkcs11_sys::*;
use std::path::Path;
use std::sync::Arc;

const RW: CK_FLAGS = CKF_SERIAL_SESSION | CKF_RW_SESSION;
const SO_PIN: &[u8] = b"so-secret";
const USER_PIN: &[u8] = b"1234";

/// The chip behind a bus that answers 6A80, once, to the next command with this INS P1 P2.
struct LyingBus {
    chip: Box<dyn ApduHandler>,
    answer_6a80_to: Option<[u8; 3]>,
}

#[derive(Clone)]
struct Bus(Arc<Mutex<LyingBus>>);

impl Bus {
    fn new(scp03: bool) -> Bus {
        let applet: Box<dyn ApduHandler> = Box::new(VirtualApplet::in_memory());
        let chip: Box<dyn ApduHandler> = if scp03 {
            Box::new(PlatformScp03::new(
                applet,
                dev_keys(),
                DEFAULT_KVN,
                None,
                true,
            ))
        } else {
            applet
        };
        Bus(Arc::new(Mutex::new(LyingBus {
            chip,
            answer_6a80_to: None,
        })))
    }

    fn answer_6a80_to_next(&self, ins_p1_p2: [u8; 3]) {
        self.0.lock().answer_6a80_to = Some(ins_p1_p2);
    }

    fn armed(&self) -> bool {
        self.0.lock().answer_6a80_to.is_some()
    }
}

impl ApduTransport for Bus {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        let mut bus = self.0.lock();
        if let Some(ins_p1_p2) = bus.answer_6a80_to {
            if command.get(1..4) == Some(&ins_p1_p2[..]) {
                bus.answer_6a80_to = None;
                return Ok(vec![0x6A, 0x80].into());
            }
        }
        Ok(bus.chip.process(command).response)
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

fn dev_keys() -> StaticKeys {
    StaticKeys::published("SE050C2").unwrap()
}

/// A token on the bus, with the host's SCP03 channel when `scp03` (the chip requires it then).
fn token(bus: &Bus, scp03: bool) -> Token {
    let bus = bus.clone();
    let opener = Box::new(move |_: &Config| {
        let transport: Box<dyn ApduTransport> = if scp03 {
            Box::new(Scp03Transport::new(bus.clone(), dev_keys(), DEFAULT_KVN))
        } else {
            Box::new(bus.clone())
        };
        Ok(applet_chip(Se050::select(transport).unwrap()))
    });
    let config = Config::parse(
        "transport = \"virtual\"\nvirtual_state = \"/nonexistent/unused.state\"\n",
        Some(Path::new("/nonexistent/test.toml")),
    )
    .unwrap();
    Token::open(config, opener).unwrap()
}

fn rv(result: Result<(), pkcs11_se050::token::error::Error>) -> CK_RV {
    match result {
        Ok(()) => CKR_OK,
        Err(e) => e.rv(),
    }
}

/// A token whose user PIN is set (C_InitToken, C_InitPIN).
fn with_user_pin(bus: &Bus, scp03: bool) -> Token {
    let t = token(bus, scp03);
    t.init_token(0, SO_PIN, "hostile-bus").unwrap();
    let s = t.open_session(0, RW).unwrap();
    t.login(s, CKU_SO, SO_PIN).unwrap();
    t.init_pin(s, USER_PIN).unwrap();
    t.close_session(s).unwrap();
    t
}

const CREATE_SESSION: [u8; 3] = [INS_MGMT, P1_DEFAULT, P2_SESSION_CREATE];
/// VerifySessionUserID goes inside ProcessSessionCmd: the first one after CreateSession.
const PROCESS_SESSION: [u8; 3] = [INS_PROCESS, P1_DEFAULT, P2_DEFAULT];

/// Login with a wrong PIN while the bus answers 6A80 to `command`: never logged in.
fn forged_6a80_never_logs_in(what: &str, command: [u8; 3]) {
    for scp03 in [false, true] {
        let bus = Bus::new(scp03);
        let t = with_user_pin(&bus, scp03);
        let s = t.open_session(0, RW).unwrap();
        bus.answer_6a80_to_next(command);
        let answer = rv(t.login(s, CKU_USER, b"0000"));
        assert!(!bus.armed(), "scp03 {scp03}: {what} was never sent");
        assert_ne!(
            answer, CKR_OK,
            "scp03 {scp03}: 6A80 to {what} logged in with a wrong PIN"
        );
        assert_ne!(
            t.session_info(s).unwrap().0,
            CKS_RW_USER_FUNCTIONS,
            "scp03 {scp03}, {what}"
        );
        // The right PIN still logs in (no attempt was lost to the lie).
        assert_eq!(rv(t.login(s, CKU_USER, USER_PIN)), CKR_OK, "scp03 {scp03}");
    }
}

#[test]
fn a_forged_6a80_to_create_session_never_logs_in() {
    forged_6a80_never_logs_in("CreateSession", CREATE_SESSION);
}

#[test]
fn a_forged_6a80_to_verify_session_user_id_never_logs_in() {
    forged_6a80_never_logs_in("VerifySessionUserID", PROCESS_SESSION);
}

#[test]
fn a_token_without_a_pin_answers_as_pkcs11_says_once_the_chip_confirms_it() {
    for scp03 in [false, true] {
        let bus = Bus::new(scp03);
        let t = token(&bus, scp03);
        let s = t.open_session(0, RW).unwrap();
        // No user PIN, confirmed by CheckObjectExists: PKCS#11's answer for the user.
        assert_eq!(
            rv(t.login(s, CKU_USER, b"0000")),
            CKR_USER_PIN_NOT_INITIALIZED,
            "scp03 {scp03}"
        );
        // No SO PIN either: the SO's login is bookkeeping, without a chip session.
        assert_eq!(rv(t.login(s, CKU_SO, b"0000")), CKR_OK, "scp03 {scp03}");
        assert_eq!(
            t.session_info(s).unwrap().0,
            CKS_RW_SO_FUNCTIONS,
            "scp03 {scp03}"
        );
    }
}
