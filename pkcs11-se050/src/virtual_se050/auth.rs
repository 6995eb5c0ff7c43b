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

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn same_value(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        self.put_object(id, data, policy, POLICY_ALLOW_WRITE)?;
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
        let object = next
            .objects
            .get_mut(&auth_id)
            .ok_or(StatusWord::CONDITIONS_NOT_SATISFIED)?;
        let ObjectData::UserId {
            value,
            max_attempts,
            failures,
        } = &mut object.data
        else {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        };
        let limited = *max_attempts != 0;
        if limited && *failures >= *max_attempts {
            return Err(StatusWord::AUTH_BLOCKED);
        }
        if same_value(given, value) {
            let changed = *failures != 0;
            *failures = 0;
            if changed {
                self.commit(next)?;
            }
            if let Some(state) = self.sessions.get_mut(&session) {
                state.verified = true;
            }
            return Ok(Reply::data(Vec::new()));
        }
        *failures = failures.saturating_add(1);
        let blocked = limited && *failures >= *max_attempts;
        self.commit(next)?;
        Err(if blocked {
            StatusWord::AUTH_BLOCKED
        } else {
            StatusWord::SECURITY_STATUS
        })
    }
}
