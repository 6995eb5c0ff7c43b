//! Transient objects: a write with the instruction flag 0x80 (`INS_WRITE | INS_TRANSIENT`,
//! AN12413; NXP middleware `kSE05x_INS_TRANSIENT`) creates an object that lives in the chip's
//! RAM: ReadType answers it transient (02), it never reaches persistent memory, and it is lost
//! at a chip reset, and, when it was created inside an applet session, when that session is
//! closed.
//!
//! Fidelity notes: AN12413 describes transient objects as kept in transient memory and gone at a
//! reset / deselect; that one made in a session goes with the session is the behaviour this
//! project's brief states and is modelled here. NXP does not publish the answer to a transient
//! write on an existing persistent object: 6985 here (a persistent object is not turned into a
//! transient one). Later writes to an existing transient object (a binary file's next chunk)
//! keep it transient. Transient authentication objects are not supported (6D00, as before). The
//! virtual chip's RAM is per process (see `auth.rs`): another process does not see them.

use super::*;

impl VirtualApplet {
    /// A write carrying the transient flag.
    pub(super) fn write_transient(&mut self, apdu: &CommandApdu) -> Answer {
        let tlvs = Tlvs::parse(&apdu.data).map_err(|_| StatusWord::WRONG_DATA)?;
        let id = new_object_id(&tlvs)?;
        let exists = self.store.state().objects.contains_key(&id);
        if exists && !self.store.is_volatile(id) {
            return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
        }
        let mut plain = apdu.clone();
        plain.ins = INS_WRITE;
        self.creating_transient = !exists;
        let answer = self.applet_command(&plain);
        self.creating_transient = false;
        if answer.is_ok() && !exists && self.store.is_volatile(id) {
            self.transient.insert(id, self.session);
        }
        answer
    }

    /// Drops the transient objects whose creating session `lost` says is gone.
    pub(super) fn drop_transient(&mut self, lost: impl Fn(Option<[u8; 8]>) -> bool) {
        let gone: Vec<u32> = self
            .transient
            .iter()
            .filter(|(_, session)| lost(**session))
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            self.transient.remove(id);
        }
        self.store.drop_volatile(&gone);
    }
}
