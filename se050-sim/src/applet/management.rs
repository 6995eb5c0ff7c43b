//! The virtual applet's management commands besides objects: GetFreeMemory, GetTimestamp and
//! DeleteAll (AN12413 section 4.12; encodings as NXP's middleware `Se05x_API_GetFreeMemory`,
//! `Se05x_API_GetTimeStamp`, `Se05x_API_DeleteAll`).
//!
//! Fidelity notes (choices where the public sources say no more):
//! - free memory is answered in 2 bytes, at most 0x7FFF, as the middleware's u16 reads it; the
//!   transient kinds report a fixed RAM size (this chip keeps no transient objects);
//! - the timestamp is 12 bytes: 4 zero bytes and the milliseconds since the Unix epoch (8 bytes,
//!   big-endian), so it never goes backwards within a run of the host;
//! - DeleteAll runs only in a session authenticated as the factory-reset credential
//!   ([`FACTORY_RESET_ID`]), else 6982; it deletes every object but the applet-reserved and
//!   NXP-provisioned ones (the credential itself, the unique id, the NXP certificate stay),
//!   and every curve made with CreateECCurve.

use super::*;

/// What the transient memory kinds report as free (bytes).
pub const TRANSIENT_FREE: u16 = 0x0800;

/// The chip's timestamp as GetTimestamp and the attested read answer it (12 bytes).
pub(super) fn timestamp_now() -> [u8; TIMESTAMP_LEN] {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut stamp = [0u8; TIMESTAMP_LEN];
    stamp[4..].copy_from_slice(&millis.to_be_bytes());
    stamp
}

impl VirtualApplet {
    pub(super) fn free_memory(&mut self, tlvs: &Tlvs) -> Answer {
        let kind = tlvs.require(TAG_1).map_err(|_| StatusWord::WRONG_DATA)?;
        let free = match kind {
            [MEMORY_PERSISTENT] => {
                let used = self.store.state().nvm_used();
                crate::store::NVM_CAPACITY.saturating_sub(used).min(0x7FFF) as u16
            }
            [MEMORY_TRANSIENT_RESET] | [MEMORY_TRANSIENT_DESELECT] => TRANSIENT_FREE,
            _ => return Err(StatusWord::WRONG_DATA),
        };
        Ok(Reply::data(tag1(&free.to_be_bytes())))
    }

    pub(super) fn timestamp(&mut self) -> Answer {
        let mut out = Vec::new();
        tlv::push(&mut out, TAG_1, &timestamp_now());
        Ok(Reply::data(out))
    }

    pub(super) fn delete_all(&mut self) -> Answer {
        if self.auth != FACTORY_RESET_ID {
            return Err(StatusWord::SECURITY_STATUS);
        }
        let mut next = self.store.state().clone();
        next.objects.retain(|&id, _| is_reserved(id));
        // "delete all curves" too (NXP `Se05x_API_DeleteAll`).
        next.curves.clear();
        self.commit(next)?;
        Ok(Reply::data(Vec::new()).counted(Counter::Deletes))
    }
}
