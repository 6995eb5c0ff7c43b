//! The wg-quick config parser: any text gives a config or an error naming the file and the
//! problem. Parsing is pure (no DNS lookup), so every input can be tried.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wg_pkcs11::config::Config;

fuzz_target!(|text: &str| {
    match Config::parse(Path::new("wg0.conf"), text) {
        Ok(config) => {
            for peer in &config.peers {
                if let Some(endpoint) = &peer.endpoint {
                    // A name is kept as written; an address is known without a lookup.
                    assert_eq!(endpoint.is_name(), endpoint.address().is_none());
                }
            }
        }
        Err(e) => assert!(e.to_string().starts_with("wg0.conf"), "{e}"),
    }
});
