//! The module's retry rule: which commands the transports may send a second time on their own.
//!
//! A transport that sees a bare 6982 or 6D00 cannot tell whether the chip ran the command:
//! the chip may have lost its secure channel or applet selection (a reset: nothing was run),
//! it may have refused the command itself (a wrong PIN is 6982), or someone on the bus may
//! have forged the status word after the chip ran it. Under SCP03 an error status word carries
//! no R-MAC (GP Amendment D), so the channel cannot tell these apart either.
//!
//! Hence: only a command that changes nothing on the chip is ever resent by the module. Running
//! it twice is the same as running it once. Every other command (PIN checks, sessions, key
//! generation, writes, deletion, PUT KEY, anything this list does not know) is sent once, and
//! whatever answer comes back is the caller's: counted as failed, reported, never replayed.
//!
//! The resendable commands (AN12413): SELECT, GetVersion, CheckObjectExists, GetRandom,
//! GetFreeMemory, the reads (ReadObject, ReadSize, ReadIDList, ReadType, ReadObjectAttributes),
//! and ECDHGenerateSharedSecret (a function of the stored key and the peer's point: it stores
//! nothing). A ProcessSessionCmd is resendable when the command it carries is.

use super::protocol::*;
use crate::apdu::{CommandApdu, Tlvs};

/// Whether `command` (a plain command APDU, as the applet layer sends it) changes nothing on
/// the chip, so that a transport may send it once more after an answer it cannot trust.
pub fn may_resend(command: &[u8]) -> bool {
    may_resend_at(command, 0)
}

fn may_resend_at(command: &[u8], depth: usize) -> bool {
    let Ok(apdu) = CommandApdu::parse(command) else {
        return false;
    };
    match (apdu.cla, apdu.ins) {
        (CLA_ISO, INS_SELECT) => true,
        (CLA_IOT, INS_READ) => matches!(
            apdu.p2,
            P2_DEFAULT | P2_SIZE | P2_LIST | P2_TYPE | P2_ATTRIBUTES
        ),
        (CLA_IOT, INS_MGMT) => matches!(apdu.p2, P2_VERSION | P2_EXIST | P2_RANDOM | P2_MEMORY),
        (CLA_IOT, INS_CRYPTO) => apdu.p1 == P1_EC && apdu.p2 == P2_DH,
        // A session-wrapped command: as the command inside (never a session inside a session).
        (CLA_IOT, INS_PROCESS) if depth == 0 => Tlvs::parse(&apdu.data)
            .ok()
            .and_then(|tlvs| tlvs.get(TAG_1))
            .is_some_and(|inner| may_resend_at(inner, depth + 1)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::applet::session::wrap;

    fn apdu(ins: u8, p1: u8, p2: u8) -> Vec<u8> {
        CommandApdu::new(
            CLA_IOT,
            ins,
            p1,
            p2,
            vec![0x41, 0x04, 1, 2, 3, 4],
            Some(256),
        )
        .encode()
    }

    #[test]
    fn reads_and_ecdh_may_be_resent() {
        for command in [
            select_command().encode(),
            apdu(INS_MGMT, P1_DEFAULT, P2_VERSION),
            apdu(INS_MGMT, P1_DEFAULT, P2_EXIST),
            apdu(INS_MGMT, P1_DEFAULT, P2_RANDOM),
            apdu(INS_READ, P1_DEFAULT, P2_DEFAULT),
            apdu(INS_READ, P1_DEFAULT, P2_LIST),
            apdu(INS_READ, P1_DEFAULT, P2_TYPE),
            apdu(INS_READ, P1_DEFAULT, P2_ATTRIBUTES),
            apdu(INS_CRYPTO, P1_EC, P2_DH),
        ] {
            assert!(may_resend(&command), "{command:02x?}");
        }
    }

    #[test]
    fn what_changes_the_chip_is_never_resent() {
        for command in [
            // VerifySessionUserID, CreateSession, CloseSession
            apdu(INS_MGMT, P1_DEFAULT, P2_SESSION_USERID),
            apdu(INS_MGMT, P1_DEFAULT, P2_SESSION_CREATE),
            apdu(INS_MGMT, P1_DEFAULT, P2_SESSION_CLOSE),
            // DeleteSecureObject, DeleteAll
            apdu(INS_MGMT, P1_DEFAULT, P2_DELETE_OBJECT),
            apdu(INS_MGMT, P1_DEFAULT, P2_DELETE_ALL),
            // WriteECKey (generate), WriteBinary, WriteUserID, a transient write
            apdu(INS_WRITE, P1_KEY_PAIR | P1_EC, P2_DEFAULT),
            apdu(INS_WRITE, P1_BINARY, P2_DEFAULT),
            apdu(INS_WRITE | INS_FLAG_AUTH_OBJECT, P1_USERID, P2_DEFAULT),
            apdu(INS_WRITE | INS_FLAG_TRANSIENT, P1_BINARY, P2_DEFAULT),
            // Other crypto, GetTimestamp, PUT KEY, INITIALIZE UPDATE, nonsense
            apdu(INS_CRYPTO, P1_EC, 0x09),
            apdu(INS_MGMT, P1_DEFAULT, P2_TIME),
            CommandApdu::new(0x80, 0xD8, 0x0B, 0x81, vec![0; 16], Some(256)).encode(),
            CommandApdu::new(0x80, 0x50, 0x0B, 0x00, vec![0; 8], Some(256)).encode(),
            vec![0x80],
            Vec::new(),
        ] {
            assert!(!may_resend(&command), "{command:02x?}");
        }
    }

    #[test]
    fn a_session_wrapped_command_is_judged_by_what_it_carries() {
        let session = [7u8; 8];
        let carried = |ins, p1, p2| {
            let inner = CommandApdu::parse(&apdu(ins, p1, p2)).unwrap();
            wrap(&session, &inner).encode()
        };
        assert!(may_resend(&carried(INS_CRYPTO, P1_EC, P2_DH)));
        assert!(may_resend(&carried(INS_READ, P1_DEFAULT, P2_DEFAULT)));
        assert!(!may_resend(&carried(
            INS_MGMT,
            P1_DEFAULT,
            P2_SESSION_USERID
        )));
        assert!(!may_resend(&carried(
            INS_MGMT,
            P1_DEFAULT,
            P2_SESSION_CLOSE
        )));
        assert!(!may_resend(&carried(
            INS_WRITE,
            P1_KEY_PAIR | P1_EC,
            P2_DEFAULT
        )));
        // A session inside a session is nothing the module sends: not resent.
        let twice = wrap(
            &session,
            &CommandApdu::parse(&carried(INS_READ, P1_DEFAULT, P2_DEFAULT)).unwrap(),
        );
        assert!(!may_resend(&twice.encode()));
    }
}
