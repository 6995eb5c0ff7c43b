//! The token's `Chip`, implemented by the applet layer on a device opened from the config.

use super::chip::{
    AuthCounter, Chip, ChipError, ChipErrorKind, ChipIdentity, ChipResult, ObjectKind, PolicyEntry,
};
use crate::apdu::Refusal;
use crate::applet::{ObjectId, ObjectType, Se050, Se050Error};
use crate::config::{Config, TransportConfig};
use crate::device::{self, Transport};
use crate::t1::ApduTransport;
use zeroize::Zeroizing;

/// Opens the chip the configuration names (the `Opener` the token uses).
pub fn open_chip(config: &Config) -> ChipResult<Box<dyn Chip>> {
    if let TransportConfig::Virtual { state, .. } = &config.transport {
        if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                ChipError::new(
                    ChipErrorKind::Link,
                    format!(
                        "cannot create the virtual SE050's state directory {}: {e}",
                        dir.display()
                    ),
                )
            })?;
        }
    }
    let transport = match &config.transport {
        TransportConfig::I2c { device, address } => Transport::I2c {
            device: device.clone(),
            address: *address,
        },
        TransportConfig::Virtual { state, latency } => Transport::Virtual {
            state: state.clone(),
            latency: *latency,
        },
    };
    let se050 = device::secure::open_secured(&transport, config.lock_timeout, &config.scp03)
        .map_err(|e| {
            let place = match &config.transport {
                TransportConfig::I2c { device, address } => {
                    format!("the SE050 at {} address {address:#04x}", device.display())
                }
                TransportConfig::Virtual { state, .. } => {
                    format!("the virtual SE050 with state {}", state.display())
                }
            };
            // Name what was looked for: without a file the module never falls back to a
            // software chip, so a missing config shows up here, not as a copyable key.
            ChipError::new(
                ChipErrorKind::Link,
                format!("{}: cannot open {place}: {e}", config.origin()),
            )
        })?;
    Ok(Box::new(AppletChip { se050 }))
}

/// The token's chip on an applet already selected on some transport (tests build one on an
/// in-process virtual applet they can reset).
pub fn applet_chip(se050: Se050<Box<dyn ApduTransport>>) -> Box<dyn Chip> {
    Box::new(AppletChip { se050 })
}

struct AppletChip {
    se050: Se050<Box<dyn ApduTransport>>,
}

impl AppletChip {
    /// `chip_error`, and inside an authenticated session: a 6982 answered to a wrapped command
    /// means the chip no longer knows the session (a reset closed it; the applet answers 6982
    /// for an unknown session id). It is forgotten here, never reopened: the module does not
    /// keep the PIN, the caller logs in again.
    fn fail(&mut self, e: Se050Error) -> ChipError {
        if self.se050.session().is_some() && e.refusal() == Some(Refusal::SecurityStatus) {
            self.se050.forget_session();
            return ChipError::new(
                ChipErrorKind::SessionLost,
                format!("the chip lost the authenticated session (reset?): {e}"),
            );
        }
        chip_error(e)
    }
}

fn object(id: u32) -> ChipResult<ObjectId> {
    ObjectId::new(id).map_err(|e| ChipError::new(ChipErrorKind::Refused, e.to_string()))
}

fn chip_error(e: Se050Error) -> ChipError {
    ChipError::new(chip_error_kind(&e), e.to_string())
}

fn chip_error_kind(e: &Se050Error) -> ChipErrorKind {
    match e {
        Se050Error::Link { .. } => ChipErrorKind::Link,
        Se050Error::Refused(_) => match e.refusal() {
            // The applet answers 6A80 for an id that names no object.
            Some(Refusal::WrongData) | Some(Refusal::NotFound) => ChipErrorKind::NotFound,
            Some(Refusal::MemoryFull) => ChipErrorKind::Full,
            Some(Refusal::NotAllowedByPolicy) => ChipErrorKind::Denied,
            _ => ChipErrorKind::Refused,
        },
        _ => ChipErrorKind::Refused,
    }
}

impl AppletChip {
    /// Which curve an EC pair is on (GetECCurveId). A chip that does not answer (refuses the
    /// command, or answers a curve of no shape) gives an error: the kind of a key is never
    /// guessed from its public key, where a 32-byte Ed25519 key would pass for X25519.
    fn ec_pair_kind(&mut self, id: u32) -> ChipResult<ObjectKind> {
        use crate::applet::protocol::{CURVE_ED25519, CURVE_NIST_P256, CURVE_X25519};
        use crate::applet::EcCurve;
        match self.se050.ec_curve_id(object(id)?) {
            Ok(CURVE_X25519) => Ok(ObjectKind::X25519Pair),
            Ok(CURVE_NIST_P256) => Ok(ObjectKind::EcPair(EcCurve::NistP256)),
            Ok(CURVE_ED25519) => Ok(ObjectKind::EcPair(EcCurve::Ed25519)),
            Ok(other) => {
                log::debug!("object {id:#010x}: EC pair on curve {other:#04x}, not shown");
                Ok(ObjectKind::Other)
            }
            // Not a refusal about this object: the chip does not have the command. Hiding the
            // key (as for an object the chip will not describe) would be a quiet guess too.
            Err(e)
                if matches!(
                    e.refusal(),
                    Some(Refusal::InsNotSupported | Refusal::WrongP1P2)
                ) =>
            {
                Err(ChipError::new(
                    ChipErrorKind::Unsupported,
                    format!("object {id:#010x}: the chip does not tell the curve of its EC keys ({e}): GetECCurveId is needed"),
                ))
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl Chip for AppletChip {
    fn generate_ec(
        &mut self,
        id: u32,
        curve: crate::applet::EcCurve,
        policy: &[PolicyEntry],
    ) -> ChipResult<()> {
        self.se050
            .generate_ec_with_policy(object(id)?, curve, policy)
            .map_err(|e| self.fail(e))
    }

    fn read_ec_public(&mut self, id: u32, curve: crate::applet::EcCurve) -> ChipResult<Vec<u8>> {
        self.se050
            .read_ec_public(object(id)?, curve)
            .map_err(|e| self.fail(e))
    }

    fn ecdsa_sign(&mut self, id: u32, digest: &[u8; 32]) -> ChipResult<[u8; 64]> {
        self.se050
            .ecdsa_sign_digest(object(id)?, digest)
            .map_err(|e| self.fail(e))
    }

    fn eddsa_sign(&mut self, id: u32, message: &[u8]) -> ChipResult<[u8; 64]> {
        self.se050
            .eddsa_sign(object(id)?, message)
            .map_err(|e| self.fail(e))
    }

    fn ecdh_p256(&mut self, id: u32, peer: &[u8]) -> ChipResult<Zeroizing<[u8; 32]>> {
        self.se050
            .ecdh_p256(object(id)?, peer)
            .map_err(|e| self.fail(e))
    }

    fn identity(&mut self) -> ChipResult<ChipIdentity> {
        let v = self.se050.version();
        let unique_id = self.se050.unique_id().map_err(|e| self.fail(e))?;
        Ok(ChipIdentity {
            applet_version: (v.major, v.minor, v.patch),
            unique_id,
        })
    }

    fn generate_x25519(&mut self, id: u32) -> ChipResult<()> {
        self.se050
            .generate_x25519(object(id)?)
            .map_err(|e| self.fail(e))
    }

    fn read_x25519_public(&mut self, id: u32) -> ChipResult<[u8; 32]> {
        self.se050
            .read_x25519_public(object(id)?)
            .map_err(|e| self.fail(e))
    }

    fn ecdh_x25519(&mut self, id: u32, peer: &[u8; 32]) -> ChipResult<Zeroizing<[u8; 32]>> {
        self.se050
            .ecdh_x25519(object(id)?, peer)
            .map_err(|e| self.fail(e))
    }

    fn delete(&mut self, id: u32) -> ChipResult<()> {
        self.se050.delete(object(id)?).map_err(|e| self.fail(e))
    }

    fn exists(&mut self, id: u32) -> ChipResult<bool> {
        self.se050.exists(object(id)?).map_err(|e| self.fail(e))
    }

    fn list_ids(&mut self) -> ChipResult<Vec<u32>> {
        Ok(self
            .se050
            .list_ids()
            .map_err(|e| self.fail(e))?
            .into_iter()
            .map(ObjectId::value)
            .collect())
    }

    fn kind(&mut self, id: u32) -> ChipResult<ObjectKind> {
        let (kind, _) = self
            .se050
            .read_type(object(id)?)
            .map_err(|e| self.fail(e))?;
        Ok(match kind {
            ObjectType::EcKeyPair => self.ec_pair_kind(id)?,
            ObjectType::BinaryFile => ObjectKind::BinaryFile,
            _ => ObjectKind::Other,
        })
    }

    fn get_random(&mut self, len: usize) -> ChipResult<Vec<u8>> {
        self.se050.get_random(len).map_err(|e| self.fail(e))
    }

    fn write_binary(&mut self, id: u32, data: &[u8], policy: &[PolicyEntry]) -> ChipResult<()> {
        self.se050
            .write_binary_with_policy(object(id)?, data, policy)
            .map_err(|e| self.fail(e))
    }

    fn read_binary(&mut self, id: u32) -> ChipResult<Vec<u8>> {
        self.se050
            .read_binary(object(id)?)
            .map_err(|e| self.fail(e))
    }

    fn attest(
        &mut self,
        id: u32,
        freshness: &[u8; 16],
    ) -> ChipResult<(crate::applet::attest::AttestedRead, Vec<Vec<u8>>)> {
        let read = self
            .se050
            .read_with_attestation(object(id)?, freshness)
            .map_err(|e| self.fail(e))?;
        let certificates = self
            .se050
            .attestation_certificates()
            .map_err(|e| self.fail(e))?;
        Ok((read, certificates))
    }

    fn generate_x25519_with_policy(&mut self, id: u32, policy: &[PolicyEntry]) -> ChipResult<()> {
        self.se050
            .generate_x25519_with_policy(object(id)?, policy)
            .map_err(|e| self.fail(e))
    }

    fn auth_counter(&mut self, id: u32) -> ChipResult<Option<AuthCounter>> {
        match self.se050.read_attributes(object(id)?) {
            Ok(attributes) if attributes.is_auth_object => Ok(Some(AuthCounter {
                failures: attributes.failures,
                max_attempts: attributes.max_attempts,
            })),
            Ok(attributes) => Err(ChipError::new(
                ChipErrorKind::Refused,
                format!(
                    "object {id:#010x} is a {:?}, not an authentication object",
                    attributes.class
                ),
            )),
            Err(e) => match self.fail(e) {
                e if e.kind == ChipErrorKind::NotFound => Ok(None),
                e => Err(e),
            },
        }
    }

    fn write_user_id(
        &mut self,
        id: u32,
        value: &[u8],
        max_attempts: u16,
        policy: &[PolicyEntry],
    ) -> ChipResult<()> {
        self.se050
            .write_user_id(object(id)?, value, max_attempts, policy)
            .map_err(|e| self.fail(e))
    }

    fn open_auth_session(&mut self, id: u32, value: &[u8]) -> ChipResult<()> {
        if self.se050.session().is_some() {
            self.close_auth_session();
        }
        // CreateSession answers 6983 for a blocked UserID: no attempt is spent then. Its 6A80
        // (no such UserID) is NotFound, which the login only believes once CheckObjectExists
        // confirmed it (token/login.rs): the status word itself carries no MAC.
        if let Err(e) = self.se050.open_session(object(id)?) {
            return Err(match e.refusal() {
                Some(Refusal::AuthBlocked) => {
                    ChipError::new(ChipErrorKind::PinLocked, e.to_string())
                }
                _ => chip_error(e),
            });
        }
        // One VerifySessionUserID: its answer is what the caller hears (never retried).
        match self.se050.verify_user_id(value) {
            Ok(()) => Ok(()),
            Err(e) => {
                // 6982 to VerifySessionUserID means the value did not match: say so, not the
                // generic reading of 6982 (which suggests a missing secure channel).
                let (kind, what) = match e.refusal() {
                    Some(Refusal::SecurityStatus) => (
                        ChipErrorKind::PinIncorrect,
                        format!("the chip refused the PIN of UserID {id:#010x} (6982: wrong value; one attempt counted)"),
                    ),
                    Some(Refusal::AuthBlocked) => (
                        ChipErrorKind::PinLocked,
                        format!("UserID {id:#010x} is locked (6983: no attempts left)"),
                    ),
                    // Any other refusal (6A80 included) says nothing about whether the UserID
                    // exists, and carries no MAC under SCP03: the PIN check failed, that is all.
                    _ => match chip_error_kind(&e) {
                        ChipErrorKind::NotFound => (
                            ChipErrorKind::Refused,
                            format!("VerifySessionUserID of UserID {id:#010x} failed: {e}"),
                        ),
                        kind => (kind, e.to_string()),
                    },
                };
                self.close_auth_session();
                Err(ChipError::new(kind, what))
            }
        }
    }

    fn close_auth_session(&mut self) {
        if let Err(e) = self.se050.close_session() {
            log::debug!("CloseSession: {e} (the session is forgotten anyway)");
        }
    }

    fn in_auth_session(&self) -> bool {
        self.se050.session().is_some()
    }

    fn set_auth_session_aside(&mut self) -> Option<[u8; 8]> {
        self.se050.set_session_aside()
    }

    fn resume_auth_session(&mut self, session: [u8; 8]) {
        self.se050.resume_session(session)
    }
}
