//! The chip's static PlatformSCP03 key set and the file it persists in.
//!
//! The file is NXP's Plug & Trust key file format (one `ENC <32 hex>`, `MAC <32 hex>` and
//! `DEK <32 hex>` line each; `#` starts a comment), with a `KVN <hex>` line in front: what a host
//! tool reads, plus the key version. Files written by earlier builds of this chip load.

use super::crypto::{self, Key};
use std::fmt::Write as _;
use zeroize::Zeroizing;

/// The key version of an SE050's PlatformSCP03 keys as NXP delivers it (Plug & Trust
/// `ex_sss_tp_scp03_keys.h`: key version 0x0B).
pub const DEFAULT_KVN: u8 = 0x0B;

/// ENC, MAC and DEK of one key set.
#[derive(Clone)]
pub struct CardKeys {
    pub enc: Key,
    pub mac: Key,
    pub dek: Key,
}

impl std::fmt::Debug for CardKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Check values identify keys without showing them.
        write!(
            f,
            "CardKeys {{ enc kcv {:02x?}, mac kcv {:02x?}, dek kcv {:02x?} }}",
            crypto::check_value(&self.enc),
            crypto::check_value(&self.mac),
            crypto::check_value(&self.dek)
        )
    }
}

impl PartialEq for CardKeys {
    fn eq(&self, other: &Self) -> bool {
        crypto::same(&self.enc[..], &other.enc[..])
            & crypto::same(&self.mac[..], &other.mac[..])
            & crypto::same(&self.dek[..], &other.dek[..])
    }
}

impl CardKeys {
    pub fn new(enc: [u8; 16], mac: [u8; 16], dek: [u8; 16]) -> CardKeys {
        CardKeys {
            enc: Zeroizing::new(enc),
            mac: Zeroizing::new(mac),
            dek: Zeroizing::new(dek),
        }
    }

    /// The key file's text: KVN line, then NXP's three lines.
    pub fn to_file_text(&self, kvn: u8) -> Zeroizing<String> {
        let mut out = Zeroizing::new(format!(
            "KVN {kvn:02X}\n# PlatformSCP03 keys of a virtual SE050. Keep this file private.\n"
        ));
        for (name, key) in [("ENC", &self.enc), ("MAC", &self.mac), ("DEK", &self.dek)] {
            out.push_str(name);
            out.push(' ');
            for byte in key.iter() {
                let _ = write!(out, "{byte:02X}");
            }
            out.push('\n');
        }
        out
    }

    /// Reads a key file: the version (DEFAULT_KVN when the file has no KVN line) and the keys.
    pub fn from_file_text(text: &str) -> Result<(u8, CardKeys), String> {
        let mut kvn = DEFAULT_KVN;
        let mut found: [Option<Key>; 3] = [None, None, None];
        for (index, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            let (Some(name), value, None) = (words.next(), words.next(), words.next()) else {
                if line.is_empty() {
                    continue;
                }
                return Err(format!("line {}: not `NAME VALUE`", index + 1));
            };
            let value = value.ok_or_else(|| format!("line {}: {name} has no value", index + 1))?;
            let slot = match name {
                "KVN" => {
                    kvn = u8::from_str_radix(value, 16)
                        .map_err(|_| format!("line {}: bad KVN", index + 1))?;
                    continue;
                }
                "ENC" => 0,
                "MAC" => 1,
                "DEK" => 2,
                _ => return Err(format!("line {}: unknown name {name}", index + 1)),
            };
            if value.len() != 32 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("line {}: {name} is not 32 hex digits", index + 1));
            }
            let mut key = Zeroizing::new([0u8; 16]);
            for (i, byte) in key.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&value[2 * i..2 * i + 2], 16).expect("hex checked");
            }
            found[slot] = Some(key);
        }
        match found {
            [Some(enc), Some(mac), Some(dek)] => Ok((kvn, CardKeys { enc, mac, dek })),
            _ => Err("ENC, MAC and DEK are not all there".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_older_files_load() {
        let keys = CardKeys::new([1; 16], [2; 16], [3; 16]);
        let (kvn, back) = CardKeys::from_file_text(&keys.to_file_text(0x2A)).unwrap();
        assert_eq!((kvn, &back), (0x2A, &keys));
        // As earlier builds wrote it: KVN line, NXP's comment line, three keys.
        let older = "KVN 0B\n# PlatformSCP03 keys of an SE050 (NXP plug-and-trust format). Keep this file private.\n\
                     ENC 000102030405060708090A0B0C0D0E0F\nMAC 101112131415161718191A1B1C1D1E1F\n\
                     DEK 202122232425262728292A2B2C2D2E2F\n";
        let (kvn, keys) = CardKeys::from_file_text(older).unwrap();
        assert_eq!(kvn, 0x0B);
        assert_eq!(keys.mac[15], 0x1F);
        assert!(CardKeys::from_file_text("ENC 00\n").is_err());
        assert!(CardKeys::from_file_text("ENC 000102030405060708090A0B0C0D0E0F\n").is_err());
    }
}
