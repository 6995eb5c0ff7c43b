//! The attestation evidence parser and verifier (wg-pkcs11/src/attestation/): any bytes give
//! evidence or a clear refusal, never a panic; parsed evidence verifies or is refused with a
//! reason (no root configured here, so nothing is ever admitted), and prints as JSON that
//! parses back to the same evidence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wg_pkcs11::attestation::{roots, token_blob, verify, Evidence, VerifyOptions};

fuzz_target!(|bytes: &[u8]| {
    let _ = token_blob::parse(bytes);
    match Evidence::parse(bytes) {
        Ok(evidence) => {
            let again = Evidence::parse(evidence.to_json().as_bytes()).expect("printed evidence parses");
            assert!(again == evidence, "evidence changed through its JSON");
            let intermediates = roots::nxp_intermediates();
            let options = VerifyOptions {
                roots: &[],
                intermediates: &intermediates,
                now_unix: 1_800_000_000,
                nonce: [0; 16],
            };
            let refusal = verify(&evidence, &options).expect_err("no root: nothing admitted");
            assert!(!refusal.to_string().is_empty());
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
