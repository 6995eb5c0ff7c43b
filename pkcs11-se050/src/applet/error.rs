//! What can go wrong talking to the IoT applet.

use super::object_id::ObjectIdError;
use super::version::AppletVersion;
use crate::apdu::{ChipRefused, Refusal};
use crate::t1::LinkError;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Se050Error {
    /// The link below failed while exchanging `command`.
    Link { command: String, source: LinkError },
    /// The chip answered with a status word other than 9000.
    Refused(ChipRefused),
    /// The chip answered 9000 but with data this driver cannot read.
    BadResponse { command: String, reason: String },
    /// The applet has no X25519 (DH_MONT missing): an SE050A.
    NoX25519 { version: AppletVersion },
    /// The object id cannot be used for this command.
    ObjectId(ObjectIdError),
    /// An argument the chip could never accept (said before sending anything).
    InvalidArgument(String),
}

impl Se050Error {
    /// The chip's refusal, when that is what happened.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Se050Error::Refused(refused) => Some(refused.refusal),
            _ => None,
        }
    }
}

impl fmt::Display for Se050Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Se050Error::Link { command, source } => {
                write!(f, "SE050 {command}: the link failed: {source}")
            }
            Se050Error::Refused(refused) => refused.fmt(f),
            Se050Error::BadResponse { command, reason } => {
                write!(f, "SE050 {command}: malformed answer: {reason}")
            }
            Se050Error::NoX25519 { version } => write!(
                f,
                "the secure element's {version} has no X25519 (feature bit DH_MONT 0x0008 \
                 missing): SE050A has no X25519; an SE050C or SE050E is needed"
            ),
            Se050Error::ObjectId(err) => err.fmt(f),
            Se050Error::InvalidArgument(what) => write!(f, "SE050: {what}"),
        }
    }
}

impl std::error::Error for Se050Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Se050Error::Link { source, .. } => Some(source),
            Se050Error::Refused(refused) => Some(refused),
            Se050Error::ObjectId(err) => Some(err),
            _ => None,
        }
    }
}

impl From<ObjectIdError> for Se050Error {
    fn from(err: ObjectIdError) -> Self {
        Se050Error::ObjectId(err)
    }
}
