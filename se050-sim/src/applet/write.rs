//! The virtual applet's writes: WriteECKey (X25519 here; P-256 and Ed25519 in `ec.rs`),
//! WriteSymmKey (AES), WriteBinary, and the object creation they share (policy, origin, creator).

use super::*;

impl VirtualApplet {
    pub(super) fn write_ec_key(&mut self, p1: u8, tlvs: &Tlvs) -> Answer {
        let id = new_object_id(tlvs)?;
        match tlvs.require(TAG_2).map_err(|_| StatusWord::WRONG_DATA)? {
            [CURVE_X25519] => {}
            [CURVE_NIST_P256] | [CURVE_ED25519] => return self.write_ec_key_signing(p1, id, tlvs),
            _ => return Err(StatusWord::WRONG_DATA),
        }
        let policy = policy_of(tlvs)?;
        let private = tlvs.get(TAG_3);
        let (data, counter, busy) = match (p1 & !P1_EC, private) {
            (P1_KEY_PAIR, None) => {
                let secret = StaticSecret::random_from_rng(OsRng);
                let (private, public) = chip_order_pair(&secret);
                (
                    ObjectData::X25519Pair { private, public },
                    Counter::Keygen,
                    self.latency,
                )
            }
            (P1_KEY_PAIR, Some(private)) => {
                let secret = StaticSecret::from(*rfc_order(private)?);
                let (private, public) = chip_order_pair(&secret);
                if tlvs.get(TAG_4).is_some_and(|given| given != public) {
                    return Err(StatusWord::WRONG_DATA);
                }
                (
                    ObjectData::X25519Pair { private, public },
                    Counter::Writes,
                    Duration::ZERO,
                )
            }
            (P1_PRIVATE, Some(private)) => {
                let private: [u8; 32] = private.try_into().map_err(|_| StatusWord::WRONG_DATA)?;
                let private = Zeroizing::new(private);
                (
                    ObjectData::X25519Private { private },
                    Counter::Writes,
                    Duration::ZERO,
                )
            }
            (P1_PRIVATE, None) => return Err(StatusWord::WRONG_DATA),
            _ => return Err(StatusWord::WRONG_P1P2),
        };
        let needed = if counter == Counter::Keygen {
            POLICY_ALLOW_GEN
        } else {
            POLICY_ALLOW_WRITE
        };
        let origin = if counter == Counter::Keygen {
            ORIGIN_INTERNAL
        } else {
            ORIGIN_EXTERNAL
        };
        self.put_object(id, data, policy, needed, origin)?;
        Ok(Reply {
            data: SecretBytes::default(),
            counter: Some(counter),
            busy,
        })
    }

    pub(super) fn write_aes_key(&mut self, tlvs: &Tlvs) -> Answer {
        let id = new_object_id(tlvs)?;
        let policy = policy_of(tlvs)?;
        let key = tlvs.require(TAG_3).map_err(|_| StatusWord::WRONG_DATA)?;
        if !matches!(key.len(), 16 | 24 | 32) {
            return Err(StatusWord::WRONG_DATA);
        }
        let data = ObjectData::AesKey {
            key: Zeroizing::new(key.to_vec()),
        };
        self.put_object(id, data, policy, POLICY_ALLOW_WRITE, ORIGIN_EXTERNAL)?;
        Ok(Reply::data(Vec::new()).counted(Counter::Writes))
    }

    /// Creates the object, or replaces the contents of an existing one of the same kind
    /// (policies are set at creation only; `needed` is the access the old policy must grant).
    /// `origin` is where the new contents come from; the creator is the session's
    /// authentication object (0 outside a session), recorded at creation.
    pub(super) fn put_object(
        &mut self,
        id: u32,
        data: ObjectData,
        policy: Option<Vec<u8>>,
        needed: u32,
        origin: u8,
    ) -> Result<(), StatusWord> {
        let mut next = self.store.state().clone();
        match next.objects.get_mut(&id) {
            Some(existing) => {
                if std::mem::discriminant(&existing.data) != std::mem::discriminant(&data)
                    || policy.is_some()
                {
                    return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
                }
                if !allows(self.auth, existing, needed) {
                    return Err(StatusWord::NOT_ALLOWED_BY_POLICY);
                }
                existing.data = data;
                existing.origin = origin;
            }
            None => {
                let policy_len = policy.as_ref().map_or(0, Vec::len);
                if !next.has_room_for(data.size(), policy_len) {
                    return Err(StatusWord::MEMORY_FULL);
                }
                let object = SecureObject {
                    data,
                    policy,
                    origin,
                    creator: self.auth,
                };
                next.objects.insert(id, object);
            }
        }
        self.commit(next)
    }

    pub(super) fn write_binary(&mut self, tlvs: &Tlvs) -> Answer {
        let id = new_object_id(tlvs)?;
        let policy = policy_of(tlvs)?;
        let offset = match tlvs.get(TAG_2) {
            Some(_) => tlvs
                .require_u16(TAG_2)
                .map_err(|_| StatusWord::WRONG_DATA)? as usize,
            None => 0,
        };
        let length = match tlvs.get(TAG_3) {
            Some(_) => Some(
                tlvs.require_u16(TAG_3)
                    .map_err(|_| StatusWord::WRONG_DATA)? as usize,
            ),
            None => None,
        };
        let chunk = tlvs.get(TAG_4).unwrap_or(&[]);
        let mut next = self.store.state().clone();
        match next.objects.get_mut(&id) {
            Some(existing) => {
                if !allows(self.auth, existing, POLICY_ALLOW_WRITE) {
                    return Err(StatusWord::NOT_ALLOWED_BY_POLICY);
                }
                let ObjectData::BinaryFile { data } = &mut existing.data else {
                    return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
                };
                // The size of a file is fixed when it is created.
                if length.is_some() || policy.is_some() {
                    return Err(StatusWord::CONDITIONS_NOT_SATISFIED);
                }
                if offset + chunk.len() > data.len() {
                    return Err(StatusWord::WRONG_DATA);
                }
                data[offset..offset + chunk.len()].copy_from_slice(chunk);
            }
            None => {
                let length = length.ok_or(StatusWord::WRONG_DATA)?;
                if length == 0 || length > 0x7FFF || offset + chunk.len() > length {
                    return Err(StatusWord::WRONG_DATA);
                }
                let policy_len = policy.as_ref().map_or(0, Vec::len);
                if !next.has_room_for(length, policy_len) {
                    return Err(StatusWord::MEMORY_FULL);
                }
                let mut data = vec![0u8; length];
                data[offset..offset + chunk.len()].copy_from_slice(chunk);
                next.objects.insert(
                    id,
                    SecureObject {
                        data: ObjectData::BinaryFile { data },
                        policy,
                        origin: ORIGIN_EXTERNAL,
                        creator: self.auth,
                    },
                );
            }
        }
        self.commit(next)?;
        Ok(Reply::data(Vec::new()).counted(Counter::Writes))
    }
}
