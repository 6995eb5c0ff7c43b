//! The real libpkcs11_se050.so of this build on a virtual SE050 private to the test process.
//!
//! Shared by the integration tests and, through `#[path]`, by the unit tests of
//! `src/key/token.rs`: a `#[cfg(test)]` item is invisible to integration tests, and a public
//! test-support module would ship test code (and tempfile) in the library.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The module (target/<profile>/libpkcs11_se050.so, or `$WG_PKCS11_TEST_MODULE`), configured on
/// first call for a virtual chip whose every operation takes `latency_ms`. A PKCS#11 module reads
/// its configuration once per process, so every test of the process shares this chip and must
/// ask for the same latency.
pub fn virtual_se050_module(latency_ms: u64) -> PathBuf {
    static MODULE: OnceLock<(u64, PathBuf)> = OnceLock::new();
    let (configured_ms, module) = MODULE.get_or_init(|| {
        let module = match std::env::var_os("WG_PKCS11_TEST_MODULE") {
            Some(path) => PathBuf::from(path),
            None => {
                let exe = std::env::current_exe().unwrap();
                // target/<profile>/deps/<test> -> target/<profile>/libpkcs11_se050.so
                exe.parent().unwrap().parent().unwrap().join("libpkcs11_se050.so")
            }
        };
        assert!(
            module.is_file(),
            "{} is missing: build it first (cargo build -p pkcs11-se050)",
            module.display()
        );
        let dir = tempfile::tempdir().unwrap().keep();
        let conf = dir.join("se050.toml");
        std::fs::write(
            &conf,
            format!(
                "transport = \"virtual\"\nvirtual_state = \"{}\"\nvirtual_latency_ms = {latency_ms}\n",
                dir.join("state").display()
            ),
        )
        .unwrap();
        std::env::set_var("PKCS11_SE050_CONF", &conf);
        (latency_ms, module)
    });
    assert_eq!(
        *configured_ms, latency_ms,
        "the module of this process is already configured for another latency"
    );
    module.clone()
}
