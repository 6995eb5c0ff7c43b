//! Sessions: handles, read-only or read-write, the login state they show, and searches.

use super::error::{answer, Result};
use pkcs11_sys::*;
use std::collections::HashMap;

/// An active C_FindObjects search: the matching handles, taken in order.
#[derive(Debug, Default)]
pub struct Search {
    pub handles: Vec<CK_OBJECT_HANDLE>,
    pub next: usize,
}

#[derive(Debug)]
pub struct Session {
    pub read_write: bool,
    pub search: Option<Search>,
    /// An active C_SignInit .. C_Sign/C_SignFinal (token/sign.rs).
    pub sign: Option<super::sign::SignOperation>,
}

#[derive(Debug)]
pub struct Sessions {
    open: HashMap<CK_SESSION_HANDLE, Session>,
    next_handle: CK_SESSION_HANDLE,
    /// Who is logged in to the token (login is per application, not per session).
    pub user: Option<CK_USER_TYPE>,
    /// The login is a chip session authenticated with a UserID (token/login.rs); false when the
    /// token has no PIN and login is bookkeeping only.
    pub chip_session: bool,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            open: HashMap::new(),
            next_handle: 1,
            user: None,
            chip_session: false,
        }
    }
}

impl Sessions {
    pub fn open(&mut self, read_write: bool) -> Result<CK_SESSION_HANDLE> {
        if !read_write && self.user == Some(CKU_SO) {
            return Err(answer(
                CKR_SESSION_READ_WRITE_SO_EXISTS,
                "SO is logged in: RO session refused",
            ));
        }
        let handle = self.next_handle;
        self.next_handle += 1;
        self.open.insert(
            handle,
            Session {
                read_write,
                search: None,
                sign: None,
            },
        );
        Ok(handle)
    }

    pub fn close(&mut self, handle: CK_SESSION_HANDLE) -> Result<()> {
        self.open
            .remove(&handle)
            .map(|_| ())
            .ok_or_else(|| invalid(handle))?;
        if self.open.is_empty() {
            // Closing the last session logs the user out (PKCS#11 5.6).
            self.user = None;
        }
        Ok(())
    }

    pub fn close_all(&mut self) {
        self.open.clear();
        self.user = None;
    }

    pub fn get(&self, handle: CK_SESSION_HANDLE) -> Result<&Session> {
        self.open.get(&handle).ok_or_else(|| invalid(handle))
    }

    pub fn get_mut(&mut self, handle: CK_SESSION_HANDLE) -> Result<&mut Session> {
        self.open.get_mut(&handle).ok_or_else(|| invalid(handle))
    }

    pub fn count(&self) -> (usize, usize) {
        let rw = self.open.values().filter(|s| s.read_write).count();
        (self.open.len(), rw)
    }

    pub fn has_read_only(&self) -> bool {
        self.open.values().any(|s| !s.read_write)
    }

    /// CKS_* state of a session.
    pub fn state(&self, handle: CK_SESSION_HANDLE) -> Result<CK_STATE> {
        let session = self.get(handle)?;
        Ok(match (self.user, session.read_write) {
            (Some(CKU_SO), _) => CKS_RW_SO_FUNCTIONS,
            (Some(_), true) => CKS_RW_USER_FUNCTIONS,
            (Some(_), false) => CKS_RO_USER_FUNCTIONS,
            (None, true) => CKS_RW_PUBLIC_SESSION,
            (None, false) => CKS_RO_PUBLIC_SESSION,
        })
    }
}

fn invalid(handle: CK_SESSION_HANDLE) -> super::error::Error {
    answer(
        CKR_SESSION_HANDLE_INVALID,
        format_args!("no session {handle}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_close_and_report_state() {
        let mut s = Sessions::default();
        let a = s.open(false).unwrap();
        let b = s.open(true).unwrap();
        assert_ne!(a, b);
        assert_eq!(s.count(), (2, 1));
        assert_eq!(s.state(a).unwrap(), CKS_RO_PUBLIC_SESSION);
        s.user = Some(CKU_USER);
        assert_eq!(s.state(b).unwrap(), CKS_RW_USER_FUNCTIONS);
        s.close(a).unwrap();
        assert_eq!(s.close(a).unwrap_err().rv(), CKR_SESSION_HANDLE_INVALID);
        s.close(b).unwrap();
        assert_eq!(s.user, None, "closing the last session logs out");
    }
}
