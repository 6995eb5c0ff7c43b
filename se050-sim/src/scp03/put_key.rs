//! PUT KEY (GP Card Specification v2.3 11.8) replacing the PlatformSCP03 key set, the chip's
//! side, in the form NXP's PlatformSCP rotation example sends it (Plug & Trust
//! `se05x_RotatePlatformScp03Keys`: `80 D8 KVN 81`): the new KVN, then for ENC, MAC and DEK each
//! `88` (key type AES, table 11-16) `11` (17 bytes follow) `10` (key length 16) <the key
//! encrypted under the current static DEK, AES-ECB> `03` <its key check value>. The answer is the
//! new KVN and the three check values.

use super::crypto;
use super::keys::CardKeys;
use zeroize::Zeroizing;

pub const INS_PUT_KEY: u8 = 0xD8;
/// P2: key identifier 1, more than one key in the command.
pub const P2_MULTIPLE_KEYS: u8 = 0x81;
const KEY_TYPE_AES: u8 = 0x88;
const ENTRY_LEN: usize = 3 + 16 + 1 + 3;

/// The new KVN, keys and the answer's data; the error is the status word to answer.
pub fn parse(data: &[u8], current_dek: &[u8; 16]) -> Result<(u8, CardKeys, Vec<u8>), u16> {
    let [kvn, ref entries @ ..] = *data else {
        return Err(0x6700);
    };
    if entries.len() != 3 * ENTRY_LEN {
        return Err(0x6700);
    }
    let mut keys: Vec<Zeroizing<[u8; 16]>> = Vec::with_capacity(3);
    let mut answer = vec![kvn];
    for entry in entries.chunks(ENTRY_LEN) {
        if entry[..3] != [KEY_TYPE_AES, 0x11, 0x10] || entry[19] != 0x03 {
            return Err(0x6A80);
        }
        let encrypted: [u8; 16] = entry[3..19].try_into().expect("16 bytes");
        let key = crypto::decrypt_block(current_dek, &encrypted);
        let check = crypto::check_value(&key);
        if !crypto::same(&check, &entry[20..23]) {
            return Err(0x6A80);
        }
        answer.extend_from_slice(&check);
        keys.push(key);
    }
    let [enc, mac, dek]: [Zeroizing<[u8; 16]>; 3] = keys.try_into().expect("three entries");
    Ok((kvn, CardKeys { enc, mac, dek }, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_built_by_hand_is_taken_and_a_wrong_dek_refused() {
        let dek = [0x55u8; 16];
        let new = [[0x11u8; 16], [0x22; 16], [0x33; 16]];
        let mut data = vec![0x0C];
        for key in &new {
            data.extend_from_slice(&[0x88, 0x11, 0x10]);
            data.extend_from_slice(&crypto::encrypt_block(&dek, key));
            data.push(0x03);
            data.extend_from_slice(&crypto::check_value(key));
        }
        let (kvn, keys, answer) = parse(&data, &dek).unwrap();
        assert_eq!(kvn, 0x0C);
        assert_eq!(keys, CardKeys::new(new[0], new[1], new[2]));
        assert_eq!(answer.len(), 1 + 9);
        assert_eq!(answer[1..4], crypto::check_value(&new[0]));
        assert_eq!(parse(&data, &[0x56; 16]).err(), Some(0x6A80));
        assert_eq!(parse(&data[..data.len() - 1], &dek).err(), Some(0x6700));
    }
}
