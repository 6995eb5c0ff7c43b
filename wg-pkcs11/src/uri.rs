//! RFC 7512 `pkcs11:` URIs: which module to load, which token, which object.
//!
//! A URI has a path part (`;`-separated attributes that select the library, slot, token and
//! object) and an optional query part (`&`-separated attributes that say how to reach it: the
//! module and the PIN). Every value is percent-decoded; `id` is binary.
//!
//! Unknown attributes follow RFC 7512 section 2.5: an unrecognised *path* attribute makes the
//! URI match no resource at all, so instead of searching and reporting "not found" we refuse it
//! at parse time with an error naming the attribute. An unrecognised *query* attribute is kept
//! in [`Pkcs11Uri::unknown_query`] and ignored (a warning is logged by the caller).

use std::fmt;
use std::path::PathBuf;

use zeroize::Zeroizing;

mod module;
pub use module::{ModuleResolver, P11_KIT_MODULE_DIRS};

/// The PKCS#11 object classes a URI may select with `type=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Public,
    Private,
    Cert,
    SecretKey,
    Data,
}

impl ObjectType {
    fn parse(value: &str) -> Option<ObjectType> {
        Some(match value {
            "public" => ObjectType::Public,
            "private" => ObjectType::Private,
            "cert" => ObjectType::Cert,
            "secret-key" => ObjectType::SecretKey,
            "data" => ObjectType::Data,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            ObjectType::Public => "public",
            ObjectType::Private => "private",
            ObjectType::Cert => "cert",
            ObjectType::SecretKey => "secret-key",
            ObjectType::Data => "data",
        }
    }
}

/// `pin-source=credential:NAME`: the PIN is the systemd credential NAME
/// (`$CREDENTIALS_DIRECTORY/NAME`).
pub const CREDENTIAL_SCHEME: &str = "credential:";

/// Where a URI says its PIN is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinSpec<'a> {
    /// No PIN in the URI.
    None,
    /// `pin-value=`: the PIN itself.
    Value(&'a Zeroizing<String>),
    /// `pin-source=PATH` or `pin-source=file:PATH`: the first line of a file.
    File(&'a str),
    /// `pin-source=credential:NAME`: a systemd credential.
    Credential(&'a str),
}

/// `text` with the value of every `pin-value=` left out: for echoing a URI that did not parse
/// (or any text that may hold one) in an error message.
pub fn redact_pin_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("pin-value=") {
        let (before, after) = rest.split_at(at + "pin-value=".len());
        out.push_str(before);
        out.push_str("***");
        let end = after
            .find(|c: char| c == '&' || c.is_whitespace())
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A parsed RFC 7512 URI. `None` means "the URI does not constrain this attribute".
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    // Token attributes (CK_TOKEN_INFO).
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub serial: Option<String>,
    pub model: Option<String>,
    // Library attributes (CK_INFO).
    pub library_manufacturer: Option<String>,
    pub library_description: Option<String>,
    /// `library-version=M[.N]`.
    pub library_version: Option<(u8, u8)>,
    // Slot attributes (CK_SLOT_INFO, CK_SLOT_ID).
    pub slot_description: Option<String>,
    pub slot_manufacturer: Option<String>,
    pub slot_id: Option<u64>,
    // Object attributes.
    /// CKA_LABEL.
    pub object: Option<String>,
    /// CKA_ID, binary.
    pub id: Option<Vec<u8>>,
    pub object_type: Option<ObjectType>,
    // Query attributes.
    pub pin_value: Option<Zeroizing<String>>,
    pub pin_source: Option<String>,
    pub module_name: Option<String>,
    pub module_path: Option<String>,
    /// Query attributes this implementation does not know (RFC 7512: ignored).
    pub unknown_query: Vec<(String, String)>,
}

impl fmt::Debug for Pkcs11Uri {
    // Never print a PIN into a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({})", self.redacted())
    }
}

/// Why a string is not a usable pkcs11: URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriError {
    NotPkcs11Scheme,
    BadPercentEncoding {
        attribute: String,
    },
    NotUtf8 {
        attribute: String,
    },
    MissingEquals {
        part: String,
    },
    UnknownPathAttribute {
        attribute: String,
    },
    DuplicateAttribute {
        attribute: String,
    },
    BadValue {
        attribute: String,
        value: String,
        expected: &'static str,
    },
    PinValueAndSource,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriError::NotPkcs11Scheme => write!(f, "not a PKCS#11 URI: it must start with `pkcs11:`"),
            UriError::BadPercentEncoding { attribute } => {
                write!(f, "bad percent-encoding in attribute `{attribute}` (a `%` must be followed by two hex digits)")
            }
            UriError::NotUtf8 { attribute } => {
                write!(f, "attribute `{attribute}` does not decode to UTF-8 text")
            }
            UriError::MissingEquals { part } => {
                write!(f, "`{part}` is not an attribute: expected `name=value`")
            }
            UriError::UnknownPathAttribute { attribute } => write!(
                f,
                "unknown path attribute `{attribute}`: RFC 7512 (2.5) says a URI with an unrecognised \
                 path attribute matches no object, so it cannot select a key"
            ),
            UriError::DuplicateAttribute { attribute } => {
                write!(f, "attribute `{attribute}` appears more than once (RFC 7512 allows it once)")
            }
            UriError::BadValue { attribute, value, expected } => {
                write!(f, "attribute `{attribute}`: `{value}` is not {expected}")
            }
            UriError::PinValueAndSource => {
                write!(f, "both `pin-value` and `pin-source` given: use one")
            }
        }
    }
}

impl std::error::Error for UriError {}

/// Decode `%XX` escapes; bytes, because `id` is binary.
pub fn percent_decode(attribute: &str, value: &str) -> Result<Vec<u8>, UriError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or_else(|| UriError::BadPercentEncoding {
                    attribute: attribute.to_string(),
                })?;
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(hex[0]), digit(hex[1])) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => {
                    return Err(UriError::BadPercentEncoding {
                        attribute: attribute.to_string(),
                    })
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Percent-encode everything outside RFC 3986's unreserved set and `extra` (the characters
/// RFC 7512 lets stand unescaped in that part of the URI).
pub fn percent_encode_with(bytes: &[u8], extra: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || extra.contains(&b)
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode everything outside RFC 3986's unreserved set.
pub fn percent_encode(bytes: &[u8]) -> String {
    percent_encode_with(bytes, b"")
}

/// pk11-pchar beyond unreserved (RFC 7512 2.3), minus `&` which we keep escaped.
const PATH_SAFE: &[u8] = b":[]@!$'()*+,";
/// pk11-qchar beyond unreserved, minus `?`, `|` and `=` which we keep escaped.
const QUERY_SAFE: &[u8] = b"/:[]@!$'()*+,";

fn decode_text(attribute: &str, value: &str) -> Result<String, UriError> {
    String::from_utf8(percent_decode(attribute, value)?).map_err(|_| UriError::NotUtf8 {
        attribute: attribute.to_string(),
    })
}

fn set_once<T>(slot: &mut Option<T>, attribute: &str, value: T) -> Result<(), UriError> {
    if slot.is_some() {
        return Err(UriError::DuplicateAttribute {
            attribute: attribute.to_string(),
        });
    }
    *slot = Some(value);
    Ok(())
}

fn parse_version(attribute: &str, value: &str) -> Result<(u8, u8), UriError> {
    let bad = || UriError::BadValue {
        attribute: attribute.to_string(),
        value: value.to_string(),
        expected: "a version `major[.minor]` (0-255 each)",
    };
    let (major, minor) = match value.split_once('.') {
        Some((major, minor)) => (major, minor),
        None => (value, "0"),
    };
    Ok((
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(text: &str) -> Result<Self, UriError> {
        Pkcs11Uri::parse(text)
    }
}

/// What follows the `pkcs11:` scheme (case-insensitive, RFC 3986), or None for another text.
/// Compared as bytes: a text is not cut inside a multi-byte character.
fn after_scheme(text: &str) -> Option<&str> {
    const SCHEME: &[u8] = b"pkcs11:";
    let prefix = text.as_bytes().get(..SCHEME.len())?;
    // An ASCII prefix ends on a character boundary, so the slice below cannot panic.
    prefix
        .eq_ignore_ascii_case(SCHEME)
        .then(|| &text[SCHEME.len()..])
}

/// Whether `text` is meant as a pkcs11: URI (whether or not the rest of it is valid).
pub fn is_pkcs11_uri(text: &str) -> bool {
    after_scheme(text).is_some()
}

impl Pkcs11Uri {
    /// Parse a URI. The scheme name is case-insensitive (RFC 3986); attribute names are not.
    pub fn parse(text: &str) -> Result<Pkcs11Uri, UriError> {
        let rest = after_scheme(text.trim()).ok_or(UriError::NotPkcs11Scheme)?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri::default();
        for part in path.split(';').filter(|p| !p.is_empty()) {
            let (name, raw) = part
                .split_once('=')
                .ok_or_else(|| UriError::MissingEquals {
                    part: part.to_string(),
                })?;
            uri.set_path_attribute(name, raw)?;
        }
        for part in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            let (name, raw) = part
                .split_once('=')
                .ok_or_else(|| UriError::MissingEquals {
                    part: part.to_string(),
                })?;
            uri.set_query_attribute(name, raw)?;
        }
        if uri.pin_value.is_some() && uri.pin_source.is_some() {
            return Err(UriError::PinValueAndSource);
        }
        Ok(uri)
    }

    fn set_path_attribute(&mut self, name: &str, raw: &str) -> Result<(), UriError> {
        let text = || decode_text(name, raw);
        match name {
            "token" => set_once(&mut self.token, name, text()?),
            "manufacturer" => set_once(&mut self.manufacturer, name, text()?),
            "serial" => set_once(&mut self.serial, name, text()?),
            "model" => set_once(&mut self.model, name, text()?),
            "library-manufacturer" => set_once(&mut self.library_manufacturer, name, text()?),
            "library-description" => set_once(&mut self.library_description, name, text()?),
            "library-version" => {
                let version = parse_version(name, &text()?)?;
                set_once(&mut self.library_version, name, version)
            }
            "slot-description" => set_once(&mut self.slot_description, name, text()?),
            "slot-manufacturer" => set_once(&mut self.slot_manufacturer, name, text()?),
            "slot-id" => {
                let value = text()?;
                let id = value.parse::<u64>().map_err(|_| UriError::BadValue {
                    attribute: name.to_string(),
                    value: value.clone(),
                    expected: "a decimal slot number",
                })?;
                set_once(&mut self.slot_id, name, id)
            }
            "object" => set_once(&mut self.object, name, text()?),
            "id" => set_once(&mut self.id, name, percent_decode(name, raw)?),
            "type" => {
                let value = text()?;
                let kind = ObjectType::parse(&value).ok_or_else(|| UriError::BadValue {
                    attribute: name.to_string(),
                    value: value.clone(),
                    expected: "one of public, private, cert, secret-key, data",
                })?;
                set_once(&mut self.object_type, name, kind)
            }
            _ => Err(UriError::UnknownPathAttribute {
                attribute: name.to_string(),
            }),
        }
    }

    fn set_query_attribute(&mut self, name: &str, raw: &str) -> Result<(), UriError> {
        let text = || decode_text(name, raw);
        match name {
            "pin-value" => set_once(&mut self.pin_value, name, Zeroizing::new(text()?)),
            "pin-source" => set_once(&mut self.pin_source, name, text()?),
            "module-name" => set_once(&mut self.module_name, name, text()?),
            "module-path" => set_once(&mut self.module_path, name, text()?),
            _ => {
                self.unknown_query.push((name.to_string(), text()?));
                Ok(())
            }
        }
    }

    /// Where the URI says the PIN is: `pin-value`, or `pin-source` as a file (a path or a
    /// `file:` URI) or as a systemd credential (`credential:NAME`). No I/O here: reading it is
    /// `key::pin`'s job.
    pub fn pin_spec(&self) -> PinSpec<'_> {
        if let Some(pin) = &self.pin_value {
            return PinSpec::Value(pin);
        }
        let Some(source) = &self.pin_source else {
            return PinSpec::None;
        };
        if let Some(name) = source.strip_prefix(CREDENTIAL_SCHEME) {
            return PinSpec::Credential(name);
        }
        PinSpec::File(
            source
                .strip_prefix("file://")
                .or_else(|| source.strip_prefix("file:"))
                .unwrap_or(source),
        )
    }

    /// The PKCS#11 module to load, resolved with the system's p11-kit directories.
    pub fn module(&self) -> Result<PathBuf, String> {
        ModuleResolver::system().resolve(self)
    }

    /// Does a token with this CK_TOKEN_INFO (trimmed strings) satisfy the URI?
    pub fn matches_token(
        &self,
        label: &str,
        manufacturer: &str,
        model: &str,
        serial: &str,
    ) -> bool {
        fn ok(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        ok(&self.token, label)
            && ok(&self.manufacturer, manufacturer)
            && ok(&self.model, model)
            && ok(&self.serial, serial)
    }

    /// Does a slot with this id and CK_SLOT_INFO (trimmed strings) satisfy the URI?
    pub fn matches_slot(&self, id: u64, description: &str, manufacturer: &str) -> bool {
        self.slot_id.is_none_or(|w| w == id)
            && self
                .slot_description
                .as_deref()
                .is_none_or(|w| w == description)
            && self
                .slot_manufacturer
                .as_deref()
                .is_none_or(|w| w == manufacturer)
    }

    /// Does a library with this CK_INFO satisfy the URI?
    pub fn matches_library(
        &self,
        manufacturer: &str,
        description: &str,
        version: (u8, u8),
    ) -> bool {
        self.library_manufacturer
            .as_deref()
            .is_none_or(|w| w == manufacturer)
            && self
                .library_description
                .as_deref()
                .is_none_or(|w| w == description)
            && self.library_version.is_none_or(|w| w == version)
    }

    /// The same URI with the PIN left out: for log lines and error messages.
    pub fn redacted(&self) -> String {
        let mut copy = self.clone();
        if copy.pin_value.is_some() {
            copy.pin_value = Some(Zeroizing::new("***".to_string()));
        }
        copy.to_string()
    }
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path: Vec<String> = Vec::new();
        let mut text = |name: &str, value: &Option<String>| {
            if let Some(v) = value {
                path.push(format!(
                    "{name}={}",
                    percent_encode_with(v.as_bytes(), PATH_SAFE)
                ));
            }
        };
        text("library-description", &self.library_description);
        text("library-manufacturer", &self.library_manufacturer);
        text("slot-description", &self.slot_description);
        text("slot-manufacturer", &self.slot_manufacturer);
        text("manufacturer", &self.manufacturer);
        text("model", &self.model);
        text("serial", &self.serial);
        text("token", &self.token);
        text("object", &self.object);
        if let Some((major, minor)) = self.library_version {
            path.push(format!("library-version={major}.{minor}"));
        }
        if let Some(id) = self.slot_id {
            path.push(format!("slot-id={id}"));
        }
        if let Some(id) = &self.id {
            // Binary: every byte escaped, as p11tool and pkcs11-tool print ids.
            let escaped: String = id.iter().map(|b| format!("%{b:02X}")).collect();
            path.push(format!("id={escaped}"));
        }
        if let Some(kind) = self.object_type {
            path.push(format!("type={}", kind.as_str()));
        }
        let mut query: Vec<String> = Vec::new();
        let mut q = |name: &str, value: Option<&str>| {
            if let Some(v) = value {
                query.push(format!(
                    "{name}={}",
                    percent_encode_with(v.as_bytes(), QUERY_SAFE)
                ));
            }
        };
        q("pin-value", self.pin_value.as_deref().map(|s| s.as_str()));
        q("pin-source", self.pin_source.as_deref());
        q("module-name", self.module_name.as_deref());
        q("module-path", self.module_path.as_deref());
        for (name, value) in &self.unknown_query {
            q(name, Some(value));
        }
        write!(f, "pkcs11:{}", path.join(";"))?;
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
