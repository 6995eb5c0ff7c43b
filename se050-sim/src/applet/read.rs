//! The virtual applet's plain reads: ReadObject (with offset and length), ReadSize, ReadIDList
//! (pages of [`LIST_PAGE`] ids, filtered by type) and ReadType. The attested read is in
//! `attest.rs`, ReadAttributes in `attributes.rs`, the curve reads in `curves.rs`.

use super::*;

impl VirtualApplet {
    pub(super) fn read_object(&mut self, tlvs: &Tlvs) -> Answer {
        let id = object_id(tlvs)?;
        let offset = optional_u16(tlvs, TAG_2)?;
        let length = optional_u16(tlvs, TAG_3)?;
        let object = self.object(id)?;
        if !allows(self.auth, object, POLICY_ALLOW_READ) {
            return Err(StatusWord::NOT_ALLOWED_BY_POLICY);
        }
        let contents =
            attest::readable_contents(object).ok_or(StatusWord::CONDITIONS_NOT_SATISFIED)?;
        let start = offset.unwrap_or(0);
        let end = match length {
            Some(length) => start + length,
            None => contents.len(),
        };
        if start > contents.len() || end > contents.len() || (length == Some(0)) {
            return Err(StatusWord::WRONG_DATA);
        }
        Ok(Reply::data(tag1(&contents[start..end])).counted(Counter::Reads))
    }

    pub(super) fn read_size(&mut self, tlvs: &Tlvs) -> Answer {
        let object = self.object(object_id(tlvs)?)?;
        Ok(Reply::data(tag1(&size_of(&object.data).to_be_bytes())))
    }

    pub(super) fn read_id_list(&mut self, tlvs: &Tlvs) -> Answer {
        let offset = tlvs
            .require_u16(TAG_1)
            .map_err(|_| StatusWord::WRONG_DATA)? as usize;
        let [filter] = tlvs
            .require_array::<1>(TAG_2)
            .map_err(|_| StatusWord::WRONG_DATA)?;
        let matching: Vec<u32> = self
            .store
            .state()
            .objects
            .iter()
            .filter(|(_, o)| filter == TYPE_FILTER_ALL || object_type(o) == filter)
            .map(|(id, _)| *id)
            .collect();
        let page: Vec<u8> = matching
            .iter()
            .skip(offset)
            .take(LIST_PAGE)
            .flat_map(|id| id.to_be_bytes())
            .collect();
        let more = offset + LIST_PAGE < matching.len();
        let mut data = Vec::new();
        tlv::push(
            &mut data,
            TAG_1,
            &[if more {
                MORE_INDICATOR_MORE
            } else {
                MORE_INDICATOR_DONE
            }],
        );
        tlv::push(&mut data, TAG_2, &page);
        Ok(Reply::data(data))
    }

    pub(super) fn read_type(&mut self, tlvs: &Tlvs) -> Answer {
        let id = object_id(tlvs)?;
        let object = self.object(id)?;
        let persistence = if self.store.is_volatile(id) {
            TRANSIENT
        } else {
            PERSISTENT
        };
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &[object_type(object)]);
        tlv::push(&mut data, TAG_2, &[persistence]);
        Ok(Reply::data(data))
    }
}
