//! A cryptoki error as a log line names it: the function and the CK_RV, not cryptoki's
//! paragraph. Shared by the token key (`token.rs`) and the login (`login.rs`).

use cryptoki::error::Error as CkError;

/// cryptoki's Display of a CK_RV is a paragraph; a log line wants the name.
pub(crate) fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("{function:?} returned {rv:?}"),
        other => other.to_string(),
    }
}
