//! The real libpkcs11_se050.so of this build on a virtual SE050 private to the test process.
//!
//! Shared by the integration tests and, through `#[path]`, by the unit tests of
//! `src/key/token.rs`: a `#[cfg(test)]` item is invisible to integration tests, and a public
//! test-support module would ship test code (and tempfile) in the library.

use std::path::PathBuf;
use std::sync::OnceLock;

/// The module (target/<profile>/libpkcs11_se050.so, or `$WG_PKCS11_TEST_MODULE`), configured for
/// a virtual chip whose every operation takes `latency_ms`. A PKCS#11 module reads its
/// configuration once per process, so every test of the process shares this chip: the including
/// module says its latency in `virtual_se050_latency_ms()`, and every call must ask for that.
pub fn virtual_se050_module(latency_ms: u64) -> PathBuf {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    let configured_ms = *CONFIGURED_MS
        .get()
        .expect("the virtual chip was configured before main");
    assert_eq!(
        configured_ms, latency_ms,
        "the module of this process is configured for another latency"
    );
    MODULE
        .get_or_init(|| {
            let module = match std::env::var_os("WG_PKCS11_TEST_MODULE") {
                Some(path) => PathBuf::from(path),
                None => {
                    let exe = std::env::current_exe().unwrap();
                    // target/<profile>/deps/<test> -> target/<profile>/libpkcs11_se050.so
                    exe.parent()
                        .unwrap()
                        .parent()
                        .unwrap()
                        .join("libpkcs11_se050.so")
                }
            };
            assert!(
                module.is_file(),
                "{} is missing: build it first (cargo build -p pkcs11-se050)",
                module.display()
            );
            module
        })
        .clone()
}

static CONFIGURED_MS: OnceLock<u64> = OnceLock::new();

/// Runs before main, while the process has its one thread: `$PKCS11_SE050_CONF` set later, while
/// other test threads run, races with their reads of the environment (setenv against getenv is
/// a data race in glibc, and the module's own std has a lock of its own).
#[used]
#[link_section = ".init_array"]
static CONFIGURE_BEFORE_MAIN: extern "C" fn() = configure_before_main;

extern "C" fn configure_before_main() {
    let latency_ms = super::virtual_se050_latency_ms();
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
    CONFIGURED_MS.set(latency_ms).unwrap();
}
