//! OpenSC's conformance suite p11test (issue 22: it tests signing and derivation with EC keys)
//! against the module on a virtual chip holding a user PIN and P-256, Ed25519 and X25519 pairs.
//!
//! p11test is not packaged: it is built from Debian's OpenSC source package (the version of the
//! source list's candidate, 0.23.0 on Debian 12), fetched with `apt-get source` through a
//! private apt configuration (a deb-src list and package lists inside the cache: the host's apt
//! configuration is neither read for sources nor changed), and built with OpenSC's autotools
//! (only src/tests/p11test). The result is cached outside the clone, as the kernel package is
//! (tests/support/kernel_vm/package.rs):
//!
//!   /var/cache/wg-pkcs11-tests/opensc-p11test/p11test   (WG_PKCS11_TEST_CACHE: another root)
//!
//! No fetched code goes into the repository. Build dependencies: scripts/install-deps.
//!
//! The test fails on every failure p11test reports, except the two listed in KNOWN, each
//! recognised by its exact message so that any other failure of the same check fails too.

#[path = "pkcs11_harness.rs"]
mod harness;

use harness::{module_path, TestChip};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DEFAULT_CACHE: &str = "/var/cache/wg-pkcs11-tests";
const ENTRY: &str = "opensc-p11test";

/// Failures p11test 0.23 reports that are not the module's fault, with the line that proves
/// which failure it is.
const KNOWN: &[(&str, &str)] = &[
    // p11test_case_interface.c:81 asserts that the second interface of C_GetInterfaceList is
    // version 2.20: OpenSC's own module's number. This module's 2.x list is version 2.40
    // (0x28), the version of the function list it implements.
    ("interface_test", "0x28 != 0x14"),
    // ec_sign_size_test signs EdDSA messages of 128..=896 bytes; PureEdDSA sends the whole
    // message to the chip in one APDU, which holds at most 876 bytes of it (se050-sim/
    // FORMATS.md): 896 is refused with CKR_DATA_LEN_RANGE (0x21) before the chip.
    ("ec_sign_size_test", "C_Sign: rv = 0x00000021"),
];

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The p11test binary: from the cache, or fetched and built into it first.
fn p11test() -> PathBuf {
    let cache = std::env::var_os("WG_PKCS11_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE));
    let entry = cache.join(ENTRY);
    let binary = entry.join("p11test");
    if !binary.exists() {
        build_into(&cache, &entry);
    }
    binary
}

/// Fetches the source package and builds p11test in a scratch directory inside the cache, then
/// renames the finished entry into place: an interrupted build leaves no half-filled entry.
fn build_into(cache: &Path, entry: &Path) {
    std::fs::create_dir_all(cache)
        .unwrap_or_else(|e| panic!("cannot create the cache {}: {e}", cache.display()));
    let scratch = tempfile::Builder::new()
        .prefix(".opensc-p11test-")
        .tempdir_in(cache)
        .expect("scratch directory in the cache");
    let dir = scratch.path();
    let apt = dir.join("apt");
    std::fs::create_dir_all(apt.join("sources.list.d")).unwrap();
    std::fs::create_dir_all(apt.join("lists/partial")).unwrap();
    std::fs::write(
        apt.join("sources.list.d/bookworm-src.sources"),
        // The main archive only, as the host's debian.sources has it (p11test is the same in
        // the security updates, which change the library).
        "Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\
         Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )
    .unwrap();
    let apt_get = || {
        let mut command = Command::new("apt-get");
        command
            .current_dir(dir)
            .arg("-q")
            // The scratch directory is root's (0700): apt's _apt user could not write there.
            .arg("-o")
            .arg("APT::Sandbox::User=root")
            .arg("-o")
            .arg("Dir::Etc::SourceList=/dev/null")
            .arg("-o")
            .arg(format!(
                "Dir::Etc::SourceParts={}",
                apt.join("sources.list.d").display()
            ))
            .arg("-o")
            .arg(format!("Dir::State::Lists={}", apt.join("lists").display()));
        command
    };
    run(apt_get().arg("update"));
    run(apt_get().args(["source", "--download-only", "opensc"]));
    let dsc = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "dsc"))
        .expect("opensc's .dsc downloaded");
    let source = dir.join("opensc");
    run(Command::new("dpkg-source").arg("-x").arg(&dsc).arg(&source));
    run(Command::new("./bootstrap").current_dir(&source));
    // Only what p11test needs: OpenSSL and cmocka; no reader layer (one must be named:
    // CT-API needs nothing), no docs.
    run(Command::new("./configure").current_dir(&source).args([
        "--disable-pcsc",
        "--enable-ctapi",
        "--disable-readline",
        "--disable-zlib",
        "--disable-doc",
        "--disable-man",
        "--disable-notify",
        "--disable-sm",
        "--enable-cmocka",
        "--disable-shared",
    ]));
    run(Command::new("make")
        .current_dir(&source)
        .args(["-C", "src/tests/p11test", "p11test"]));
    let built = dir.join("entry");
    std::fs::create_dir(&built).unwrap();
    std::fs::copy(
        source.join("src/tests/p11test/p11test"),
        built.join("p11test"),
    )
    .unwrap();
    std::fs::write(
        built.join("SOURCE"),
        dsc.file_name().unwrap().to_string_lossy().as_bytes(),
    )
    .unwrap();
    // Another run may have finished first: its entry is as good as ours.
    if std::fs::rename(&built, entry).is_err() && !entry.join("p11test").exists() {
        panic!("cannot move the built p11test to {}", entry.display());
    }
}

/// The names cmocka lists after "[  FAILED  ] N test(s), listed below:".
fn failed_tests(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("[  FAILED  ] "))
        .filter(|rest| !rest.contains("test(s)"))
        .map(|name| name.trim().to_string())
        .collect()
}

#[test]
fn opensc_p11test_passes_with_p256_ed25519_and_x25519_keys() {
    let p11test = p11test();
    let chip = TestChip::new("");
    let tool = |args: &[&str]| {
        run(Command::new("pkcs11-tool")
            .arg("--module")
            .arg(module_path())
            .args(args)
            .env("PKCS11_SE050_CONF", &chip.conf));
    };
    tool(&["--init-token", "--so-pin", "87654321", "--label", "e2e"]);
    tool(&[
        "--init-pin",
        "--login",
        "--login-type",
        "so",
        "--so-pin",
        "87654321",
        "--pin",
        "123456",
    ]);
    let user = ["--login", "--pin", "123456", "--keypairgen", "--key-type"];
    tool(
        &[
            &user[..],
            &["EC:prime256v1", "--id", "10", "--label", "p256"],
        ]
        .concat(),
    );
    tool(
        &[
            &user[..],
            &[
                "EC:edwards25519",
                "--usage-sign",
                "--id",
                "11",
                "--label",
                "ed",
            ],
        ]
        .concat(),
    );
    tool(
        &[
            &user[..],
            &[
                "EC:curve25519",
                "--usage-derive",
                "--id",
                "12",
                "--label",
                "x",
            ],
        ]
        .concat(),
    );

    let json = chip.dir.path().join("p11test.json");
    let output = Command::new(&p11test)
        .arg("-m")
        .arg(module_path())
        .args(["-p", "123456", "-o"])
        .arg(&json)
        .env("PKCS11_SE050_CONF", &chip.conf)
        .output()
        .expect("run p11test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let all = format!("{stdout}\n{stderr}");
    println!("{all}");
    assert!(
        stdout.contains("[==========] 11 test(s) run."),
        "p11test did not run its 11 tests:\n{all}"
    );
    let failed = failed_tests(&stdout);
    let unexpected: Vec<&String> = failed
        .iter()
        .filter(|name| {
            !KNOWN
                .iter()
                .any(|(known, proof)| known == name && all.contains(proof))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "p11test failures {unexpected:?}:\n{all}"
    );
    // The exit status counts the failures: only the known ones.
    assert_eq!(
        output.status.code(),
        Some(failed.len() as i32),
        "p11test's exit status:\n{all}"
    );
    // The EC checks ran and passed (not skipped for want of keys or mechanisms).
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).expect("p11test's JSON log");
    for check in [
        "supported_mechanisms_test",
        "readonly_tests",
        "multipart_tests",
        "usage_test",
        "derive_tests",
    ] {
        let result = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["test_id"] == check)
            .map(|r| r["result"].clone());
        assert_eq!(
            result,
            Some("pass".into()),
            "{check} in p11test's JSON:\n{all}"
        );
    }
}
