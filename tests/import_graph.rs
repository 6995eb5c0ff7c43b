//! The layering rule of ARCHITECTURE.md as a test: no two files of a crate import each other,
//! directly or around a loop. `scripts/import-cycles` finds the cycles; a failure names them
//! (`cycle: a.rs b.rs`), and `scripts/import-cycles SRC_DIR --edges FILE` shows what one file
//! imports. A cycle means the files are one concept, or a third, shared piece is missing.

use std::path::Path;
use std::process::Command;

/// Runs scripts/import-cycles on one crate's sources; its output when it finds a cycle.
fn cycles_in(src: &str) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/import-cycles"))
        .arg(root.join(src))
        .output()
        .unwrap_or_else(|e| panic!("running scripts/import-cycles (needs python3): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) if text.contains("no cycles") => None,
        Some(1) if text.contains("cycle: ") => Some(text),
        _ => panic!(
            "scripts/import-cycles {src} failed: {:?}\n{text}{errors}",
            out.status
        ),
    }
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let found: Vec<String> = ["wg-pkcs11/src", "pkcs11-se050/src", "se050-sim/src"]
        .into_iter()
        .filter_map(|src| cycles_in(src).map(|text| format!("{src}:\n{text}")))
        .collect();
    assert!(
        found.is_empty(),
        "import cycles (make the dependency run one way):\n{}",
        found.join("\n")
    );
}
