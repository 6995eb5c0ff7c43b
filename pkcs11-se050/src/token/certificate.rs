//! CKO_CERTIFICATE objects (X.509) stored on the chip (issue 22): C_CreateObject writes one
//! into a binary file object, C_FindObjects / C_GetAttributeValue read it, C_DestroyObject
//! deletes it. CKA_ID links a certificate to its key (`pkcs11-tool --write-object cert.der
//! --type cert --id 01` next to a key with CKA_ID 01), as clients look it up.
//!
//! How a certificate is stored, the attributes it reports and its handle: certificate_file.rs.
//! Subject, issuer and serial number come from the template or, when it leaves them out, from
//! the certificate itself. A certificate is public (CKA_PRIVATE false): under a user PIN its
//! file gets the records' policy (the user writes and deletes, the SO deletes, everyone reads).

use super::attributes::{attr_name, Template};
use super::certificate_file::{Certificate, CERT_BASE, CERT_END, STORED};
use super::chip::ChipErrorKind;
use super::error::{answer, refuse, Result};
use super::Token;
use pkcs11_sys::*;

/// What a template may name.
const ALLOWED: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_CLASS,
    CKA_CERTIFICATE_TYPE,
    CKA_TOKEN,
    CKA_PRIVATE,
    CKA_MODIFIABLE,
    CKA_LABEL,
    CKA_ID,
    CKA_SUBJECT,
    CKA_ISSUER,
    CKA_SERIAL_NUMBER,
    CKA_VALUE,
    CKA_TRUSTED,
    CKA_CERTIFICATE_CATEGORY,
];

/// A DER element at the start of some bytes: (tag, whole element, contents, rest).
type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn element(der: &[u8]) -> Option<Element<'_>> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, header) = match first {
        0..=0x7F => (first as usize, 2usize),
        0x81 => (*der.get(2)? as usize, 3),
        0x82 => (u16::from_be_bytes([*der.get(2)?, *der.get(3)?]) as usize, 4),
        _ => return None,
    };
    let end = header.checked_add(len)?;
    Some((tag, der.get(..end)?, der.get(header..end)?, der.get(end..)?))
}

/// (subject, issuer, serial number) of a DER X.509 certificate, each as DER, as PKCS#11 has
/// them; None when `der` is not one.
pub fn x509_names(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let (0x30, _, certificate, []) = element(der)? else {
        return None;
    };
    let (0x30, _, tbs, _) = element(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&0xA0) {
        rest = element(rest)?.3; // [0] version
    }
    let (0x02, serial, _, rest) = element(rest)? else {
        return None;
    };
    let (0x30, _, _, rest) = element(rest)? else {
        return None; // signature algorithm
    };
    let (0x30, issuer, _, rest) = element(rest)? else {
        return None;
    };
    let (0x30, _, _, rest) = element(rest)? else {
        return None; // validity
    };
    let (0x30, subject, _, _) = element(rest)? else {
        return None;
    };
    Some((subject.to_vec(), issuer.to_vec(), serial.to_vec()))
}

impl Token {
    /// C_CreateObject: only X.509 certificates, stored on the chip.
    pub fn create_object(
        &self,
        session: CK_SESSION_HANDLE,
        template: &Template,
    ) -> Result<CK_OBJECT_HANDLE> {
        self.check_session(session, true)?;
        match template.get_ulong(CKA_CLASS)? {
            Some(CKO_CERTIFICATE) => {}
            Some(other) => {
                return Err(refuse(
                    CKR_TEMPLATE_INCONSISTENT,
                    format_args!(
                        "C_CreateObject of class {other:#x}: only certificates (CKO_CERTIFICATE) \
                         are stored; keys are made on the chip (C_GenerateKeyPair)"
                    ),
                ))
            }
            None => {
                return Err(refuse(
                    CKR_TEMPLATE_INCOMPLETE,
                    "C_CreateObject without CKA_CLASS",
                ))
            }
        }
        template.only(&[ALLOWED], "certificate")?;
        if template
            .get_ulong(CKA_CERTIFICATE_TYPE)?
            .unwrap_or(CKC_X_509)
            != CKC_X_509
        {
            return Err(refuse(
                CKR_ATTRIBUTE_VALUE_INVALID,
                "only X.509 certificates (CKC_X_509)",
            ));
        }
        template.expect_bool(
            CKA_TOKEN,
            true,
            "certificates are stored on the chip (CKA_TOKEN true)",
        )?;
        template.expect_bool(
            CKA_PRIVATE,
            false,
            "certificates are public (CKA_PRIVATE false)",
        )?;
        template.expect_bool(
            CKA_TRUSTED,
            false,
            "this token marks no certificate trusted",
        )?;
        // The stored certificate reports CKA_MODIFIABLE false and C_SetAttributeValue refuses
        // it: a template asking for a modifiable one must not be accepted and then contradicted.
        template.expect_bool(
            CKA_MODIFIABLE,
            false,
            "certificates on this token never change in place (CKA_MODIFIABLE false)",
        )?;
        let value = template.get(CKA_VALUE).ok_or_else(|| {
            refuse(
                CKR_TEMPLATE_INCOMPLETE,
                "a certificate needs CKA_VALUE (its DER)",
            )
        })?;
        let (subject, issuer, serial) = x509_names(value).ok_or_else(|| {
            refuse(
                CKR_ATTRIBUTE_VALUE_INVALID,
                "CKA_VALUE is not a DER X.509 certificate",
            )
        })?;
        let values: Vec<_> = STORED
            .iter()
            .map(|&t| {
                let derived = match t {
                    CKA_SUBJECT => subject.clone(),
                    CKA_ISSUER => issuer.clone(),
                    CKA_SERIAL_NUMBER => serial.clone(),
                    _ => Vec::new(),
                };
                (t, template.get(t).map(<[u8]>::to_vec).unwrap_or(derived))
            })
            .collect();
        let mut cert = Certificate { file: 0, values };
        if cert.encode().len() > crate::applet::MAX_BINARY_FILE {
            return Err(refuse(
                CKR_ATTRIBUTE_VALUE_INVALID,
                format_args!(
                    "a certificate file holds at most {} bytes",
                    crate::applet::MAX_BINARY_FILE
                ),
            ));
        }
        self.require_user_for_keys()?;
        let mut cache = self.cache.lock();
        self.refresh(&mut cache)?;
        cert.file = (CERT_BASE..=CERT_END)
            .find(|f| !cache.is_used(*f))
            .ok_or_else(|| refuse(CKR_DEVICE_MEMORY, "no free object id for a certificate"))?;
        let policy = super::pin::record_policy_now(&cache);
        {
            let mut link = self.link.lock();
            let chip = link
                .chip(&self.config)
                .map_err(|e| e.to_ckr("opening the chip"))?;
            chip.write_binary(cert.file, &cert.encode(), &policy)
                .map_err(|e| e.to_ckr(&format!("storing a certificate at {:#010x}", cert.file)))?;
        }
        log::info!(
            "stored certificate {:#010x} ({})",
            cert.file,
            String::from_utf8_lossy(cert.get(CKA_LABEL))
        );
        let handle = cert.handle().ok_or_else(|| {
            answer(
                CKR_GENERAL_ERROR,
                format_args!("no free object handle for certificate {:#010x}", cert.file),
            )
        })?;
        cache.insert_certificate(cert);
        Ok(handle)
    }

    /// The certificate a handle names, if it exists.
    pub(super) fn certificate(&self, handle: CK_OBJECT_HANDLE) -> Result<Certificate> {
        use sha2::Digest;
        let named = super::handles::certificate_binding(handle);
        self.loaded_cache()?
            .certs
            .get(&named.map_or(0, |(file, _)| file))
            .filter(|cert| {
                named.is_some_and(|(_, digest)| {
                    <[u8; 32]>::from(sha2::Sha256::digest(cert.get(CKA_VALUE))) == digest
                })
            })
            .cloned()
            .ok_or_else(|| {
                answer(
                    CKR_OBJECT_HANDLE_INVALID,
                    format_args!("no object {handle:#x}"),
                )
            })
    }

    pub(super) fn destroy_certificate(
        &self,
        session: CK_SESSION_HANDLE,
        handle: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        self.check_session(session, true)?;
        self.require_user_for_keys()?;
        let cert = self.certificate(handle)?;
        let mut cache = self.cache.lock();
        let mut link = self.link.lock();
        let chip = link
            .chip(&self.config)
            .map_err(|e| e.to_ckr("opening the chip"))?;
        match chip.delete(cert.file) {
            Ok(()) => {}
            Err(e) if e.kind == ChipErrorKind::NotFound => {}
            Err(e) => return Err(e.to_ckr(&format!("deleting certificate {:#010x}", cert.file))),
        }
        cache.certs.remove(&cert.file);
        cache.forget(cert.file);
        Ok(())
    }
}

/// C_SetAttributeValue on a certificate: CKA_MODIFIABLE is false.
pub fn read_only(t: CK_ATTRIBUTE_TYPE) -> super::error::Error {
    refuse(
        CKR_ACTION_PROHIBITED,
        format_args!(
            "{}: certificates on the chip are not modifiable",
            attr_name(t)
        ),
    )
}
