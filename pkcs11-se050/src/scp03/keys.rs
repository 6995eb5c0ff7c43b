//! Static PlatformSCP03 key sets: NXP's key file format, its permissions, and the development
//! keys NXP publishes for each SE05x variant.
//!
//! The key file is the one NXP's plug-and-trust middleware reads (`plain_scp.txt`, see
//! sss/ex/src/ex_sss_scp03_auth.c): one line each `ENC <hex>`, `MAC <hex>`, `DEK <hex>`, 32 hex
//! digits (AES-128) in either case; lines starting with `#` and the rest of a line after `#`
//! are comments. A file that group or others may read or write is refused.

use super::crypto::{self, Key};
use super::Scp03Error;
use crate::private_file::Access;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use zeroize::Zeroizing;

/// The longest key file read: three key lines and room for comments.
pub const MAX_KEY_FILE: u64 = 4096;

/// NXP's default PlatformSCP key version: `EX_SSS_AUTH_SE05X_KEY_VERSION_NO` = 0x0B in the
/// middleware's sss/ex/inc/ex_sss_auth.h.
pub const DEFAULT_KVN: u8 = 0x0B;

/// The three static keys of one key set.
#[derive(Clone)]
pub struct StaticKeys {
    pub enc: Key,
    pub mac: Key,
    pub dek: Key,
}

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key bytes: their check values identify them well enough in logs.
        write!(
            f,
            "StaticKeys {{ enc kcv {:02x?}, mac kcv {:02x?}, dek kcv {:02x?} }}",
            crypto::key_check_value(&self.enc),
            crypto::key_check_value(&self.mac),
            crypto::key_check_value(&self.dek)
        )
    }
}

impl PartialEq for StaticKeys {
    fn eq(&self, other: &Self) -> bool {
        crypto::equal(&self.enc[..], &other.enc[..])
            && crypto::equal(&self.mac[..], &other.mac[..])
            && crypto::equal(&self.dek[..], &other.dek[..])
    }
}

fn key(bytes: [u8; 16]) -> Key {
    Zeroizing::new(bytes)
}

/// The development keys NXP publishes per variant, as a new chip ships them. Source: NXP
/// plug-and-trust, sss/ex/inc/ex_sss_tp_scp03_keys.h (generated from the OEF data of AN12436;
/// a forum thread reports that AN12436's own table differs: the header is what NXP's code uses).
pub const VARIANTS: [(&str, &str, [[u8; 16]; 3]); 7] = [
    (
        "SE050A1",
        "OEF A204",
        [
            [
                0x34, 0xAE, 0x09, 0x67, 0xE3, 0x29, 0xE9, 0x51, 0x8E, 0x72, 0x65, 0xD5, 0xAD, 0xCC,
                0x01, 0xC2,
            ],
            [
                0x52, 0xB2, 0x53, 0xCA, 0xDF, 0x47, 0x2B, 0xDB, 0x3D, 0x0F, 0xB3, 0x8E, 0x09, 0x77,
                0x00, 0x99,
            ],
            [
                0xAC, 0xC9, 0x14, 0x31, 0xFE, 0x26, 0x81, 0x1B, 0x5E, 0xCB, 0xC8, 0x45, 0x62, 0x0D,
                0x83, 0x44,
            ],
        ],
    ),
    (
        "SE050A2",
        "OEF A205",
        [
            [
                0x46, 0xA9, 0xC4, 0x8C, 0x34, 0xEF, 0xE3, 0x44, 0xA5, 0x22, 0xE6, 0x67, 0x44, 0xF8,
                0x99, 0x6A,
            ],
            [
                0x12, 0x03, 0xFF, 0x61, 0xDF, 0xBC, 0x9C, 0x86, 0x19, 0x6A, 0x22, 0x74, 0xAE, 0xF4,
                0xED, 0x28,
            ],
            [
                0xF7, 0x56, 0x1C, 0x6F, 0x48, 0x33, 0x61, 0x19, 0xEE, 0x39, 0x43, 0x9A, 0xAB, 0x34,
                0x09, 0x8E,
            ],
        ],
    ),
    (
        "SE050B1",
        "OEF A202",
        [
            [
                0xD4, 0x99, 0xBC, 0x90, 0xDE, 0xA5, 0x42, 0xCF, 0x78, 0xD2, 0x5E, 0x13, 0xD6, 0x4C,
                0xBB, 0x1F,
            ],
            [
                0x08, 0x15, 0x55, 0x96, 0x43, 0xFB, 0x79, 0xEB, 0x85, 0x01, 0xA0, 0xDC, 0x83, 0x3D,
                0x90, 0x1F,
            ],
            [
                0xBE, 0x7D, 0xDF, 0xB4, 0x06, 0xE8, 0x1A, 0xE4, 0xE9, 0x66, 0x5A, 0x9F, 0xED, 0x64,
                0x26, 0x7C,
            ],
        ],
    ),
    (
        "SE050C1",
        "OEF A200",
        [
            [
                0x85, 0x2B, 0x59, 0x62, 0xE9, 0xCC, 0xE5, 0xD0, 0xBE, 0x74, 0x6B, 0x83, 0x3B, 0xCC,
                0x62, 0x87,
            ],
            [
                0xDB, 0x0A, 0xA3, 0x19, 0xA4, 0x08, 0x69, 0x6C, 0x8E, 0x10, 0x7A, 0xB4, 0xE3, 0xC2,
                0x6B, 0x47,
            ],
            [
                0x4C, 0x2F, 0x75, 0xC6, 0xA2, 0x78, 0xA4, 0xAE, 0xE5, 0xC9, 0xAF, 0x7C, 0x50, 0xEE,
                0xA8, 0x0C,
            ],
        ],
    ),
    (
        "SE050C2",
        "OEF A201",
        [
            [
                0xBD, 0x1D, 0xE2, 0x0A, 0x81, 0xEA, 0xB2, 0xBF, 0x3B, 0x70, 0x9A, 0x9D, 0x69, 0xA3,
                0x12, 0x54,
            ],
            [
                0x9A, 0x76, 0x1B, 0x8D, 0xBA, 0x6B, 0xED, 0xF2, 0x27, 0x41, 0xE4, 0x5D, 0x8D, 0x42,
                0x36, 0xF5,
            ],
            [
                0x9B, 0x99, 0x3B, 0x60, 0x0F, 0x1C, 0x64, 0xF5, 0xAD, 0xC0, 0x63, 0x19, 0x2A, 0x96,
                0xC9, 0x47,
            ],
        ],
    ),
    (
        "SE050E",
        "OEF A921",
        [
            [
                0xD2, 0xDB, 0x63, 0xE7, 0xA0, 0xA5, 0xAE, 0xD7, 0x2A, 0x64, 0x60, 0xC4, 0xDF, 0xDC,
                0xAF, 0x64,
            ],
            [
                0x73, 0x8D, 0x5B, 0x79, 0x8E, 0xD2, 0x41, 0xB0, 0xB2, 0x47, 0x68, 0x51, 0x4B, 0xFB,
                0xA9, 0x5B,
            ],
            [
                0x67, 0x02, 0xDA, 0xC3, 0x09, 0x42, 0xB2, 0xC8, 0x5E, 0x7F, 0x47, 0xB4, 0x2C, 0xED,
                0x4E, 0x7F,
            ],
        ],
    ),
    (
        "SE050-DEVKIT",
        "OEF A1F4",
        [
            [
                0x35, 0xC2, 0x56, 0x45, 0x89, 0x58, 0xA3, 0x4F, 0x61, 0x36, 0x15, 0x5F, 0x82, 0x09,
                0xD6, 0xCD,
            ],
            [
                0xAF, 0x17, 0x7D, 0x5D, 0xBD, 0xF7, 0xC0, 0xD5, 0xC1, 0x0A, 0x05, 0xB9, 0xF1, 0x60,
                0x7F, 0x78,
            ],
            [
                0xA1, 0xBC, 0x84, 0x38, 0xBF, 0x77, 0x93, 0x5B, 0x36, 0x1A, 0x44, 0x25, 0xFE, 0x79,
                0xFA, 0x29,
            ],
        ],
    ),
];

/// The variant the virtual SE050 is by default: an SE050C2 (it reports applet 3.1 with X25519).
pub const DEFAULT_VIRTUAL_VARIANT: &str = "SE050C2";

impl StaticKeys {
    pub fn new(enc: [u8; 16], mac: [u8; 16], dek: [u8; 16]) -> StaticKeys {
        StaticKeys {
            enc: key(enc),
            mac: key(mac),
            dek: key(dek),
        }
    }

    /// NXP's published development keys of `variant` (e.g. "SE050C2", case ignored).
    pub fn published(variant: &str) -> Option<StaticKeys> {
        VARIANTS
            .iter()
            .find(|(name, _, _)| name.eq_ignore_ascii_case(variant))
            .map(|(_, _, [e, m, d])| StaticKeys::new(*e, *m, *d))
    }

    /// Fresh random keys (for rotation).
    pub fn random() -> StaticKeys {
        use rand_core::{OsRng, RngCore};
        let mut k = [
            Zeroizing::new([0u8; 16]),
            Zeroizing::new([0u8; 16]),
            Zeroizing::new([0u8; 16]),
        ];
        for part in &mut k {
            OsRng.fill_bytes(&mut part[..]);
        }
        let [enc, mac, dek] = k;
        StaticKeys { enc, mac, dek }
    }

    /// Reads a key file (opened once, no symlink, at most [`MAX_KEY_FILE`] bytes), refusing
    /// it when group or others have any access to it or another non-root user owns it.
    pub fn load(path: &Path) -> Result<StaticKeys, Scp03Error> {
        let shown = path.display();
        let text = crate::private_file::read(path, Access::OwnerOnly, MAX_KEY_FILE)
            .map_err(|e| Scp03Error::KeyFile(format!("the key file {e}")))?;
        StaticKeys::parse(&text.text)
            .map_err(|why| Scp03Error::KeyFile(format!("key file {shown}: {why}")))
    }

    /// Parses the text of a key file; the error names the line.
    pub fn parse(text: &str) -> Result<StaticKeys, String> {
        let mut found: [Option<Key>; 3] = [None, None, None];
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let name = words.next().unwrap_or("");
            let slot = match name {
                "ENC" => 0,
                "MAC" => 1,
                "DEK" => 2,
                // Not the word itself: the file may be one the reader of the error cannot read.
                _ => {
                    return Err(format!(
                        "line {line_no}: its first word is not a key name (ENC, MAC or DEK)"
                    ))
                }
            };
            let value = words
                .next()
                .ok_or_else(|| format!("line {line_no}: {name} has no value"))?;
            if words.next().is_some() {
                return Err(format!("line {line_no}: text after the {name} key"));
            }
            if found[slot].is_some() {
                return Err(format!("line {line_no}: {name} given twice"));
            }
            found[slot] =
                Some(parse_hex_key(value).map_err(|why| format!("line {line_no}: {name}: {why}"))?);
        }
        match found {
            [Some(enc), Some(mac), Some(dek)] => Ok(StaticKeys { enc, mac, dek }),
            [enc, mac, _] => Err(format!(
                "no {} line (the file needs ENC, MAC and DEK)",
                if enc.is_none() {
                    "ENC"
                } else if mac.is_none() {
                    "MAC"
                } else {
                    "DEK"
                }
            )),
        }
    }

    /// The file text in NXP's format.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::from(
            "# PlatformSCP03 keys of an SE050 (NXP plug-and-trust format). Keep this file private.\n",
        ));
        for (name, k) in [("ENC", &self.enc), ("MAC", &self.mac), ("DEK", &self.dek)] {
            out.push_str(name);
            out.push(' ');
            for b in k.iter() {
                let _ = write!(out, "{b:02X}");
            }
            out.push('\n');
        }
        out
    }

    /// Writes the key file atomically (a private temporary file in the same directory, synced,
    /// renamed over `path`, the directory synced): `path` holds either the old keys or the new.
    pub fn write_atomically(&self, path: &Path) -> Result<(), Scp03Error> {
        let shown = path.display();
        let fail = |what: &str, e: std::io::Error| {
            Scp03Error::KeyFile(format!("cannot write the key file {shown}: {what}: {e}"))
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.new-{}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temp)
            .map_err(|e| fail("create the temporary file", e))?;
        let written = file
            .write_all(self.to_file_text().as_bytes())
            .and_then(|_| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(fail("write the temporary file", e));
        }
        std::fs::rename(&temp, path).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            fail("rename the temporary file", e)
        })?;
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn parse_hex_key(value: &str) -> Result<Key, String> {
    if value.len() != 32 {
        return Err(format!("{} hex digits, expected 32 (AES-128)", value.len()));
    }
    let mut out = Zeroizing::new([0u8; 16]);
    for (i, pair) in value.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
        out[i] = u8::from_str_radix(text, 16).map_err(|_| "not hex".to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    const FILE: &str = "# dev keys\nENC 000102030405060708090a0b0c0d0e0f\n  MAC 101112131415161718191A1B1C1D1E1F # upper case\n\nDEK 202122232425262728292a2b2c2d2e2f\n";

    #[test]
    fn scp03_key_file_in_nxp_format_either_case_with_comments() {
        let k = StaticKeys::parse(FILE).unwrap();
        assert_eq!(k.enc[0], 0x00);
        assert_eq!(k.mac[15], 0x1F);
        assert_eq!(k.dek[1], 0x21);
        assert_eq!(StaticKeys::parse(&k.to_file_text()).unwrap(), k);
    }

    #[test]
    fn scp03_key_file_errors_name_the_problem() {
        let cases = [
            ("ENC 00\nMAC 00\nDEK 00\n", "2 hex digits"),
            ("ENC 000102030405060708090a0b0c0d0e0f\n", "no MAC line"),
            (
                "FOO 000102030405060708090a0b0c0d0e0f\n",
                "line 1: its first word is not a key name",
            ),
            (
                "ENC 000102030405060708090a0b0c0d0e0f\nENC 000102030405060708090a0b0c0d0e0f\n",
                "ENC given twice",
            ),
            ("ENC 0001020304050607080g0a0b0c0d0e0f\n", "not hex"),
        ];
        for (text, expected) in cases {
            let e = StaticKeys::parse(text).unwrap_err();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }

    #[test]
    fn scp03_key_file_errors_never_show_the_files_words() {
        // A privileged reader's error must not reveal a file its caller cannot read (the first
        // word of /etc/shadow, say), nor digits of a key.
        for (text, secret) in [
            ("root:$6$salt:19000:0:99999:7:::\n", "root"),
            ("ENC 0001020304050607080g0a0b0c0d0e0f\n", "0g"),
            ("hunter2 is my password\n", "hunter2"),
        ] {
            let e = StaticKeys::parse(text).unwrap_err();
            assert!(!e.contains(secret), "{text:?}: {e}");
        }
    }

    #[test]
    fn scp03_key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.txt");
        std::fs::write(&path, FILE).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = StaticKeys::load(&path).unwrap_err().to_string();
            assert!(
                e.contains("secure channel")
                    && e.contains("readable or writable by group or others")
                    && e.contains(&format!("(mode 0{mode:o})"))
                    && e.contains(&path.display().to_string()),
                "{mode:o}: {e}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        StaticKeys::load(&path).unwrap();
    }

    #[test]
    fn scp03_key_file_is_opened_once_without_following_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("keys.txt");
        std::fs::write(&private, FILE).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        let e = StaticKeys::load(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        // A device or FIFO is no key file, and a huge file is not read to its end.
        let e = StaticKeys::load(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let long = dir.path().join("long.txt");
        let mut text = FILE.to_string();
        text.push_str(&"#".repeat(MAX_KEY_FILE as usize));
        std::fs::write(&long, text).unwrap();
        std::fs::set_permissions(&long, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = StaticKeys::load(&long).unwrap_err().to_string();
        assert!(e.contains("longer than"), "{e}");
    }

    #[test]
    fn scp03_key_file_of_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.txt");
        std::fs::write(&path, FILE).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&path, Some(4242), None).expect("the tests run as root");
        let e = StaticKeys::load(&path).unwrap_err().to_string();
        assert!(e.contains("owned by uid 4242"), "{e}");
    }

    #[test]
    fn scp03_key_file_written_atomically_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.txt");
        let keys = StaticKeys::random();
        keys.write_atomically(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(StaticKeys::load(&path).unwrap(), keys);
        let other = StaticKeys::random();
        other.write_atomically(&path).unwrap();
        assert_eq!(StaticKeys::load(&path).unwrap(), other);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temporary file left"
        );
    }

    #[test]
    fn scp03_published_variant_keys() {
        // Spot checks against ex_sss_tp_scp03_keys.h (SE050C2 ENC starts BD 1D E2 0A).
        assert_eq!(
            StaticKeys::published("se050c2").unwrap().enc[..4],
            [0xBD, 0x1D, 0xE2, 0x0A]
        );
        assert_eq!(StaticKeys::published("SE050E").unwrap().dek[15], 0x7F);
        assert!(StaticKeys::published("SE999").is_none());
        assert!(StaticKeys::published(DEFAULT_VIRTUAL_VARIANT).is_some());
    }
}
