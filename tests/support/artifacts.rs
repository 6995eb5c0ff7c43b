//! Where the artefacts under test live: next to the test executable in `target/<profile>/`.
//!
//! The tests never build anything themselves: `cargo test --workspace` builds the cdylib and the
//! daemon binary of the workspace members before it runs the tests, and `scripts/test` builds all
//! targets first. A missing file therefore means a partial build, and the message says so.

use std::path::{Path, PathBuf};

/// `target/<profile>/`, found from the running test executable (`target/<profile>/deps/NAME-HASH`).
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot find the running test executable");
    let deps = exe
        .parent()
        .expect("test executable has no parent directory");
    if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps/ has no parent").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

fn built_artefact(name: &str) -> PathBuf {
    let path = target_profile_dir().join(name);
    assert_built(&path);
    path
}

fn assert_built(path: &Path) {
    if !path.is_file() {
        panic!(
            "{} is missing: run `cargo build --workspace` (with the same profile as the tests, \
             e.g. --release) first, or use scripts/test",
            path.display()
        );
    }
}

/// The PKCS#11 module under test, `libpkcs11_se050.so`.
pub fn module_path() -> PathBuf {
    built_artefact("libpkcs11_se050.so")
}

/// The daemon under test, `wg-pkcs11`.
pub fn wg_pkcs11_binary() -> PathBuf {
    built_artefact("wg-pkcs11")
}
