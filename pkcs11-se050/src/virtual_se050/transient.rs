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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apdu::Refusal;
    use crate::applet::{ObjectId, Se050};

    type Chip = Se050<InProcessTransport<VirtualApplet>>;

    const TRANSIENT_KEY: u32 = 0x2000_0001;
    const USER: u32 = 0x7000_0010;

    fn generate_transient(chip: &mut Chip, id: u32) -> u16 {
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        tlv::push(&mut data, TAG_2, &[CURVE_X25519]);
        let apdu = CommandApdu::new(
            CLA_IOT,
            INS_WRITE | INS_FLAG_TRANSIENT,
            P1_KEY_PAIR | P1_EC,
            P2_DEFAULT,
            data,
            None,
        );
        let apdu = match chip.session() {
            Some(session) => crate::applet::session::wrap(&session, &apdu),
            None => apdu,
        };
        let answer = chip.transport_mut().transceive(&apdu.encode()).unwrap();
        u16::from_be_bytes([answer[answer.len() - 2], answer[answer.len() - 1]])
    }

    fn id(value: u32) -> ObjectId {
        ObjectId::new(value).unwrap()
    }

    #[test]
    fn a_transient_key_works_stays_out_of_the_state_file_and_is_lost_at_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("chip.state");
        let open = || {
            Se050::select(InProcessTransport::new(
                VirtualApplet::open(&state, Duration::ZERO).unwrap(),
            ))
            .unwrap()
        };
        let mut chip = open();
        assert_eq!(generate_transient(&mut chip, TRANSIENT_KEY), 0x9000);
        assert!(chip.exists(id(TRANSIENT_KEY)).unwrap());
        assert!(chip.list_ids().unwrap().contains(&id(TRANSIENT_KEY)));
        assert_eq!(
            chip.read_type(id(TRANSIENT_KEY)).unwrap(),
            (ObjectType::EcKeyPair, Persistence::Transient)
        );
        let public = chip.read_x25519_public(id(TRANSIENT_KEY)).unwrap();
        let peer = StaticSecret::random_from_rng(OsRng);
        let shared = chip
            .ecdh_x25519(id(TRANSIENT_KEY), PublicKey::from(&peer).as_bytes())
            .unwrap();
        assert_eq!(
            *shared,
            peer.diffie_hellman(&PublicKey::from(public)).to_bytes()
        );
        // A persistent write by this process keeps it, in RAM only: the file never has it.
        chip.generate_x25519(id(0x2000_0002)).unwrap();
        assert!(chip.exists(id(TRANSIENT_KEY)).unwrap());
        let mut other = open();
        assert!(!other.exists(id(TRANSIENT_KEY)).unwrap());
        assert!(other.exists(id(0x2000_0002)).unwrap());
        // Another process's write reloads the file here: the transient object stays.
        other.generate_x25519(id(0x2000_0003)).unwrap();
        assert!(chip.exists(id(TRANSIENT_KEY)).unwrap());
        // A persistent object is not made transient.
        assert_eq!(generate_transient(&mut chip, 0x2000_0002), 0x6985);
        // A reset loses it.
        chip.transport_mut().handler.reset();
        chip.transport_mut()
            .transceive(&select_command().encode())
            .unwrap();
        assert!(!chip.exists(id(TRANSIENT_KEY)).unwrap());
        assert!(chip.exists(id(0x2000_0002)).unwrap());
    }

    #[test]
    fn a_transient_object_made_in_a_session_goes_with_the_session() {
        let mut chip = Se050::select(InProcessTransport::new(VirtualApplet::in_memory())).unwrap();
        chip.write_user_id(id(USER), b"1234", 3, &[]).unwrap();
        assert_eq!(
            generate_transient(&mut chip, 0x2000_0009),
            0x9000,
            "outside"
        );
        chip.open_session(id(USER)).unwrap();
        chip.verify_user_id(b"1234").unwrap();
        assert_eq!(generate_transient(&mut chip, TRANSIENT_KEY), 0x9000);
        assert_eq!(
            chip.read_type(id(TRANSIENT_KEY)).unwrap().1,
            Persistence::Transient
        );
        chip.close_session().unwrap();
        assert!(
            !chip.exists(id(TRANSIENT_KEY)).unwrap(),
            "gone with its session"
        );
        assert!(chip.exists(id(0x2000_0009)).unwrap(), "made outside: stays");
        let refused = chip.read_type(id(TRANSIENT_KEY)).unwrap_err();
        assert_eq!(refused.refusal(), Some(Refusal::WrongData));
    }
}
