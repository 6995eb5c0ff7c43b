//! Secure object identifiers and the rules the applet applies to them.

use std::fmt;

/// A secure object identifier: 0 is invalid; 0x7FFF0000..=0x7FFFFFFF belongs to the applet and
/// 0xF0000000..=0xFFFFFFFF to NXP's provisioning. Reserved objects can be read, never created or
/// deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(u32);

/// Why an object id cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectIdError {
    /// 0 is not an object id.
    Zero,
    /// The id lies in a reserved range: readable, but not to be created or deleted.
    Reserved { id: u32, range: &'static str },
}

impl fmt::Display for ObjectIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectIdError::Zero => write!(f, "object id 0x00000000 is invalid"),
            ObjectIdError::Reserved { id, range } => write!(
                f,
                "object id 0x{id:08X} is reserved ({range}): it cannot be created or deleted"
            ),
        }
    }
}

impl std::error::Error for ObjectIdError {}

pub const APPLET_RESERVED_START: u32 = 0x7FFF_0000;
pub const APPLET_RESERVED_END: u32 = 0x7FFF_FFFF;
pub const NXP_RESERVED_START: u32 = 0xF000_0000;

impl ObjectId {
    /// The applet's object holding the chip's 18-byte unique id.
    pub const UNIQUE_ID: ObjectId = ObjectId(0x7FFF_0206);

    /// Any id but 0 (reserved ids are accepted: they can be read).
    pub fn new(id: u32) -> Result<Self, ObjectIdError> {
        if id == 0 {
            Err(ObjectIdError::Zero)
        } else {
            Ok(ObjectId(id))
        }
    }

    pub fn value(self) -> u32 {
        self.0
    }

    pub fn to_be_bytes(self) -> [u8; 4] {
        self.0.to_be_bytes()
    }

    /// The reserved range this id falls in, if any.
    pub fn reserved_range(self) -> Option<&'static str> {
        match self.0 {
            APPLET_RESERVED_START..=APPLET_RESERVED_END => {
                Some("applet-reserved 0x7FFF0000-0x7FFFFFFF")
            }
            NXP_RESERVED_START.. => Some("NXP-reserved 0xF0000000-0xFFFFFFFF"),
            _ => None,
        }
    }

    pub fn is_reserved(self) -> bool {
        self.reserved_range().is_some()
    }

    /// Ok when objects may be created at or deleted from this id.
    pub fn check_user_writable(self) -> Result<(), ObjectIdError> {
        match self.reserved_range() {
            Some(range) => Err(ObjectIdError::Reserved { id: self.0, range }),
            None => Ok(()),
        }
    }
}

impl TryFrom<u32> for ObjectId {
    type Error = ObjectIdError;
    fn try_from(id: u32) -> Result<Self, Self::Error> {
        ObjectId::new(id)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08X}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_invalid() {
        assert_eq!(ObjectId::new(0), Err(ObjectIdError::Zero));
        assert!(ObjectIdError::Zero.to_string().contains("invalid"));
    }

    #[test]
    fn customer_space_is_writable() {
        for id in [1, 0x1234_5678, 0x7BFF_FFFF, 0x7FFE_FFFF] {
            let id = ObjectId::new(id).unwrap();
            assert!(!id.is_reserved());
            assert!(id.check_user_writable().is_ok());
        }
    }

    #[test]
    fn reserved_ranges_are_readable_but_not_writable() {
        for id in [
            0x7FFF_0000,
            0x7FFF_0206,
            0x7FFF_FFFF,
            0xF000_0000,
            0xF000_0012,
            0xFFFF_FFFF,
        ] {
            let id = ObjectId::new(id).expect("reserved ids are valid for reading");
            assert!(id.is_reserved());
            let err = id.check_user_writable().unwrap_err();
            assert!(err.to_string().contains("reserved"), "{err}");
        }
        assert!(ObjectId::UNIQUE_ID
            .reserved_range()
            .unwrap()
            .starts_with("applet"));
        assert!(ObjectId::new(0xF000_0000)
            .unwrap()
            .reserved_range()
            .unwrap()
            .starts_with("NXP"));
        assert_eq!(ObjectId::new(0x10).unwrap().to_string(), "0x00000010");
    }
}
