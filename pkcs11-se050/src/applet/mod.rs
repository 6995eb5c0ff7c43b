//! Typed IoT applet commands over any [`ApduTransport`].
//!
//! X25519 values cross this API in RFC 7748 (little-endian) order. The chip stores and answers
//! them byte-reversed (big-endian); the reversal happens here and nowhere else.

pub mod attest;
pub mod attributes;
pub mod ec_keys;
pub mod error;
pub mod object_id;
pub mod object_type;
pub mod policy;
pub mod protocol;
pub mod resend;
pub mod session;
pub mod sign;
pub mod version;

pub use attributes::ObjectAttributes;
pub use ec_keys::EcCurve;
pub use error::Se050Error;
pub use object_id::{ObjectId, ObjectIdError};
pub use object_type::{ObjectType, Persistence};
pub use policy::PolicyEntry;
pub use version::AppletVersion;

use crate::apdu::{tlv, ChipRefused, CommandApdu, ResponseApdu, Tlvs};
use crate::t1::ApduTransport;
use crate::wipe::SecretBytes;
use protocol::*;
use zeroize::Zeroizing;

/// Room the TLV headers of a WriteBinary take: id (6), offset (4), length (4), data header (4).
const WRITE_BINARY_OVERHEAD: usize = 6 + 4 + 4 + 4;
/// Most file bytes one WriteBinary carries.
pub const WRITE_CHUNK: usize = MAX_APDU_PAYLOAD - WRITE_BINARY_OVERHEAD;
/// Most bytes one response TLV (`41 82 HH LL ..`) carries.
pub const READ_CHUNK: usize = MAX_APDU_PAYLOAD - 4;
/// Binary file sizes are carried in two bytes; the applet allows up to 0x7FFF.
pub const MAX_BINARY_FILE: usize = 0x7FFF;
/// A bound on ReadIDList pages, so a misbehaving chip cannot keep us looping.
const MAX_LIST_PAGES: usize = 4096;

/// The IoT applet, selected, on a transport.
pub struct Se050<T: ApduTransport> {
    transport: T,
    version: AppletVersion,
    /// The applet session commands are wrapped in (ProcessSessionCmd), if one is open.
    session: Option<[u8; 8]>,
}

impl<T: ApduTransport> Se050<T> {
    /// Selects the IoT applet and checks that it has X25519.
    pub fn select(mut transport: T) -> Result<Se050<T>, Se050Error> {
        let version = select_applet(&mut transport)?;
        if !version.has_x25519() {
            return Err(Se050Error::NoX25519 { version });
        }
        Ok(Se050 {
            transport,
            version,
            session: None,
        })
    }

    /// The version SELECT returned.
    pub fn version(&self) -> AppletVersion {
        self.version
    }

    /// Asks the applet for its version again (GetVersion).
    pub fn get_version(&mut self) -> Result<AppletVersion, Se050Error> {
        let name = || "GetVersion".to_string();
        let data = self.exchange(
            &name,
            INS_MGMT,
            P1_DEFAULT,
            P2_VERSION,
            Vec::new(),
            Some(256),
        )?;
        let value = tag1(&name, &data)?;
        let version = AppletVersion::parse(value).ok_or_else(|| {
            bad(
                &name,
                format!("version of {} bytes, expected 7", value.len()),
            )
        })?;
        self.version = version;
        Ok(version)
    }

    /// The chip's unique id (18 bytes on a real SE050).
    pub fn unique_id(&mut self) -> Result<Vec<u8>, Se050Error> {
        self.read_object(ObjectId::UNIQUE_ID)
    }

    /// Generates an X25519 key pair inside the chip at `id` (no policy: everything allowed).
    /// Like the chip, this replaces an existing X25519 pair at `id`: check [`Se050::exists`] first
    /// when that matters.
    pub fn generate_x25519(&mut self, id: ObjectId) -> Result<(), Se050Error> {
        self.generate_x25519_with_policy(id, &[])
    }

    /// Generates an X25519 key pair restricted by `policy` (empty: no policy).
    pub fn generate_x25519_with_policy(
        &mut self,
        id: ObjectId,
        policy: &[PolicyEntry],
    ) -> Result<(), Se050Error> {
        id.check_user_writable()?;
        let mut data = Vec::new();
        if !policy.is_empty() {
            tlv::push(&mut data, TAG_POLICY, &policy::encode(policy));
        }
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        tlv::push(&mut data, TAG_2, &[CURVE_X25519]);
        let name = || format!("WriteECKey (generate X25519) {id}");
        self.exchange(
            &name,
            INS_WRITE,
            P1_KEY_PAIR | P1_EC,
            P2_DEFAULT,
            data,
            None,
        )?;
        Ok(())
    }

    /// The public key of the X25519 pair at `id`, RFC 7748 order.
    pub fn read_x25519_public(&mut self, id: ObjectId) -> Result<[u8; 32], Se050Error> {
        let value = self.read_object(id)?;
        let mut public: [u8; 32] = value.as_slice().try_into().map_err(|_| {
            bad(
                &|| format!("ReadObject {id}"),
                format!("{} bytes where an X25519 public key has 32", value.len()),
            )
        })?;
        public.reverse();
        Ok(public)
    }

    /// X25519 of the private key at `id` with `peer_public`, both in RFC 7748 order.
    /// A low-order peer point yields all zeros, as on the chip: callers must refuse that.
    pub fn ecdh_x25519(
        &mut self,
        id: ObjectId,
        peer_public: &[u8; 32],
    ) -> Result<Zeroizing<[u8; 32]>, Se050Error> {
        let mut peer_chip_order = *peer_public;
        peer_chip_order.reverse();
        let mut data = Vec::with_capacity(6 + 34);
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        tlv::push(&mut data, TAG_2, &peer_chip_order);
        let name = || format!("ECDHGenerateSharedSecret {id}");
        let response = self.exchange(&name, INS_CRYPTO, P1_EC, P2_DH, data, Some(256))?;
        let value = tag1(&name, &response)?;
        if value.len() != 32 {
            return Err(bad(
                &name,
                format!("shared secret of {} bytes, expected 32", value.len()),
            ));
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        for (out, byte) in secret.iter_mut().zip(value.iter().rev()) {
            *out = *byte;
        }
        Ok(secret)
    }

    /// Deletes the object at `id`.
    pub fn delete(&mut self, id: ObjectId) -> Result<(), Se050Error> {
        id.check_user_writable()?;
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        let name = || format!("DeleteSecureObject {id}");
        self.exchange(&name, INS_MGMT, P1_DEFAULT, P2_DELETE_OBJECT, data, None)?;
        Ok(())
    }

    /// Whether an object exists at `id`.
    pub fn exists(&mut self, id: ObjectId) -> Result<bool, Se050Error> {
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        let name = || format!("CheckObjectExists {id}");
        let response = self.exchange(&name, INS_MGMT, P1_DEFAULT, P2_EXIST, data, Some(256))?;
        match tag1(&name, &response)? {
            [RESULT_SUCCESS] => Ok(true),
            [RESULT_FAILURE] => Ok(false),
            other => Err(bad(
                &name,
                format!("answer {other:02X?}, expected 01 or 02"),
            )),
        }
    }

    /// Every object id on the chip (ReadIDList, paged until the chip says it is done).
    pub fn list_ids(&mut self) -> Result<Vec<ObjectId>, Se050Error> {
        let mut ids = Vec::new();
        for _ in 0..MAX_LIST_PAGES {
            let offset = u16::try_from(ids.len()).map_err(|_| {
                bad(
                    &|| "ReadIDList".into(),
                    "more than 65535 objects listed".into(),
                )
            })?;
            let mut data = Vec::new();
            tlv::push(&mut data, TAG_1, &offset.to_be_bytes());
            tlv::push(&mut data, TAG_2, &[TYPE_FILTER_ALL]);
            let name = || format!("ReadIDList from {offset}");
            let response = self.exchange(
                &name,
                INS_READ,
                P1_DEFAULT,
                P2_LIST,
                data,
                Some(MAX_APDU_PAYLOAD),
            )?;
            let tlvs = Tlvs::parse(&response).map_err(|e| bad(&name, e.to_string()))?;
            let more = tlvs.require(TAG_1).map_err(|e| bad(&name, e.to_string()))?;
            let page = tlvs.get(TAG_2).unwrap_or(&[]);
            if page.len() % 4 != 0 {
                return Err(bad(
                    &name,
                    format!("id list of {} bytes, not a multiple of 4", page.len()),
                ));
            }
            for raw in page.chunks_exact(4) {
                let raw = u32::from_be_bytes(raw.try_into().expect("chunks of 4"));
                let id = ObjectId::new(raw).map_err(|e| bad(&name, e.to_string()))?;
                ids.push(id);
            }
            match more {
                [MORE_INDICATOR_DONE] => return Ok(ids),
                [MORE_INDICATOR_MORE] if !page.is_empty() => continue,
                [MORE_INDICATOR_MORE] => {
                    return Err(bad(
                        &name,
                        "the chip says more ids follow but sent none".into(),
                    ))
                }
                other => {
                    return Err(bad(
                        &name,
                        format!("more-flag {other:02X?}, expected 01 or 02"),
                    ))
                }
            }
        }
        Err(bad(
            &|| "ReadIDList".into(),
            format!("more than {MAX_LIST_PAGES} pages"),
        ))
    }

    /// The type of the object at `id` and whether it is persistent.
    pub fn read_type(&mut self, id: ObjectId) -> Result<(ObjectType, Persistence), Se050Error> {
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        let name = || format!("ReadType {id}");
        let response = self.exchange(&name, INS_READ, P1_DEFAULT, P2_TYPE, data, Some(256))?;
        let tlvs = Tlvs::parse(&response).map_err(|e| bad(&name, e.to_string()))?;
        let [kind] = tlvs
            .require_array::<1>(TAG_1)
            .map_err(|e| bad(&name, e.to_string()))?;
        let [persistence] = tlvs
            .require_array::<1>(TAG_2)
            .map_err(|e| bad(&name, e.to_string()))?;
        let persistence = Persistence::from_code(persistence)
            .ok_or_else(|| bad(&name, format!("persistence indicator {persistence:02X}")))?;
        Ok((ObjectType::from_code(kind), persistence))
    }

    /// `len` random bytes from the chip's generator, fetched in chunks of [`READ_CHUNK`].
    pub fn get_random(&mut self, len: usize) -> Result<Vec<u8>, Se050Error> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let chunk = (len - out.len()).min(READ_CHUNK);
            let mut data = Vec::new();
            tlv::push(&mut data, TAG_1, &(chunk as u16).to_be_bytes());
            let name = || format!("GetRandom {chunk} bytes");
            self.read_chunk(&name, INS_MGMT, P2_RANDOM, data, chunk, &mut out)?;
        }
        Ok(out)
    }

    /// Stores `data` in the binary file object at `id`: creates it, or rewrites it. A file's
    /// size is fixed when it is created, so a file of another size is deleted and recreated.
    pub fn write_binary(&mut self, id: ObjectId, data: &[u8]) -> Result<(), Se050Error> {
        self.write_binary_with_policy(id, data, &[])
    }

    /// `write_binary`, and a file it creates gets `policy` (empty: none). A file rewritten in
    /// place keeps the policy it has (the chip checks the write against it).
    pub fn write_binary_with_policy(
        &mut self,
        id: ObjectId,
        data: &[u8],
        policy: &[PolicyEntry],
    ) -> Result<(), Se050Error> {
        id.check_user_writable()?;
        if data.is_empty() || data.len() > MAX_BINARY_FILE {
            return Err(Se050Error::InvalidArgument(format!(
                "a binary file object holds 1 to {MAX_BINARY_FILE} bytes, not {}",
                data.len()
            )));
        }
        let mut create = true;
        if self.exists(id)? {
            let (kind, _) = self.read_type(id)?;
            if kind != ObjectType::BinaryFile {
                return Err(Se050Error::InvalidArgument(format!(
                    "object {id} is a {kind:?}, not a binary file: refusing to overwrite it"
                )));
            }
            if self.read_size(id)? == data.len() {
                create = false;
            } else {
                self.delete(id)?;
            }
        }
        let policy_tlv = match policy {
            [] => Vec::new(),
            entries => {
                let mut tlv_bytes = Vec::new();
                tlv::push(&mut tlv_bytes, TAG_POLICY, &policy::encode(entries));
                tlv_bytes
            }
        };
        // The policy rides in the first chunk; every chunk leaves room for it.
        let chunk_len = WRITE_CHUNK - policy_tlv.len();
        for (index, chunk) in data.chunks(chunk_len).enumerate() {
            let offset = index * chunk_len;
            let mut apdu_data =
                Vec::with_capacity(policy_tlv.len() + WRITE_BINARY_OVERHEAD + chunk.len());
            if create && index == 0 {
                apdu_data.extend_from_slice(&policy_tlv);
            }
            tlv::push(&mut apdu_data, TAG_1, &id.to_be_bytes());
            tlv::push(&mut apdu_data, TAG_2, &(offset as u16).to_be_bytes());
            if create && index == 0 {
                tlv::push(&mut apdu_data, TAG_3, &(data.len() as u16).to_be_bytes());
            }
            tlv::push(&mut apdu_data, TAG_4, chunk);
            let name = || format!("WriteBinary {id} at offset {offset}");
            self.exchange(&name, INS_WRITE, P1_BINARY, P2_DEFAULT, apdu_data, None)?;
        }
        Ok(())
    }

    /// The whole contents of the binary file object at `id`, read in chunks.
    pub fn read_binary(&mut self, id: ObjectId) -> Result<Vec<u8>, Se050Error> {
        let size = self.read_size(id)?;
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let offset = out.len();
            let chunk = (size - offset).min(READ_CHUNK);
            let mut data = Vec::new();
            tlv::push(&mut data, TAG_1, &id.to_be_bytes());
            tlv::push(&mut data, TAG_2, &(offset as u16).to_be_bytes());
            tlv::push(&mut data, TAG_3, &(chunk as u16).to_be_bytes());
            let name = || format!("ReadObject {id} at offset {offset}");
            self.read_chunk(&name, INS_READ, P2_DEFAULT, data, chunk, &mut out)?;
        }
        Ok(out)
    }

    /// The size in bytes of the object at `id` (ReadSize).
    pub fn read_size(&mut self, id: ObjectId) -> Result<usize, Se050Error> {
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        let name = || format!("ReadSize {id}");
        let response = self.exchange(&name, INS_READ, P1_DEFAULT, P2_SIZE, data, Some(256))?;
        let value = tag1(&name, &response)?;
        match value {
            [hi, lo] => Ok(u16::from_be_bytes([*hi, *lo]) as usize),
            other => Err(bad(
                &name,
                format!("size of {} bytes, expected 2", other.len()),
            )),
        }
    }

    /// The object's readable contents as the chip returns them (chip byte order): the public
    /// key of a key pair, a file's bytes. A private key or secret is refused (6985).
    pub fn read_object(&mut self, id: ObjectId) -> Result<Vec<u8>, Se050Error> {
        let mut data = Vec::new();
        tlv::push(&mut data, TAG_1, &id.to_be_bytes());
        let name = || format!("ReadObject {id}");
        let response = self.exchange(
            &name,
            INS_READ,
            P1_DEFAULT,
            P2_DEFAULT,
            data,
            Some(MAX_APDU_PAYLOAD),
        )?;
        Ok(tag1(&name, &response)?.to_vec())
    }

    /// The transport underneath (e.g. for its own counters or to resync it).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Sends a command that answers with exactly `len` bytes in TAG_1 (one chunk of random
    /// bytes or of a file) and appends them to `out`; a chip that answers more or fewer is
    /// refused rather than trusted to have meant something else.
    fn read_chunk(
        &mut self,
        name: &dyn Fn() -> String,
        ins: u8,
        p2: u8,
        data: Vec<u8>,
        len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Se050Error> {
        let le = Some(tlv::encoded_len(len));
        let response = self.exchange(name, ins, P1_DEFAULT, p2, data, le)?;
        let value = tag1(name, &response)?;
        if value.len() != len {
            return Err(bad(name, format!("{} bytes, asked for {len}", value.len())));
        }
        out.extend_from_slice(value);
        Ok(())
    }

    /// Sends one IoT applet command; the response data when the chip answers 9000.
    fn exchange(
        &mut self,
        name: &dyn Fn() -> String,
        ins: u8,
        p1: u8,
        p2: u8,
        data: Vec<u8>,
        le: Option<usize>,
    ) -> Result<SecretBytes, Se050Error> {
        let apdu = CommandApdu::new(CLA_IOT, ins, p1, p2, data, le);
        self.send(name, &apdu)
    }

    /// Sends a built command (wrapped in the UserID session when one is open).
    fn send(
        &mut self,
        name: &dyn Fn() -> String,
        apdu: &CommandApdu,
    ) -> Result<SecretBytes, Se050Error> {
        match self.session {
            Some(session) => {
                let wrapped = session::wrap(&session, apdu);
                transceive(&mut self.transport, name, &wrapped)
            }
            None => transceive(&mut self.transport, name, apdu),
        }
    }
}

fn select_applet<T: ApduTransport>(transport: &mut T) -> Result<AppletVersion, Se050Error> {
    let name = || "SELECT IoT applet".to_string();
    let data = transceive(transport, &name, &select_command())?;
    AppletVersion::parse(&data).ok_or_else(|| {
        bad(
            &name,
            format!("version of {} bytes, expected 7", data.len()),
        )
    })
}

fn transceive<T: ApduTransport>(
    transport: &mut T,
    name: &dyn Fn() -> String,
    apdu: &CommandApdu,
) -> Result<SecretBytes, Se050Error> {
    // The response may carry a shared secret: `raw` and the data parsed out of it are wiped
    // when dropped.
    let raw = transport
        .transceive(&apdu.wire())
        .map_err(|source| Se050Error::Link {
            command: name(),
            source,
        })?;
    let response = ResponseApdu::parse(&raw).map_err(|e| bad(name, e.to_string()))?;
    if !response.sw.is_ok() {
        return Err(Se050Error::Refused(ChipRefused::new(name(), response.sw)));
    }
    Ok(response.data)
}

/// The value of the single 0x41 TLV most answers consist of.
fn tag1<'a>(name: &dyn Fn() -> String, response: &'a [u8]) -> Result<&'a [u8], Se050Error> {
    let tlvs = Tlvs::parse(response).map_err(|e| bad(name, e.to_string()))?;
    tlvs.require(TAG_1).map_err(|e| bad(name, e.to_string()))
}

fn bad(name: &dyn Fn() -> String, reason: String) -> Se050Error {
    Se050Error::BadResponse {
        command: name(),
        reason,
    }
}

#[cfg(test)]
pub(crate) mod rfc7748;
#[cfg(test)]
mod session_tests;
#[cfg(test)]
mod tests;
