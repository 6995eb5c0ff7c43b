//! Status words turned into typed errors that say what the chip refused.

use super::response::StatusWord;
use std::fmt;

/// What a status word other than 9000 means, as the IoT applet uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// 6700: a length field or value length is wrong.
    WrongLength,
    /// 6982: security status not satisfied (authentication or secure channel required).
    SecurityStatus,
    /// 6983: authentication method blocked (a UserID whose attempts are used up).
    AuthBlocked,
    /// 6984: the referenced data is invalid.
    DataInvalid,
    /// 6985: conditions of use not satisfied (e.g. reading a private key or a secret).
    ConditionsNotSatisfied,
    /// 6986: the object's policy forbids the operation.
    NotAllowedByPolicy,
    /// 6A80: wrong data (malformed TLVs, unknown object, bad values).
    WrongData,
    /// 6A82: applet (or file) not found.
    NotFound,
    /// 6A84: not enough memory (object count or NVM exhausted).
    MemoryFull,
    /// 6A86: P1/P2 not supported for this instruction.
    WrongP1P2,
    /// 6D00: instruction not supported (or no applet selected).
    InsNotSupported,
    /// 6E00: class not supported.
    ClaNotSupported,
    /// Any other status word.
    Unknown(u16),
}

impl Refusal {
    pub fn from_status(sw: StatusWord) -> Self {
        match sw {
            StatusWord::WRONG_LENGTH => Refusal::WrongLength,
            StatusWord::SECURITY_STATUS => Refusal::SecurityStatus,
            StatusWord::AUTH_BLOCKED => Refusal::AuthBlocked,
            StatusWord::DATA_INVALID => Refusal::DataInvalid,
            StatusWord::CONDITIONS_NOT_SATISFIED => Refusal::ConditionsNotSatisfied,
            StatusWord::NOT_ALLOWED_BY_POLICY => Refusal::NotAllowedByPolicy,
            StatusWord::WRONG_DATA => Refusal::WrongData,
            StatusWord::NOT_FOUND => Refusal::NotFound,
            StatusWord::MEMORY_FULL => Refusal::MemoryFull,
            StatusWord::WRONG_P1P2 => Refusal::WrongP1P2,
            StatusWord::INS_NOT_SUPPORTED => Refusal::InsNotSupported,
            StatusWord::CLA_NOT_SUPPORTED => Refusal::ClaNotSupported,
            StatusWord(other) => Refusal::Unknown(other),
        }
    }

    /// A human explanation of the refusal.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::WrongLength => "wrong length",
            Refusal::SecurityStatus => {
                "security status not satisfied (authentication required; an SE050 provisioned \
                 with \"Platform SCP required\" answers this to every plain command: configure \
                 scp03_keys)"
            }
            Refusal::AuthBlocked => "authentication blocked (no attempts left)",
            Refusal::DataInvalid => "data invalid",
            Refusal::ConditionsNotSatisfied => {
                "conditions of use not satisfied (e.g. the object is a private key or secret, \
                 or is reserved)"
            }
            Refusal::NotAllowedByPolicy => "not allowed by the object's policy",
            Refusal::WrongData => "wrong data (malformed command or no such object)",
            Refusal::NotFound => "applet not found",
            Refusal::MemoryFull => "memory full (no room for another object)",
            Refusal::WrongP1P2 => "P1/P2 not supported",
            Refusal::InsNotSupported => "instruction not supported (is the applet selected?)",
            Refusal::ClaNotSupported => "class not supported",
            Refusal::Unknown(_) => "unknown status word",
        }
    }
}

/// The chip answered a command with a status word other than 9000.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipRefused {
    /// The command that was refused, with its object id if it had one
    /// (e.g. "ReadObject 0x00000010").
    pub command: String,
    pub sw: StatusWord,
    pub refusal: Refusal,
}

impl ChipRefused {
    pub fn new(command: impl Into<String>, sw: StatusWord) -> Self {
        ChipRefused {
            command: command.into(),
            sw,
            refusal: Refusal::from_status(sw),
        }
    }
}

impl fmt::Display for ChipRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the SE050 refused {} with status {}: {}",
            self.command,
            self.sw,
            self.refusal.describe()
        )
    }
}

impl std::error::Error for ChipRefused {}

/// Ok for 9000; the typed refusal otherwise.
pub fn check(command: impl FnOnce() -> String, sw: StatusWord) -> Result<(), ChipRefused> {
    if sw.is_ok() {
        Ok(())
    } else {
        Err(ChipRefused::new(command(), sw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_status_word_maps_to_its_refusal() {
        let table = [
            (0x6700, Refusal::WrongLength),
            (0x6982, Refusal::SecurityStatus),
            (0x6984, Refusal::DataInvalid),
            (0x6985, Refusal::ConditionsNotSatisfied),
            (0x6986, Refusal::NotAllowedByPolicy),
            (0x6A80, Refusal::WrongData),
            (0x6A82, Refusal::NotFound),
            (0x6A84, Refusal::MemoryFull),
            (0x6A86, Refusal::WrongP1P2),
            (0x6D00, Refusal::InsNotSupported),
            (0x6E00, Refusal::ClaNotSupported),
            (0x6F00, Refusal::Unknown(0x6F00)),
            (0x6123, Refusal::Unknown(0x6123)),
        ];
        for (sw, refusal) in table {
            assert_eq!(Refusal::from_status(StatusWord(sw)), refusal, "{sw:04X}");
        }
    }

    #[test]
    fn the_error_names_the_command_and_the_reason() {
        assert!(check(|| unreachable!(), StatusWord::OK).is_ok());
        let err = check(|| "ReadObject 0x00000010".into(), StatusWord(0x6985)).unwrap_err();
        assert_eq!(err.refusal, Refusal::ConditionsNotSatisfied);
        let text = err.to_string();
        assert!(text.contains("ReadObject 0x00000010"), "{text}");
        assert!(text.contains("6985"), "{text}");
        assert!(text.contains("conditions of use not satisfied"), "{text}");
        let unknown = ChipRefused::new("GetRandom", StatusWord(0x6123)).to_string();
        assert!(
            unknown.contains("6123") && unknown.contains("unknown"),
            "{unknown}"
        );
    }
}
