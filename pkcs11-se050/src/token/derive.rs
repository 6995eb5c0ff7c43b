//! C_DeriveKey with CKM_ECDH1_DERIVE: one X25519 (or P-256, ecdh_p256.rs) ECDH on the chip, the
//! result a session secret.
//!
//! This is the hot path of a WireGuard handshake, so it costs exactly one APDU: the key is
//! looked up in the cache (no listing, no metadata read), the chip does one ECDH, and the
//! result never touches the chip again.

use super::attributes::{attr_name, Template, KEY_TEMPLATE_COMMON};
use super::chip::{Chip, ChipErrorKind, ChipResult, EcCurve};
use super::ec::{decode_point, hex};
use super::ec_keys::public_key;
use super::ecdh_p256::p256_peer;
use super::error::{answer, refuse, Result};
use super::handles::{split_handle, Half};
use super::secret::{SecretKey, SECRET_USAGE_ATTRIBUTES};
use super::Token;
use pkcs11_sys::*;
use zeroize::Zeroizing;

/// CK_ECDH1_DERIVE_PARAMS, copied out of the caller's memory.
#[derive(Debug, Clone)]
pub struct DeriveParams {
    pub kdf: CK_EC_KDF_TYPE,
    pub shared_data: Vec<u8>,
    pub public_data: Vec<u8>,
}

/// What a derived key's template may name besides KEY_TEMPLATE_COMMON and the usage flags
/// (SECRET_USAGE_ATTRIBUTES) the secret keeps.
const SECRET_ONLY: &[CK_ATTRIBUTE_TYPE] = &[CKA_VALUE_LEN, CKA_SENSITIVE, CKA_EXTRACTABLE];

impl Token {
    pub fn derive(
        &self,
        session: CK_SESSION_HANDLE,
        mechanism: CK_MECHANISM_TYPE,
        params: Option<&DeriveParams>,
        base: CK_OBJECT_HANDLE,
        template: &Template,
    ) -> Result<CK_OBJECT_HANDLE> {
        self.check_session(session, false)?;
        if mechanism == super::attest::CKM_SE050_ATTEST {
            let nonce = params.map(|p| p.public_data.as_slice()).unwrap_or_default();
            return self.derive_attestation(session, nonce, base, template);
        }
        if mechanism != CKM_ECDH1_DERIVE {
            return Err(refuse(
                CKR_MECHANISM_INVALID,
                format_args!("derive with mechanism {mechanism:#x}; only CKM_ECDH1_DERIVE"),
            ));
        }
        let params = params.ok_or_else(|| {
            refuse(
                CKR_MECHANISM_PARAM_INVALID,
                "CKM_ECDH1_DERIVE needs CK_ECDH1_DERIVE_PARAMS",
            )
        })?;
        if params.kdf != CKD_NULL {
            return Err(refuse(
                CKR_MECHANISM_PARAM_INVALID,
                format_args!(
                    "KDF {:#x}; only CKD_NULL (the raw X25519 result) is supported",
                    params.kdf
                ),
            ));
        }
        if !params.shared_data.is_empty() {
            return Err(refuse(
                CKR_MECHANISM_PARAM_INVALID,
                "shared data is not allowed with CKD_NULL",
            ));
        }
        // The base key's curve decides how the peer's key is read and which ECDH the chip
        // runs (Peer); everything else is the same for X25519 and P-256.
        let peer = Peer::decode(self.ec_curve_of(base)?, &params.public_data)?;
        let secret = SecretTemplate::parse(template)?;
        self.require_user_for_keys()?;
        let logged_in = self.sessions.lock().user.is_some();

        if split_handle(base).is_none() {
            if self.secrets.lock().objects.contains_key(&base) {
                return Err(refuse(
                    CKR_KEY_TYPE_INCONSISTENT,
                    "the base key is a secret, not an X25519 private key",
                ));
            }
            return Err(answer(
                CKR_KEY_HANDLE_INVALID,
                format_args!("no key {base:#x}"),
            ));
        }
        let (key_id, bound_public) =
            match self.loaded_cache()?.resolve(base) {
                Some((pair, Half::Private)) => (pair.key_id, public_key(pair)),
                Some((_, Half::Public)) => return Err(refuse(
                    CKR_KEY_TYPE_INCONSISTENT,
                    "the base key of CKM_ECDH1_DERIVE must be the private key, not the public one",
                )),
                None => {
                    return Err(answer(
                        CKR_KEY_HANDLE_INVALID,
                        format_args!("no key {base:#x}"),
                    ))
                }
            };

        let shared = {
            let mut link = self.link.lock();
            let chip = link
                .chip(&self.config)
                .map_err(|e| e.to_ckr("opening the chip"))?;
            // The handle is bound to the key it was made for: another process may have deleted
            // it and made a new pair at the same id. Reading the public key costs no NVM write
            // (the ECDH does) and keeps the old handle from deriving with someone else's key.
            match peer.read_public(chip, key_id) {
                Ok(public) if public == bound_public => peer.agree(chip, key_id),
                Ok(_) => Err(super::chip::ChipError::new(
                    ChipErrorKind::NotFound,
                    "replaced by another key at the same object id",
                )),
                Err(e) => Err(e),
            }
        };
        let shared = match shared {
            Ok(shared) => shared,
            Err(e) if e.kind == ChipErrorKind::NotFound => {
                // Deleted (or replaced) by another process since we listed it.
                let mut cache = self.cache.lock();
                if cache
                    .pairs
                    .get(&key_id)
                    .is_some_and(|p| public_key(p) == bound_public)
                {
                    cache.remove_pair(key_id);
                }
                return Err(refuse(
                    CKR_KEY_HANDLE_INVALID,
                    format_args!("key {key_id:#010x} is gone from the chip: {e}"),
                ));
            }
            Err(e) => {
                return Err(e.to_ckr(&format!("{}ECDH with key {key_id:#010x}", peer.prefix())))
            }
        };
        peer.check_shared(&shared)?;
        let value: Zeroizing<Vec<u8>> = Zeroizing::new(shared[..secret.len].to_vec());
        // Under the sessions lock, so that a C_Logout either ran before (and the secret is not
        // stored) or runs after (and destroys it).
        let sessions = self.sessions.lock();
        if logged_in && sessions.user.is_none() {
            return Err(answer(
                CKR_USER_NOT_LOGGED_IN,
                "logged out while the ECDH ran: its result is not kept",
            ));
        }
        let handle = self.secrets.lock().insert(SecretKey {
            session,
            value,
            private: sessions.user.is_some(),
            label: secret.label,
            id: secret.id,
            sensitive: secret.sensitive,
            extractable: secret.extractable,
            usage: secret.usage,
        });
        Ok(handle)
    }
}

/// The peer's public key, decoded for the base key's curve: the one place where ECDH with an
/// X25519 key and with a P-256 key (ecdh_p256.rs) differ.
enum Peer {
    X25519([u8; 32]),
    /// The uncompressed point.
    P256(Vec<u8>),
}

impl Peer {
    /// `curve`: the base key's, None for an X25519 key (or no key: the base is checked later).
    fn decode(curve: Option<EcCurve>, data: &[u8]) -> Result<Peer> {
        if let Some(curve) = curve {
            return p256_peer(curve, data).map(Peer::P256);
        }
        let peer = decode_point(data).ok_or_else(|| {
            refuse(
                CKR_MECHANISM_PARAM_INVALID,
                format_args!(
                    "peer public key must be 32 raw bytes or a DER OCTET STRING 04 20 ..., got {} bytes",
                    data.len()
                ),
            )
        })?;
        Ok(Peer::X25519(peer))
    }

    /// What error messages name the ECDH by.
    fn prefix(&self) -> &'static str {
        match self {
            Peer::X25519(_) => "",
            Peer::P256(_) => "P-256 ",
        }
    }

    /// The base key's public key as the chip has it now (as `ec_keys::public_key` gives it).
    fn read_public(&self, chip: &mut dyn Chip, key_id: u32) -> ChipResult<Vec<u8>> {
        match self {
            Peer::X25519(_) => chip.read_x25519_public(key_id).map(|p| p.to_vec()),
            Peer::P256(_) => chip.read_ec_public(key_id, EcCurve::NistP256),
        }
    }

    fn agree(&self, chip: &mut dyn Chip, key_id: u32) -> ChipResult<Zeroizing<[u8; 32]>> {
        match self {
            Peer::X25519(peer) => chip.ecdh_x25519(key_id, peer),
            Peer::P256(peer) => chip.ecdh_p256(key_id, peer),
        }
    }

    /// X25519 with a low-order point gives all zeros (RFC 7748 section 6.1): refused. A P-256
    /// peer point was checked to lie on the curve before it was sent.
    fn check_shared(&self, shared: &[u8; 32]) -> Result<()> {
        match self {
            Peer::X25519(peer) if shared.iter().all(|&b| b == 0) => Err(refuse(
                CKR_FUNCTION_FAILED,
                format_args!(
                    "X25519 with peer key {} gave all zeros (a low-order point): refused",
                    hex(peer)
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The derived key's template, checked.
pub(super) struct SecretTemplate {
    pub(super) len: usize,
    pub(super) label: Vec<u8>,
    pub(super) id: Vec<u8>,
    pub(super) sensitive: bool,
    pub(super) extractable: bool,
    pub(super) usage: Vec<(CK_ATTRIBUTE_TYPE, bool)>,
}

impl SecretTemplate {
    pub(super) fn parse(t: &Template) -> Result<SecretTemplate> {
        t.only(
            &[KEY_TEMPLATE_COMMON, SECRET_ONLY, SECRET_USAGE_ATTRIBUTES],
            "derived key",
        )?;
        t.expect_ulong(CKA_CLASS, CKO_SECRET_KEY, "derived key")?;
        t.expect_ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET, "derived key")?;
        t.expect_bool(
            CKA_TOKEN,
            false,
            "derived secrets are session objects; the chip keeps only key pairs",
        )?;
        t.expect_bool(CKA_COPYABLE, false, "derived secrets cannot be copied")?;
        let len = match t.get_ulong(CKA_VALUE_LEN)? {
            None => 32,
            Some(n) if (1..=32).contains(&n) => n as usize,
            Some(n) => {
                return Err(refuse(
                    CKR_TEMPLATE_INCONSISTENT,
                    format_args!(
                        "{} = {n}: an X25519 result has 32 bytes",
                        attr_name(CKA_VALUE_LEN)
                    ),
                ))
            }
        };
        let mut usage = Vec::new();
        for &u in SECRET_USAGE_ATTRIBUTES {
            if let Some(v) = t.get_bool(u)? {
                usage.push((u, v));
            }
        }
        Ok(SecretTemplate {
            len,
            label: t.get(CKA_LABEL).unwrap_or_default().to_vec(),
            id: t.get(CKA_ID).unwrap_or_default().to_vec(),
            sensitive: t.get_bool(CKA_SENSITIVE)?.unwrap_or(false),
            extractable: t.get_bool(CKA_EXTRACTABLE)?.unwrap_or(true),
            usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::attributes::ulong_value;

    #[test]
    fn secret_templates_are_checked() {
        let ok = SecretTemplate::parse(&Template::new(vec![
            (CKA_CLASS, ulong_value(CKO_SECRET_KEY)),
            (CKA_KEY_TYPE, ulong_value(CKK_GENERIC_SECRET)),
            (CKA_VALUE_LEN, ulong_value(16)),
            (CKA_SENSITIVE, vec![1]),
        ]))
        .unwrap();
        assert_eq!((ok.len, ok.sensitive, ok.extractable), (16, true, true));
        let too_long = Template::new(vec![(CKA_VALUE_LEN, ulong_value(33))]);
        assert_eq!(
            SecretTemplate::parse(&too_long).err().unwrap().rv(),
            CKR_TEMPLATE_INCONSISTENT
        );
        let token = Template::new(vec![(CKA_TOKEN, vec![1])]);
        assert_eq!(
            SecretTemplate::parse(&token).err().unwrap().rv(),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        let aes = Template::new(vec![(CKA_KEY_TYPE, ulong_value(CKK_AES))]);
        assert_eq!(
            SecretTemplate::parse(&aes).err().unwrap().rv(),
            CKR_TEMPLATE_INCONSISTENT
        );
        assert_eq!(
            SecretTemplate::parse(&Template::default())
                .ok()
                .unwrap()
                .len,
            32
        );
    }
}
