//! The RFC 7512 `pkcs11:` URI parser: a URI or a clear error for any text; a parsed URI
//! prints as a URI that parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wg_pkcs11::uri::Pkcs11Uri;

fuzz_target!(|text: &str| {
    match Pkcs11Uri::parse(text) {
        Ok(uri) => {
            let printed = uri.to_string();
            let again = Pkcs11Uri::parse(&printed).unwrap_or_else(|e| {
                panic!("`{printed}` (printed from `{text}`) does not parse: {e}")
            });
            assert!(
                again == uri,
                "`{text}` printed as `{printed}` parses differently"
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
