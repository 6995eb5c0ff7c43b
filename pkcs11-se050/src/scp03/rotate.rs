//! PUT KEY: replacing the chip's PlatformSCP03 key set (GP Card Spec v2.3 11.8), in the form
//! NXP's PlatformSCP rotation example sends it (plug-and-trust / MCUXpresso SDK,
//! `rotate_platformscp_keys`: `80 D8 KVN 81`, new KVN, then for ENC, MAC, DEK each
//! `88 11 10 <key encrypted under the current DEK> 03 <key check value>`; the chip answers the
//! KVN and the three check values).
//!
//! It runs inside the secure channel (the transport wraps it: C-MAC and encrypted data on top of
//! the DEK's own encryption). The new keys apply to the next session the chip opens.

use super::crypto;
use super::keys::StaticKeys;
use super::Scp03Error;

/// Key type AES (GP Card Spec table 11-16).
pub const KEY_TYPE_AES: u8 = 0x88;
/// P2: key identifier 1, several keys in the command.
pub const P2_MULTIPLE_KEYS: u8 = 0x81;
pub const INS_PUT_KEY: u8 = 0xD8;

/// The plain PUT KEY command replacing key set `kvn` by `new` (same version), the keys
/// encrypted under `current_dek`; and the response the chip must give.
pub fn put_key_command(kvn: u8, current_dek: &[u8; 16], new: &StaticKeys) -> (Vec<u8>, Vec<u8>) {
    let mut data = vec![kvn];
    let mut expected = vec![kvn];
    for k in [&new.enc, &new.mac, &new.dek] {
        let kcv = crypto::key_check_value(k);
        data.extend_from_slice(&[KEY_TYPE_AES, 0x11, 0x10]);
        data.extend_from_slice(&crypto::wrap_key(current_dek, k));
        data.push(0x03);
        data.extend_from_slice(&kcv);
        expected.extend_from_slice(&kcv);
    }
    let mut apdu = vec![0x80, INS_PUT_KEY, kvn, P2_MULTIPLE_KEYS, data.len() as u8];
    apdu.extend_from_slice(&data);
    apdu.push(0x00);
    (apdu, expected)
}

/// Checks the chip's answer to PUT KEY (data || SW).
pub fn check_put_key_response(response: &[u8], expected: &[u8]) -> Result<(), Scp03Error> {
    let n = response.len();
    if n < 2 || response[n - 2..] != [0x90, 0x00] {
        let sw = if n >= 2 {
            u16::from_be_bytes([response[n - 2], response[n - 1]])
        } else {
            0
        };
        return Err(Scp03Error::HandshakeRefused {
            command: "PUT KEY",
            sw,
        });
    }
    if response[..n - 2] != *expected {
        return Err(Scp03Error::Protocol(
            "PUT KEY: the chip's key check values differ from the new keys'".into(),
        ));
    }
    Ok(())
}

/// Replaces the chip's key set `kvn` by `new` through `channel`, which must be a PlatformSCP03
/// channel opened with the current keys (`current_dek` is their DEK). Returns once the chip has
/// accepted the new keys and answered their check values.
pub fn put_keys(
    channel: &mut dyn crate::t1::ApduTransport,
    kvn: u8,
    current_dek: &[u8; 16],
    new: &StaticKeys,
) -> Result<(), crate::t1::LinkError> {
    let (command, expected) = put_key_command(kvn, current_dek, new);
    let response = channel.transceive(&command)?;
    check_put_key_response(&response, &expected).map_err(crate::t1::LinkError::SecureChannel)
}

/// The chip's side: the new key version and keys in a PUT KEY data field, decrypted with
/// `dek`; the error is the status word to answer.
pub fn parse_put_key(data: &[u8], dek: &[u8; 16]) -> Result<(u8, StaticKeys, Vec<u8>), u16> {
    const ENTRY: usize = 3 + 16 + 1 + 3;
    if data.len() != 1 + 3 * ENTRY {
        return Err(0x6700);
    }
    let kvn = data[0];
    let mut keys = Vec::new();
    let mut answer = vec![kvn];
    for entry in data[1..].chunks(ENTRY) {
        if entry[..3] != [KEY_TYPE_AES, 0x11, 0x10] || entry[19] != 0x03 {
            return Err(0x6A80);
        }
        let wrapped: [u8; 16] = entry[3..19].try_into().expect("16 bytes");
        let key = crypto::unwrap_key(dek, &wrapped);
        let kcv = crypto::key_check_value(&key);
        if kcv[..] != entry[20..23] {
            return Err(0x6A80);
        }
        answer.extend_from_slice(&kcv);
        keys.push(key);
    }
    let keys = StaticKeys {
        enc: keys[0].clone(),
        mac: keys[1].clone(),
        dek: keys[2].clone(),
    };
    Ok((kvn, keys, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scp03_put_key_round_trip_and_tamper() {
        let dek = [7u8; 16];
        let new = StaticKeys::random();
        let (apdu, expected) = put_key_command(0x0B, &dek, &new);
        assert_eq!(apdu[..4], [0x80, 0xD8, 0x0B, 0x81]);
        assert_eq!(apdu[4] as usize, apdu.len() - 6);
        // The new keys never appear in clear in the command.
        assert!(!apdu
            .windows(16)
            .any(|w| w == &new.enc[..] || w == &new.dek[..]));
        let (kvn, parsed, answer) = parse_put_key(&apdu[5..apdu.len() - 1], &dek).unwrap();
        assert_eq!((kvn, &parsed), (0x0B, &new));
        assert_eq!(answer, expected);
        let mut ok = answer.clone();
        ok.extend_from_slice(&[0x90, 0x00]);
        check_put_key_response(&ok, &expected).unwrap();
        // Under another DEK the check values do not match.
        assert_eq!(
            parse_put_key(&apdu[5..apdu.len() - 1], &[8u8; 16]).unwrap_err(),
            0x6A80
        );
        let mut wrong = ok.clone();
        wrong[1] ^= 1;
        assert!(check_put_key_response(&wrong, &expected).is_err());
        assert!(check_put_key_response(&[0x69, 0x82], &expected)
            .unwrap_err()
            .to_string()
            .contains("6982"));
    }
}
