//! What ReadType tells about an object: its type and whether it is persistent.

/// Secure object types (SE05x_SecObjTyp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    EcKeyPair,
    EcPrivateKey,
    EcPublicKey,
    RsaKeyPair,
    AesKey,
    DesKey,
    BinaryFile,
    UserId,
    Counter,
    Pcr,
    Curve,
    HmacKey,
    /// A type code this driver does not name.
    Other(u8),
}

impl ObjectType {
    pub fn from_code(code: u8) -> Self {
        match code {
            0x01 => ObjectType::EcKeyPair,
            0x02 => ObjectType::EcPrivateKey,
            0x03 => ObjectType::EcPublicKey,
            0x04 => ObjectType::RsaKeyPair,
            0x09 => ObjectType::AesKey,
            0x0A => ObjectType::DesKey,
            0x0B => ObjectType::BinaryFile,
            0x0C => ObjectType::UserId,
            0x0D => ObjectType::Counter,
            0x0F => ObjectType::Pcr,
            0x10 => ObjectType::Curve,
            0x11 => ObjectType::HmacKey,
            other => ObjectType::Other(other),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            ObjectType::EcKeyPair => 0x01,
            ObjectType::EcPrivateKey => 0x02,
            ObjectType::EcPublicKey => 0x03,
            ObjectType::RsaKeyPair => 0x04,
            ObjectType::AesKey => 0x09,
            ObjectType::DesKey => 0x0A,
            ObjectType::BinaryFile => 0x0B,
            ObjectType::UserId => 0x0C,
            ObjectType::Counter => 0x0D,
            ObjectType::Pcr => 0x0F,
            ObjectType::Curve => 0x10,
            ObjectType::HmacKey => 0x11,
            ObjectType::Other(code) => code,
        }
    }
}

/// Whether an object's contents survive a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Persistence {
    Persistent,
    Transient,
}

impl Persistence {
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(Persistence::Persistent),
            0x02 => Some(Persistence::Transient),
            _ => None,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Persistence::Persistent => 0x01,
            Persistence::Transient => 0x02,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in 0..=0xFF {
            assert_eq!(ObjectType::from_code(code).code(), code);
        }
        assert_eq!(ObjectType::from_code(0x0B), ObjectType::BinaryFile);
        assert_eq!(Persistence::from_code(1), Some(Persistence::Persistent));
        assert_eq!(Persistence::from_code(2), Some(Persistence::Transient));
        assert_eq!(Persistence::from_code(3), None);
    }
}
