//! The virtual applet's authentication objects and sessions (AN12413 section 4.5), wire
//! encoding as in NXP's Plug & Trust middleware (see `applet/session.rs` for the references).
//!
//! - WriteUserID creates a UserID (4..=16 bytes, optional max attempts and policy) or overwrites
//!   one (allowed by its policy's ALLOW_WRITE for the caller), which resets its failure counter.
//! - CreateSession for a UserID returns a random 8-byte session id; sessions live in the chip's
//!   RAM: a chip reset closes them all.
//! - ProcessSessionCmd runs the inner command as the session's authentication object, once the
//!   session is verified: before that only VerifySessionUserID and CloseSession are accepted
//!   (6982 otherwise).
//! - VerifySessionUserID: a wrong value adds one to the UserID's failure counter, kept in the
//!   persistent state (6982); at the maximum the UserID is blocked (6983) until overwritten; a
//!   right value resets the counter.
//!
//! Fidelity note: on the real chip sessions belong to the chip, shared by every host process;
//! here each process's virtual applet has its own (the persistent state, counter included, is
//! shared). A session opened by one process is therefore unknown to another (6982).

use super::*;
use std::collections::HashMap;

/// Sessions the chip keeps open at once (the real applet has a small fixed number).
pub const MAX_SESSIONS: usize = 4;

/// One open applet session.
#[derive(Debug, Clone, Copy)]
pub struct SessionState {
    pub auth_id: u32,
    pub verified: bool,
}

/// The applet's open sessions, by session id.
pub type Sessions = HashMap<[u8; 8], SessionState>;

/// The longest UserID value (AN12413: 4 to 16 bytes).
const MAX_USER_ID_LEN: usize = 16;

/// Whether `given` is the UserID's `value`, in a time that depends on neither the values nor
/// their lengths: both are laid into fixed 16-byte buffers, every byte of which is compared, and
/// the lengths are folded into the same accumulator (an early exit on a length mismatch would
/// tell an attacker the PIN's length). A guess longer than 16 bytes is wrong by definition.
fn same_value(given: &[u8], value: &[u8]) -> bool {
    let mut a = Zeroizing::new([0u8; MAX_USER_ID_LEN]);
    let mut b = Zeroizing::new([0u8; MAX_USER_ID_LEN]);
    let too_long = u8::from(given.len() > MAX_USER_ID_LEN || value.len() > MAX_USER_ID_LEN);
    let n = given.len().min(MAX_USER_ID_LEN);
    a[..n].copy_from_slice(&given[..n]);
    let m = value.len().min(MAX_USER_ID_LEN);
    b[..m].copy_from_slice(&value[..m]);
    let mut diff = too_long | ((given.len() ^ value.len()) as u8) | (((n ^ m) >> 8) as u8);
    for i in 0..MAX_USER_ID_LEN {
        diff |= a[i] ^ b[i];
    }
    std::hint::black_box(diff) == 0
}

impl VirtualApplet {
    pub(super) fn write_user_id(&mut self, tlvs: &Tlvs) -> Answer {
        let id = new_object_id(tlvs)?;
        let policy = policy_of(tlvs)?;
        let value = tlvs.require(TAG_2).map_err(|_| StatusWord::WRONG_DATA)?;
        if !(4..=16).contains(&value.len()) {
            return Err(StatusWord::WRONG_DATA);
        }
        let max_attempts = match tlvs.get(TAG_MAX_ATTEMPTS) {
            None => None,
            Some([n]) => Some(u16::from(*n)),
            Some([hi, lo]) => Some(u16::from_be_bytes([*hi, *lo])),
            Some(_) => return Err(StatusWord::WRONG_DATA),
        };
        let previous_max = match self.store.state().objects.get(&id).map(|o| &o.data) {
            Some(ObjectData::UserId { max_attempts, .. }) => Some(*max_attempts),
            Some(_) => return Err(StatusWord::CONDITIONS_NOT_SATISFIED),
            None => None,
        };
        let data = ObjectData::UserId {
            value: Zeroizing::new(value.to_vec()),
            // 0: no limit (the middleware sends no tag for it).
            max_attempts: max_attempts.or(previous_max).unwrap_or(0),
            failures: 0,
        };
        self.put_object(id, data, policy, POLICY_ALLOW_WRITE, ORIGIN_EXTERNAL)?;
        Ok(Reply::data(Vec::new()))
    }

    pub(super) fn create_session(&mut self, tlvs: &Tlvs) -> Answer {
        let auth_id = object_id(tlvs)?;
        match &self.object(auth_id)?.data {
            ObjectData::UserId {
                max_attempts,
                failures,
                ..
            } if *max_attempts != 0 && failures >= max_attempts => {
                return Err(StatusWord::AUTH_BLOCKED)
            }
            ObjectData::UserId { .. } => {}
            _ => return Err(StatusWord::CONDITIONS_NOT_SATISFIED),
        }
        if self.sessions.len() >= MAX_SESSIONS {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let mut session = [0u8; 8];
        OsRng.fill_bytes(&mut session);
        self.sessions.insert(
            session,
            SessionState {
                auth_id,
                verified: false,
            },
        );
        Ok(Reply::data(tag1(&session)))
    }

    /// ProcessSessionCmd: `10 08 <session id>`, `41 <inner command APDU>`.
    pub(super) fn process_session(&mut self, tlvs: &Tlvs) -> Answer {
        let session: [u8; 8] = tlvs
            .require_array(TAG_SESSION_ID)
            .map_err(|_| StatusWord::WRONG_DATA)?;
        let inner = tlvs.require(TAG_1).map_err(|_| StatusWord::WRONG_DATA)?;
        let inner = CommandApdu::parse(inner).map_err(|_| StatusWord::WRONG_DATA)?;
        let state = *self
            .sessions
            .get(&session)
            .ok_or(StatusWord::SECURITY_STATUS)?;
        if inner.cla != CLA_IOT {
            return Err(StatusWord::CLA_NOT_SUPPORTED);
        }
        match (inner.ins, inner.p1, inner.p2) {
            (INS_MGMT, P1_DEFAULT, P2_SESSION_USERID) => self.verify_user_id(session, &inner),
            (INS_MGMT, P1_DEFAULT, P2_SESSION_CLOSE) => {
                self.sessions.remove(&session);
                // Transient objects made in the session go with it.
                self.drop_transient(|created_in| created_in == Some(session));
                Ok(Reply::data(Vec::new()))
            }
            // No session inside a session.
            (INS_PROCESS, _, _) | (INS_MGMT, P1_DEFAULT, P2_SESSION_CREATE) => {
                Err(StatusWord::CONDITIONS_NOT_SATISFIED)
            }
            _ if !state.verified => Err(StatusWord::SECURITY_STATUS),
            _ => {
                self.auth = state.auth_id;
                self.session = Some(session);
                let answer = self.applet_command(&inner);
                self.auth = 0;
                self.session = None;
                answer
            }
        }
    }

    fn verify_user_id(&mut self, session: [u8; 8], inner: &CommandApdu) -> Answer {
        let tlvs = Tlvs::parse(&inner.data).map_err(|_| StatusWord::WRONG_DATA)?;
        let given = tlvs.require(TAG_1).map_err(|_| StatusWord::WRONG_DATA)?;
        let auth_id = self.sessions[&session].auth_id;
        let mut next = self.store.state().clone();
        let Some(ObjectData::UserId {
            value,
            max_attempts,
            failures,
        }) = next.objects.get_mut(&auth_id).map(|o| &mut o.data)
        else {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        };
        let limited = *max_attempts != 0;
        if limited && *failures >= *max_attempts {
            return Err(StatusWord::AUTH_BLOCKED);
        }
        // Fail closed: the attempt is counted, and the count saved, before the value is
        // compared; a chip that cannot save the count does not compare (else a read-only
        // state would give unlimited guesses).
        *failures = failures.saturating_add(1);
        let blocked = limited && *failures >= *max_attempts;
        let value = value.clone();
        self.commit(next.clone())?;
        if !same_value(given, &value) {
            return Err(if blocked {
                StatusWord::AUTH_BLOCKED
            } else {
                StatusWord::SECURITY_STATUS
            });
        }
        // The right value: the counter goes back to zero. Until that is saved the session stays
        // unverified and the attempt counted.
        if let Some(ObjectData::UserId { failures, .. }) =
            next.objects.get_mut(&auth_id).map(|o| &mut o.data)
        {
            *failures = 0;
        }
        self.commit(next)?;
        if let Some(state) = self.sessions.get_mut(&session) {
            state.verified = true;
        }
        Ok(Reply::data(Vec::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: u32 = 0x7000_0010;

    fn run(applet: &mut VirtualApplet, ins: u8, p1: u8, p2: u8, data: Vec<u8>) -> SecretBytes {
        let apdu = CommandApdu::new(CLA_IOT, ins, p1, p2, data, None).encode();
        applet.process(&apdu).response
    }

    fn sw(response: &[u8]) -> u16 {
        u16::from_be_bytes([response[response.len() - 2], response[response.len() - 1]])
    }

    /// VerifySessionUserID with `value`, wrapped in the session.
    fn verify(applet: &mut VirtualApplet, session: &[u8], value: &[u8]) -> u16 {
        let inner = CommandApdu::new(
            CLA_IOT,
            INS_MGMT,
            P1_DEFAULT,
            P2_SESSION_USERID,
            tag1(value),
            None,
        );
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_SESSION_ID, session);
        tlv::push(&mut data, TAG_1, &inner.encode());
        sw(&run(applet, INS_PROCESS, P1_DEFAULT, P2_DEFAULT, data))
    }

    fn failures(applet: &VirtualApplet) -> u16 {
        match &applet.state().objects[&USER].data {
            ObjectData::UserId { failures, .. } => *failures,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_guess_is_compared_while_the_failure_counter_cannot_be_saved() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("chip.state");
        let mut applet = VirtualApplet::open(&state, Duration::ZERO).unwrap();
        let select = select_bytes();
        assert_eq!(sw(&applet.process(&select).response), 0x9000);
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_MAX_ATTEMPTS, &3u16.to_be_bytes());
        tlv::push(&mut data, TAG_1, &USER.to_be_bytes());
        tlv::push(&mut data, TAG_2, b"1234");
        let write = run(
            &mut applet,
            INS_WRITE | INS_FLAG_AUTH_OBJECT,
            P1_USERID,
            P2_DEFAULT,
            data,
        );
        assert_eq!(sw(&write), 0x9000);
        let created = run(
            &mut applet,
            INS_MGMT,
            P1_DEFAULT,
            P2_SESSION_CREATE,
            tag1(&USER.to_be_bytes()),
        );
        assert_eq!(sw(&created), 0x9000);
        let session = created[2..10].to_vec();
        // The state can no longer be saved (a directory where the temporary file goes: even
        // root cannot write it).
        let temp = dir.path().join("chip.state.tmp");
        std::fs::create_dir(&temp).unwrap();
        std::fs::write(temp.join("keep"), b"").unwrap();
        for guess in [&b"0000"[..], b"1111", b"2222", b"3333", b"1234"] {
            assert_eq!(
                verify(&mut applet, &session, guess),
                0x6F00,
                "guess {guess:?} was compared although its attempt could not be counted"
            );
        }
        assert_eq!(failures(&applet), 0, "nothing was saved, nothing changed");
        std::fs::remove_dir_all(&temp).unwrap();
        assert_eq!(verify(&mut applet, &session, b"0000"), 0x6982);
        assert_eq!(failures(&applet), 1);
        assert_eq!(verify(&mut applet, &session, b"1234"), 0x9000);
        assert_eq!(failures(&applet), 0);
    }

    #[test]
    fn values_compare_equal_only_when_bytes_and_lengths_match() {
        assert!(same_value(b"1234", b"1234"));
        assert!(same_value(&[7; 16], &[7; 16]));
        assert!(!same_value(b"1234", b"1235"));
        assert!(!same_value(b"123", b"1234"));
        assert!(
            !same_value(b"1234", b"1234\0"),
            "zero padding is not the value"
        );
        assert!(!same_value(b"1234\0", b"1234"));
        assert!(!same_value(b"", b"1234"));
        let long = [7u8; 300];
        assert!(!same_value(&long, &[7; 16]), "a guess past 16 bytes");
        assert!(
            !same_value(&long[..256 + 16], &long[..16]),
            "lengths differing by 256"
        );
    }
}
