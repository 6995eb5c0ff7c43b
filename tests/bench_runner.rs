//! `bench/run` still works: its options, every module it loads, the report writer and the
//! matplotlib charts on the committed results, and a smoke run of its cheapest measurement
//! (part 3's C_Sign, a fraction of a second) against the module and wg-bench of this build.
//! No speed is asserted: only that the runner runs and writes its table and its chart.
//! The checks themselves are bench/test_bench.py (Python's unittest); this test runs them.

use std::path::Path;
use std::process::Command;

use e2e_tests::{require_root, target_profile_dir};

#[test]
fn bench_runner_writes_its_report_and_charts() {
    require_root();
    let bins = target_profile_dir();
    for name in ["wg-bench", "libpkcs11_se050.so"] {
        assert!(
            bins.join(name).is_file(),
            "{} is missing: run `cargo build --workspace` (with the same profile as the tests) first",
            bins.join(name).display()
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/test_bench.py");
    // Debian's interpreter: python3-matplotlib is installed for it (scripts/install-deps).
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .env("WG_BENCH_BIN_DIR", &bins)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("cannot run /usr/bin/python3 (scripts/install-deps installs python3)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "bench/test_bench.py failed:\n{said}");
    // unittest prints "skipped" for a check that did not run: every one must have run.
    assert!(
        !said.contains("skipped"),
        "a check of bench/test_bench.py was skipped:\n{said}"
    );
    assert!(
        said.contains("test_part_3_sign"),
        "the smoke run did not run:\n{said}"
    );
}
