//! What the module benchmarks (derive-rate, sign-rate) share: a session on the module's token,
//! a named key pair found or made once, and counting operations in turns with a bare baseline.

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use std::time::{Duration, Instant};

/// Turns each side takes. The machine is shared and noisy: the module and the bare baseline
/// take turns in short slices, so a change of load hits both alike.
pub const SLICES: u32 = 10;

/// A read-write session on the first slot with a token of the module at `module`, logged in as
/// the user when `pin` is not empty.
pub fn open_session(module: &str, pin: &str) -> Result<Session, String> {
    let pkcs11 = Pkcs11::new(module).map_err(|e| format!("load {module}: {e}"))?;
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| format!("C_Initialize: {e}"))?;
    let slot = *pkcs11
        .get_slots_with_token()
        .map_err(|e| format!("C_GetSlotList: {e}"))?
        .first()
        .ok_or("the module shows no slot with a token")?;
    let session = pkcs11
        .open_rw_session(slot)
        .map_err(|e| format!("C_OpenSession: {e}"))?;
    if !pin.is_empty() {
        session
            .login(UserType::User, Some(&AuthPin::new(pin.into())))
            .map_err(|e| format!("C_Login: {e}"))?;
    }
    Ok(session)
}

/// The private key labelled `label`, or a new token pair made with `mechanism`: both halves
/// get CKA_TOKEN and the label besides the attributes given for each.
pub fn find_or_generate(
    session: &Session,
    label: &str,
    mechanism: Mechanism,
    public: &[Attribute],
    private: &[Attribute],
) -> Result<ObjectHandle, String> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(|e| format!("C_FindObjects: {e}"))?;
    if let Some(&key) = found.first() {
        return Ok(key);
    }
    let template = |half: &[Attribute]| {
        let mut template = vec![Attribute::Token(true)];
        template.extend_from_slice(half);
        template.push(Attribute::Label(label.as_bytes().to_vec()));
        template
    };
    let (_public, private) = session
        .generate_key_pair(&mechanism, &template(public), &template(private))
        .map_err(|e| format!("C_GenerateKeyPair: {e}"))?;
    Ok(private)
}

/// How many times `operation` ran in `duration`.
pub fn count_for(
    duration: Duration,
    mut operation: impl FnMut() -> Result<(), String>,
) -> Result<u64, String> {
    let end = Instant::now() + duration;
    let mut count = 0u64;
    while Instant::now() < end {
        operation()?;
        count += 1;
    }
    Ok(count)
}
