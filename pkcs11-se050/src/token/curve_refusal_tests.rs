//! A chip that does not answer GetECCurveId (6D00, no such instruction): the module refuses
//! to list its EC keys with a clear error, instead of guessing the curve from the public key
//! (where a 32-byte Ed25519 key passes for X25519). The chip is the virtual applet wrapped from
//! outside; the key is made by another program, then a token lists the chip.

use super::attributes::Template;
use super::pin_tests::{config, rv, RW};
use super::{applet_chip, Token};
use crate::applet::Se050;
use crate::t1::{ApduTransport, LinkError};
use crate::virtual_se050::applet::VirtualApplet;
use crate::virtual_se050::ApduHandler;
use crate::wipe::SecretBytes;
use parking_lot::Mutex;
use pkcs11_sys::*;
use std::path::Path;
use std::sync::Arc;

/// GetECCurveId's header (NXP `Se05x_API_GetECCurveId`).
const GET_EC_CURVE_ID: [u8; 4] = [0x80, 0x02, 0x0B, 0x36];

#[derive(Clone)]
struct WithoutCurveId(Arc<Mutex<VirtualApplet>>);

impl ApduTransport for WithoutCurveId {
    fn transceive(&mut self, command: &[u8]) -> Result<SecretBytes, LinkError> {
        if command.starts_with(&GET_EC_CURVE_ID) {
            return Ok(zeroize::Zeroizing::new(vec![0x6D, 0x00]));
        }
        Ok(self.0.lock().process(command).response)
    }
    fn resync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

fn token_on(chip: &WithoutCurveId) -> Token {
    let shared = chip.clone();
    let opener = Box::new(move |_: &crate::config::Config| {
        let transport: Box<dyn ApduTransport> = Box::new(shared.clone());
        Ok(applet_chip(Se050::select(transport).unwrap()))
    });
    Token::open(config(Path::new("/nonexistent/unused.state"), ""), opener).unwrap()
}

#[test]
fn a_chip_without_get_ec_curve_id_gets_an_error_not_a_guessed_curve() {
    let chip = WithoutCurveId(Arc::new(Mutex::new(VirtualApplet::in_memory())));
    // An Ed25519 pair made by another program: Se05x_API_WriteECKey, curve 40.
    let mut maker = Se050::select(Box::new(chip.clone()) as Box<dyn ApduTransport>).unwrap();
    maker
        .generate_ec_with_policy(
            crate::applet::ObjectId::new(0x7000_0042).unwrap(),
            crate::applet::EcCurve::Ed25519,
            &[],
        )
        .unwrap();
    let lister = token_on(&chip);
    let s = lister.open_session(0, RW).unwrap();
    assert_eq!(
        rv(lister.find_init(s, &Template::new(vec![]))),
        CKR_DEVICE_ERROR
    );
}
