//! The T=1 frame decoder: any bytes decode to a frame or a clear error, and a decoded
//! frame encodes back to exactly the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pkcs11_se050::t1::Frame;

fuzz_target!(|data: &[u8]| {
    match Frame::decode(data) {
        Ok(frame) => assert_eq!(&frame.encode()[..], data, "decode/encode round trip"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
