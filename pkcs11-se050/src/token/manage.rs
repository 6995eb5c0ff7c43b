//! Object management: search, attribute reads and writes, destruction.

use super::attributes::{attr_name, matches, AttrValue, Template};
use super::certificate_file::is_cert_handle;
use super::chip::ChipErrorKind;
use super::ec::{decode_point, encode_point};
use super::error::{answer, refuse, Result};
use super::handles::{split_handle, Half};
use super::metadata::KeyMetadata;
use super::objects::{KeyPair, ObjectCache};
use super::session::Search;
use super::Token;
use pkcs11_sys::*;

impl Token {
    /// C_FindObjectsInit: the chip is re-read here (another process may have changed it), so
    /// that later calls on the found handles need no chip round trip.
    pub fn find_init(&self, session: CK_SESSION_HANDLE, template: &Template) -> Result<()> {
        // The chip is read without holding the session table, so that other threads'
        // derives are not held up by a search; the session is checked again afterwards.
        self.check_no_search(session)?;
        let template = &self.normalise_search(template);
        let mut handles = Vec::new();
        {
            let mut cache = self.cache.lock();
            self.refresh_for_search(&mut cache)?;
            let format = self.config.ec_point;
            let mut found = Vec::new();
            for pair in cache.pairs.values() {
                for half in [Half::Private, Half::Public] {
                    if pair.has(half) && matches(template, |t| pair.attribute(half, t, format)) {
                        found.push((pair.key_id, half));
                    }
                }
            }
            handles.extend(
                found
                    .into_iter()
                    .filter_map(|(key_id, half)| cache.handle(key_id, half)),
            );
            handles.extend(
                cache
                    .certs
                    .values()
                    .filter(|c| matches(template, |t| c.attribute(t)))
                    .filter_map(|c| c.handle()),
            );
        }
        {
            let secrets = self.secrets.lock();
            let mut own: Vec<_> = secrets
                .objects
                .iter()
                .filter(|(_, k)| matches(template, |t| k.attribute(t)))
                .map(|(h, _)| *h)
                .collect();
            own.sort_unstable();
            handles.extend(own);
        }
        let mut sessions = self.sessions.lock();
        let state = sessions.get_mut(session)?;
        if state.search.is_some() {
            return Err(search_active());
        }
        state.search = Some(Search { handles, next: 0 });
        Ok(())
    }

    /// A CKA_EC_POINT to search for may come raw or DER-wrapped whatever the configured
    /// output form: compare in that form.
    fn normalise_search(&self, template: &Template) -> Template {
        let mut t = template.clone();
        for (ty, value) in &mut t.entries {
            if *ty == CKA_EC_POINT {
                if let Some(point) = decode_point(value) {
                    *value = encode_point(&point, self.config.ec_point);
                }
            }
        }
        t
    }

    fn check_no_search(&self, session: CK_SESSION_HANDLE) -> Result<()> {
        match self.sessions.lock().get(session)?.search {
            Some(_) => Err(search_active()),
            None => Ok(()),
        }
    }

    pub fn find_next(
        &self,
        session: CK_SESSION_HANDLE,
        max: usize,
    ) -> Result<Vec<CK_OBJECT_HANDLE>> {
        let mut sessions = self.sessions.lock();
        let search = sessions.get_mut(session)?.search.as_mut().ok_or_else(|| {
            answer(
                CKR_OPERATION_NOT_INITIALIZED,
                "C_FindObjects without C_FindObjectsInit",
            )
        })?;
        let end = (search.next + max).min(search.handles.len());
        let found = search.handles[search.next..end].to_vec();
        search.next = end;
        Ok(found)
    }

    pub fn find_final(&self, session: CK_SESSION_HANDLE) -> Result<()> {
        let mut sessions = self.sessions.lock();
        match sessions.get_mut(session)?.search.take() {
            Some(_) => Ok(()),
            None => Err(answer(
                CKR_OPERATION_NOT_INITIALIZED,
                "C_FindObjectsFinal without a search",
            )),
        }
    }

    /// One answer per requested type, in order (C_GetAttributeValue reports each one).
    pub fn attributes(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<AttrValue>> {
        self.check_session(session, false)?;
        if is_cert_handle(object) {
            let cert = self.certificate(object)?;
            return Ok(types.iter().map(|&t| cert.attribute(t)).collect());
        }
        if split_handle(object).is_some() {
            let cache = self.loaded_cache()?;
            let (pair, half) = cache.resolve(object).ok_or_else(|| no_object(object))?;
            let format = self.config.ec_point;
            return Ok(types
                .iter()
                .map(|&t| pair.attribute(half, t, format))
                .collect());
        }
        let secrets = self.secrets.lock();
        let key = secrets
            .objects
            .get(&object)
            .ok_or_else(|| no_object(object))?;
        Ok(types.iter().map(|&t| key.attribute(t)).collect())
    }

    /// C_CopyObject: every object here has CKA_COPYABLE false, so a copy of one that exists
    /// is CKR_ACTION_PROHIBITED (PKCS#11 3.0, 4.4); an unknown handle stays invalid.
    pub fn copy_object(&self, session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> Result<()> {
        match self.attributes(session, object, &[CKA_COPYABLE])?.first() {
            Some(AttrValue::Value(v)) if v.as_slice() == [CK_TRUE] => Err(answer(
                CKR_FUNCTION_NOT_SUPPORTED,
                format_args!("copying object {object:#x}"),
            )),
            _ => Err(refuse(
                CKR_ACTION_PROHIBITED,
                format_args!("object {object:#x} is not copyable (CKA_COPYABLE is false)"),
            )),
        }
    }

    /// C_SetAttributeValue: CKA_LABEL and CKA_ID of a key pair, written to its record on the
    /// chip (both halves share them). Nothing else of a chip key can change.
    pub fn set_attributes(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
        template: &Template,
    ) -> Result<()> {
        if is_cert_handle(object) {
            self.check_session(session, true)?;
            self.certificate(object)?;
            let first = template.entries.first().map_or(CKA_VALUE, |(t, _)| *t);
            return Err(super::certificate::read_only(first));
        }
        if split_handle(object).is_none() {
            self.check_session(session, false)?;
            return match self.secrets.lock().objects.contains_key(&object) {
                true => Err(refuse(
                    CKR_ACTION_PROHIBITED,
                    "derived secrets are not modifiable",
                )),
                false => Err(no_object(object)),
            };
        }
        let (mut cache, pair) = self.pair_to_change(session, object)?;
        let key_id = pair.key_id;
        let mut label = pair.label.clone();
        let mut id = pair.id.clone();
        for (t, value) in &template.entries {
            match *t {
                CKA_LABEL => label = value.clone(),
                CKA_ID => id = value.clone(),
                other => {
                    return Err(refuse(
                        CKR_ATTRIBUTE_READ_ONLY,
                        format_args!(
                            "{} of a chip key cannot be changed; only CKA_LABEL and CKA_ID",
                            attr_name(other)
                        ),
                    ))
                }
            }
        }
        if label == pair.label && id == pair.id {
            return Ok(());
        }
        KeyMetadata::new(key_id, pair.generated, label.clone(), id.clone())?;
        let mut updated = pair.clone();
        updated.label = label;
        updated.id = id;
        let (file, v2) = match pair.meta_file {
            // Rewritten in place, in the version it has (a file keeps its length).
            Some(file) => (file, pair.meta_v2),
            None => (cache.free_record_file(key_id)?, true),
        };
        let mut record = updated.record();
        if !v2 {
            record.public = None;
        }
        {
            // Sent once (the retry rule, applet/resend.rs): whatever the answer, it is the
            // caller's; a 6982 in the login's session is no reason to write again outside it.
            let policy = super::pin::record_policy_now(&cache);
            let mut link = self.link.lock();
            let chip = link
                .chip(&self.config)
                .map_err(|e| e.to_ckr("opening the chip"))?;
            chip.write_binary(file, &record.encode(), &policy)
                .map_err(|e| e.to_ckr("writing a key's label and id"))?;
        }
        updated.meta_file = Some(file);
        updated.meta_v2 = v2;
        cache.insert_pair(updated);
        Ok(())
    }

    /// The cache and (a copy of) the pair `object` names, for a change that needs a
    /// read/write session.
    fn pair_to_change(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> Result<(parking_lot::MutexGuard<'_, ObjectCache>, KeyPair)> {
        self.half_to_change(session, object)
            .map(|(cache, pair, _)| (cache, pair))
    }

    fn half_to_change(
        &self,
        session: CK_SESSION_HANDLE,
        object: CK_OBJECT_HANDLE,
    ) -> Result<(parking_lot::MutexGuard<'_, ObjectCache>, KeyPair, Half)> {
        self.check_session(session, true)?;
        // Changing or destroying keys is the user's once a user PIN exists (PKCS#11: private
        // objects need a login; the chip's policy refuses a foreign delete anyway).
        self.require_user_for_keys()?;
        let cache = self.loaded_cache()?;
        let (pair, half) = cache
            .resolve(object)
            .map(|(pair, half)| (pair.clone(), half))
            .ok_or_else(|| no_object(object))?;
        Ok((cache, pair, half))
    }

    /// C_DestroyObject: a derived secret is dropped (and wiped). Each half of a key pair is its
    /// own object: destroying the private half deletes the pair from the chip and keeps the
    /// public key in the pair's metadata record while the public half lives on; destroying the
    /// public half only marks it destroyed in that record. When both are gone, so is the record.
    pub fn destroy(&self, session: CK_SESSION_HANDLE, object: CK_OBJECT_HANDLE) -> Result<()> {
        if is_cert_handle(object) {
            return self.destroy_certificate(session, object);
        }
        if split_handle(object).is_none() {
            self.check_session(session, false)?;
            return match self.secrets.lock().objects.remove(&object) {
                Some(_) => Ok(()),
                None => Err(no_object(object)),
            };
        }
        let (mut cache, pair, half) = self.half_to_change(session, object)?;
        let key_id = pair.key_id;
        let mut link = self.link.lock();
        let chip = link
            .chip(&self.config)
            .map_err(|e| e.to_ckr("opening the chip"))?;
        let other_half_lives = match half {
            Half::Private => pair.has_public,
            Half::Public => pair.has_private,
        };
        if half == Half::Private {
            match chip.delete(key_id) {
                Ok(()) => {}
                Err(e) if e.kind == ChipErrorKind::NotFound => {}
                Err(e) => return Err(e.to_ckr(&format!("deleting key {key_id:#010x}"))),
            }
            log::info!("deleted X25519 key pair {key_id:#010x} (its private half destroyed)");
        }
        if other_half_lives && half == Half::Private && pair.ec.is_some() {
            // A P-256 or Ed25519 public key has no record of its own on the chip (ec_keys.rs):
            // it lives on in this process until destroyed; the chip keeps nothing.
            return super::ec_keys::keep_public_only(&mut cache, chip, pair);
        }
        if other_half_lives {
            // Keep the other half: its data goes into a version 2 record (with the public key).
            let mut kept = pair.clone();
            match half {
                Half::Private => kept.has_private = false,
                Half::Public => kept.has_public = false,
            }
            let record = kept.record().encode();
            let file = match (pair.meta_file, pair.meta_v2) {
                (Some(file), true) => file,
                (old, _) => {
                    // A version 1 file has another length: replace it by a new one.
                    if let Some(old) = old {
                        match chip.delete(old) {
                            Ok(()) => cache.forget(old),
                            Err(e) if e.kind == ChipErrorKind::NotFound => cache.forget(old),
                            Err(e) => return Err(e.to_ckr("replacing a key's metadata record")),
                        }
                    }
                    cache.remove_pair(key_id);
                    cache.free_record_file(key_id)?
                }
            };
            let policy = super::pin::record_policy_now(&cache);
            let written = chip.write_binary(file, &record, &policy);
            kept.meta_file = Some(file);
            kept.meta_v2 = true;
            cache.insert_pair(kept);
            written.map_err(|e| e.to_ckr("keeping the other half of a key pair"))?;
            return Ok(());
        }
        // Both halves gone: the record goes too (and any stale records found on the way).
        let mut files: Vec<u32> = pair.meta_file.into_iter().collect();
        cache.remove_pair(key_id);
        files.extend(cache.stale_records());
        for file in files {
            match chip.delete(file) {
                Ok(()) => cache.forget(file),
                Err(e) if e.kind == ChipErrorKind::NotFound => cache.forget(file),
                Err(e) => log::warn!("could not delete metadata file {file:#010x}: {e}"),
            }
        }
        Ok(())
    }
}

fn search_active() -> super::error::Error {
    answer(
        CKR_OPERATION_ACTIVE,
        "a search is already active in this session",
    )
}

fn no_object(object: CK_OBJECT_HANDLE) -> super::error::Error {
    answer(
        CKR_OBJECT_HANDLE_INVALID,
        format_args!("no object {object:#x}"),
    )
}
