//! The APDU, TLV and status-word parsers: any bytes give a value or a clear error, and what
//! parses encodes to something that parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pkcs11_se050::apdu::{tlv, CommandApdu, Refusal, ResponseApdu, StatusWord, Tlvs};

fuzz_target!(|data: &[u8]| {
    match CommandApdu::parse(data) {
        Ok(command) => {
            let again = CommandApdu::parse(&command.encode()).expect("an encoded command parses");
            assert_eq!(again, command, "command round trip");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match ResponseApdu::parse(data) {
        Ok(response) => assert_eq!(&response.encode()[..], data, "response round trip"),
        Err(_) => assert!(data.len() < 2),
    }
    match Tlvs::parse(data) {
        Ok(tlvs) => {
            let items: Vec<(u8, Vec<u8>)> = tlvs.iter().map(|(t, v)| (t, v.to_vec())).collect();
            let mut encoded = Vec::new();
            for (tag, value) in &items {
                tlv::push(&mut encoded, *tag, value);
                assert_eq!(tlvs.get(*tag).is_some(), true);
            }
            let again: Vec<(u8, Vec<u8>)> = Tlvs::parse(&encoded)
                .expect("encoded TLVs parse")
                .iter()
                .map(|(t, v)| (t, v.to_vec()))
                .collect();
            assert_eq!(again, items, "TLV round trip");
            if let Some(&(tag, _)) = items.first() {
                let _ = tlvs.require_u16(tag);
                let _ = tlvs.require_u32(tag);
                let _ = tlvs.require_array::<32>(tag);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if data.len() >= 2 {
        let sw = StatusWord::from_bytes(data[0], data[1]);
        assert_eq!(sw.to_bytes(), [data[0], data[1]]);
        let refusal = Refusal::from_status(sw);
        assert!(!refusal.describe().is_empty());
        let _ = pkcs11_se050::apdu::status::check(|| "fuzz".into(), sw)
            .map_err(|e| assert!(!e.to_string().is_empty()));
    }
});
