//! Authentication objects and applet sessions (AN12413 section 4.5), host side.
//!
//! The wire encoding follows NXP's Plug & Trust middleware (`Se05x_API_WriteUserID`,
//! `Se05x_API_CreateSession`, `Se05x_API_VerifySessionUserID`, `Se05x_API_CloseSession`, and
//! the ProcessSessionCmd wrapper `ex_se05x_process_session_command` in NXPPlugNTrust/nano-package
//! `examples/se05x_mandate_scp03/src/ex_se05x_userId_APDU.c`):
//!
//! - WriteUserID: `80 41 07 00` (INS_WRITE | auth-object flag, P1_UserID) with
//!   `[11 policy] [12 max attempts (2 bytes)] 41 object id (4) 42 value (4..=16)`;
//! - CreateSession: `80 04 00 1B` with `41 auth object id` -> `41 session id (8)`;
//! - inside a session every command is sent as ProcessSessionCmd `80 05 00 00` with
//!   `10 08 <session id>` and `41 <the whole inner command APDU>`; the answer is the inner
//!   command's answer;
//! - VerifySessionUserID: inner `80 04 00 2C` with `41 value`; CloseSession: inner `80 04 00 1C`.
//!
//! The chip counts failed VerifySessionUserID attempts itself; at the maximum the UserID is
//! blocked. The blocked status word is not in the public middleware: 6983 (ISO 7816-4
//! "authentication method blocked") is used here and by the virtual chip, a wrong value 6982.

use super::*;

/// A UserID value: 4 to 16 bytes (AN12413).
pub const USER_ID_LEN: std::ops::RangeInclusive<usize> = 4..=16;

/// The ProcessSessionCmd APDU carrying `inner` in `session`.
/// The inner command may carry a PIN: its encoding and the outer data are built in buffers of
/// their exact size, wiped when dropped, and the outer command wipes its data in turn.
pub fn wrap(session: &[u8; 8], inner: &CommandApdu) -> CommandApdu {
    // The outer Le covers the inner one: a chip answers no more than Le asks (a certificate
    // read in 889-byte chunks inside a session needs the extended form).
    let le = inner.le.map_or(256, |le| le.max(256));
    let inner = inner.wire();
    let mut data = crate::wipe::with_capacity(10 + tlv::encoded_len(inner.len()));
    tlv::push(&mut data, TAG_SESSION_ID, session);
    tlv::push(&mut data, TAG_1, &inner);
    // The allocation moves into the command (no copy); the command wipes it when dropped.
    let data = std::mem::take(&mut *data);
    // The inner answer may be as long as any answer: ask for all of it.
    CommandApdu::new(CLA_IOT, INS_PROCESS, P1_DEFAULT, P2_DEFAULT, data, Some(le))
}

impl<T: ApduTransport> Se050<T> {
    /// Creates or overwrites the UserID (PIN) object at `id`. `max_attempts` 0 means no limit
    /// (no tag sent, as the middleware does); `policy` only applies when creating. Overwriting
    /// resets the chip's failure counter, which also unblocks it.
    pub fn write_user_id(
        &mut self,
        id: ObjectId,
        value: &[u8],
        max_attempts: u16,
        policy: &[PolicyEntry],
    ) -> Result<(), Se050Error> {
        // The factory-reset credential is the one reserved id a user creates.
        if id.value() != FACTORY_RESET_ID {
            id.check_user_writable()?;
        }
        if !USER_ID_LEN.contains(&value.len()) {
            return Err(Se050Error::InvalidArgument(format!(
                "a UserID value has 4 to 16 bytes, not {}",
                value.len()
            )));
        }
        let policy_bytes = policy::encode(policy);
        // Room for every TLV up front: a buffer that regrows leaves an unwiped copy of the PIN.
        let mut data = crate::wipe::with_capacity(
            tlv::encoded_len(policy_bytes.len())
                + tlv::encoded_len(2)
                + 6
                + tlv::encoded_len(value.len()),
        );
        if !policy.is_empty() {
            tlv::push(&mut data, TAG_POLICY, &policy_bytes);
        }
        if max_attempts != 0 {
            tlv::push(&mut data, TAG_MAX_ATTEMPTS, &max_attempts.to_be_bytes());
        }
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        tlv::push(&mut data, TAG_2, value);
        let name = || format!("WriteUserID {id}");
        self.exchange(
            &name,
            INS_WRITE | INS_FLAG_AUTH_OBJECT,
            P1_USERID,
            P2_DEFAULT,
            // The allocation moves into the command, which wipes it (no copy made).
            std::mem::take(&mut *data),
            None,
        )?;
        Ok(())
    }

    /// Opens an applet session for the authentication object `auth_id` (CreateSession); later
    /// commands go inside it until [`Se050::close_session`]. The session is not authenticated
    /// until [`Se050::verify_user_id`] succeeds.
    pub fn open_session(&mut self, auth_id: ObjectId) -> Result<(), Se050Error> {
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &auth_id.to_be_bytes());
        let name = || format!("CreateSession {auth_id}");
        // CreateSession is never sent inside another session.
        let apdu = CommandApdu::new(
            CLA_IOT,
            INS_MGMT,
            P1_DEFAULT,
            P2_SESSION_CREATE,
            data,
            Some(256),
        );
        let answer = transceive(&mut self.transport, &name, &apdu)?;
        let id: [u8; 8] = tag1(&name, &answer)?
            .try_into()
            .map_err(|_| bad(&name, "a session id has 8 bytes".into()))?;
        self.session = Some(id);
        Ok(())
    }

    /// VerifySessionUserID inside the open session: authenticates it with `value`. A wrong
    /// value is [`Refusal::SecurityStatus`] (the chip counted a failure), a blocked UserID
    /// [`Refusal::AuthBlocked`].
    pub fn verify_user_id(&mut self, value: &[u8]) -> Result<(), Se050Error> {
        if self.session.is_none() {
            return Err(Se050Error::InvalidArgument(
                "VerifySessionUserID needs an open session".into(),
            ));
        }
        let mut data = crate::wipe::with_capacity(tlv::encoded_len(value.len()));
        tlv::push(&mut data, TAG_1, value);
        let name = || "VerifySessionUserID".to_string();
        self.exchange(
            &name,
            INS_MGMT,
            P1_DEFAULT,
            P2_SESSION_USERID,
            std::mem::take(&mut *data),
            None,
        )?;
        Ok(())
    }

    /// Closes the open session (CloseSession, inside it); later commands go outside any session.
    /// The session is forgotten here even if the chip's answer is lost.
    pub fn close_session(&mut self) -> Result<(), Se050Error> {
        if self.session.is_none() {
            return Ok(());
        }
        let name = || "CloseSession".to_string();
        let result = self.exchange(
            &name,
            INS_MGMT,
            P1_DEFAULT,
            P2_SESSION_CLOSE,
            Vec::new(),
            None,
        );
        self.session = None;
        result.map(|_| ())
    }

    /// The open session's id, if any.
    pub fn session(&self) -> Option<[u8; 8]> {
        self.session
    }

    /// Sets the open session aside without closing it (the chip keeps it): later commands go
    /// outside any session, or in another one, until [`Se050::resume_session`].
    pub fn set_session_aside(&mut self) -> Option<[u8; 8]> {
        self.session.take()
    }

    /// Goes back to a session set aside; the one open now, if any, must have been closed.
    pub fn resume_session(&mut self, session: [u8; 8]) {
        self.session = Some(session);
    }

    /// Forgets the session without telling the chip (it was reset: its sessions are gone).
    pub fn forget_session(&mut self) {
        self.session = None;
    }
}

impl<T: ApduTransport> Se050<T> {
    /// GetFreeMemory: free bytes of `kind` (MEMORY_PERSISTENT, _TRANSIENT_RESET, _DESELECT).
    pub fn free_memory(&mut self, kind: u8) -> Result<u16, Se050Error> {
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &[kind]);
        let name = || format!("GetFreeMemory {kind:#04x}");
        let answer = self.exchange(&name, INS_MGMT, P1_DEFAULT, P2_MEMORY, data, Some(256))?;
        let value: [u8; 2] = tag1(&name, &answer)?
            .try_into()
            .map_err(|_| bad(&name, "free memory has 2 bytes".into()))?;
        Ok(u16::from_be_bytes(value))
    }

    /// GetTimestamp: the chip's 12-byte timestamp.
    pub fn timestamp(&mut self) -> Result<[u8; TIMESTAMP_LEN], Se050Error> {
        let name = || "GetTimestamp".to_string();
        let answer = self.exchange(&name, INS_MGMT, P1_DEFAULT, P2_TIME, Vec::new(), Some(256))?;
        tag1(&name, &answer)?
            .try_into()
            .map_err(|_| bad(&name, format!("a timestamp has {TIMESTAMP_LEN} bytes")))
    }

    /// DeleteAll: deletes every object but the reserved ones. The chip runs it only in a
    /// session authenticated as the factory-reset credential (FACTORY_RESET_ID).
    pub fn delete_all(&mut self) -> Result<(), Se050Error> {
        let name = || "DeleteAll".to_string();
        self.exchange(&name, INS_MGMT, P1_DEFAULT, P2_DELETE_ALL, Vec::new(), None)?;
        Ok(())
    }
}
