//! The token's `Chip`, implemented by the applet layer on a device opened from the config.

use super::chip::{Chip, ChipError, ChipErrorKind, ChipIdentity, ChipResult, ObjectKind};
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

struct AppletChip {
    se050: Se050<Box<dyn ApduTransport>>,
}

fn object(id: u32) -> ChipResult<ObjectId> {
    ObjectId::new(id).map_err(|e| ChipError::new(ChipErrorKind::Refused, e.to_string()))
}

fn chip_error(e: Se050Error) -> ChipError {
    let kind = match &e {
        Se050Error::Link { .. } => ChipErrorKind::Link,
        Se050Error::Refused(_) => match e.refusal() {
            // The applet answers 6A80 for an id that names no object.
            Some(Refusal::WrongData) | Some(Refusal::NotFound) => ChipErrorKind::NotFound,
            Some(Refusal::MemoryFull) => ChipErrorKind::Full,
            _ => ChipErrorKind::Refused,
        },
        _ => ChipErrorKind::Refused,
    };
    ChipError::new(kind, e.to_string())
}

impl Chip for AppletChip {
    fn identity(&mut self) -> ChipResult<ChipIdentity> {
        let v = self.se050.version();
        let unique_id = self.se050.unique_id().map_err(chip_error)?;
        Ok(ChipIdentity {
            applet_version: (v.major, v.minor, v.patch),
            unique_id,
        })
    }

    fn generate_x25519(&mut self, id: u32) -> ChipResult<()> {
        self.se050.generate_x25519(object(id)?).map_err(chip_error)
    }

    fn read_x25519_public(&mut self, id: u32) -> ChipResult<[u8; 32]> {
        self.se050
            .read_x25519_public(object(id)?)
            .map_err(chip_error)
    }

    fn ecdh_x25519(&mut self, id: u32, peer: &[u8; 32]) -> ChipResult<Zeroizing<[u8; 32]>> {
        self.se050
            .ecdh_x25519(object(id)?, peer)
            .map_err(chip_error)
    }

    fn delete(&mut self, id: u32) -> ChipResult<()> {
        self.se050.delete(object(id)?).map_err(chip_error)
    }

    fn exists(&mut self, id: u32) -> ChipResult<bool> {
        self.se050.exists(object(id)?).map_err(chip_error)
    }

    fn list_ids(&mut self) -> ChipResult<Vec<u32>> {
        Ok(self
            .se050
            .list_ids()
            .map_err(chip_error)?
            .into_iter()
            .map(ObjectId::value)
            .collect())
    }

    fn kind(&mut self, id: u32) -> ChipResult<ObjectKind> {
        let (kind, _) = self.se050.read_type(object(id)?).map_err(chip_error)?;
        Ok(match kind {
            // Which curve is checked when the public key is read (32 bytes for X25519).
            ObjectType::EcKeyPair => ObjectKind::X25519Pair,
            ObjectType::BinaryFile => ObjectKind::BinaryFile,
            _ => ObjectKind::Other,
        })
    }

    fn get_random(&mut self, len: usize) -> ChipResult<Vec<u8>> {
        self.se050.get_random(len).map_err(chip_error)
    }

    fn write_binary(&mut self, id: u32, data: &[u8]) -> ChipResult<()> {
        self.se050
            .write_binary(object(id)?, data)
            .map_err(chip_error)
    }

    fn read_binary(&mut self, id: u32) -> ChipResult<Vec<u8>> {
        self.se050.read_binary(object(id)?).map_err(chip_error)
    }
}
