//! The retry rule above the transports: the token never writes twice either. A 6982 to a
//! command inside the login's chip session reads as "the chip lost the session"; for what
//! changes nothing the token asks once more outside it, but a write is answered as it failed.
//!
//! The bus lies from outside the virtual chip: it lets the chip run the next WriteBinary, then
//! answers a bare 6982 in its place.

use parking_lot::Mutex;
use pkcs11_se050::applet::protocol::*;
use pkcs11_se050::applet::Se050;
use pkcs11_se050::config::Config;
use pkcs11_se050::t1::{ApduTransport, LinkError};
use pkcs11_se050::token::attributes::Template;
use pkcs11_se050::token::{applet_chip, Token};
use pkcs11_se050::virtual_se050::applet::VirtualApplet;
use pkcs11_se050::virtual_se050::ApduHandler;
use pkcs11_se050::wipe::SecretBytes;
use pkcs11_sys::*;
use std::path::Path;
use std::sync::Arc;

const RW: CK_FLAGS = CKF_SERIAL_SESSION | CKF_RW_SESSION;
const WRITE_BINARY: [u8; 4] = [CLA_IOT, INS_WRITE, P1_BINARY, P2_DEFAULT];

struct State {
    applet: VirtualApplet,
    forge_6982_to_next_write_binary: bool,
    write_binaries: usize,
}

#[derive(Clone)]
struct Bus(Arc<Mutex<State>>);

/// The command a ProcessSessionCmd carries (`10 08 <id> 41 <len> <command>`), else `command`.
fn carried(command: &[u8]) -> &[u8] {
    if !command.starts_with(&[CLA_IOT, INS_PROCESS]) || command.len() < 17 {
        return command;
    }
    let at = 5 + 10;
    match command[at + 1] {
        0x81 => &command[at + 3..],
        0x82 => &command[at + 4..],
        _ => &command[at + 2..],
    }
}

impl ApduTransport for Bus {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        let mut bus = self.0.lock();
        let response = bus.applet.process(command).response;
        if carried(command).starts_with(&WRITE_BINARY) {
            bus.write_binaries += 1;
            if std::mem::take(&mut bus.forge_6982_to_next_write_binary) {
                return Ok(vec![0x69, 0x82].into());
            }
        }
        Ok(response)
    }

    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

fn token(bus: &Bus) -> Token {
    let bus = bus.clone();
    let opener = Box::new(move |_: &Config| {
        let transport: Box<dyn ApduTransport> = Box::new(bus.clone());
        Ok(applet_chip(Se050::select(transport).unwrap()))
    });
    let config = Config::parse(
        "transport = \"virtual\"\nvirtual_state = \"/nonexistent/unused.state\"\n",
        Some(Path::new("/nonexistent/test.toml")),
    )
    .unwrap();
    Token::open(config, opener).unwrap()
}

#[test]
fn a_label_write_answered_6982_in_the_session_is_not_written_again_outside_it() {
    let bus = Bus(Arc::new(Mutex::new(State {
        applet: VirtualApplet::in_memory(),
        forge_6982_to_next_write_binary: false,
        write_binaries: 0,
    })));
    let t = token(&bus);
    t.init_token(0, b"so-secret", "retry").unwrap();
    let s = t.open_session(0, RW).unwrap();
    t.login(s, CKU_SO, b"so-secret").unwrap();
    t.init_pin(s, b"1234").unwrap();
    t.logout(s).unwrap();
    t.login(s, CKU_USER, b"1234").unwrap();
    let (_, private) = t
        .generate_key_pair(
            s,
            CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
            &Template::new(vec![(CKA_EC_PARAMS, vec![0x06, 0x03, 0x2B, 0x65, 0x6E])]),
            &Template::new(vec![(CKA_DERIVE, vec![1])]),
        )
        .unwrap();

    let before = {
        let mut state = bus.0.lock();
        state.forge_6982_to_next_write_binary = true;
        state.write_binaries
    };
    let label = Template::new(vec![(CKA_LABEL, b"wg0".to_vec())]);
    assert!(t.set_attributes(s, private, &label).is_err());
    assert_eq!(
        bus.0.lock().write_binaries - before,
        1,
        "the label record was written again after a 6982"
    );
}
