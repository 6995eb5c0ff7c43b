//! Shared by the PKCS#11 end-to-end tests: where the built module is, a fresh virtual chip per
//! test, and running a test body in its own process.
//!
//! The module is a process-global (as every PKCS#11 module is), and tests run as threads of
//! one process; so each test that initialises the module runs its body in a child process of
//! the test binary (`cargo test` runs it with `--exact NAME`), with its own configuration and
//! chip state. Nothing is shared between tests except the built .so.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variables telling a re-executed test binary which test, and which part of it
/// (its role), to run.
const CHILD_ENV: &str = "PKCS11_E2E_CHILD";
const ROLE_ENV: &str = "PKCS11_E2E_ROLE";

/// The built libpkcs11_se050.so: next to the test executable (target/<profile>/deps) or one
/// directory up (target/<profile>).
pub fn module_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("executable directory");
    for dir in [deps, deps.parent().unwrap_or(deps)] {
        let candidate = dir.join("libpkcs11_se050.so");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!(
        "libpkcs11_se050.so not found next to {} (is pkcs11-se050 built as a cdylib?)",
        exe.display()
    );
}

/// A virtual chip of its own: a temporary directory with a config file and the state file.
pub struct TestChip {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub state: PathBuf,
}

impl TestChip {
    /// `extra` is appended to the config (e.g. `ec_point = "raw"`).
    pub fn new(extra: &str) -> TestChip {
        let dir = tempfile::tempdir().expect("temporary directory");
        let state = dir.path().join("se050.state");
        let conf = dir.path().join("pkcs11-se050.toml");
        std::fs::write(
            &conf,
            format!(
                "transport = \"virtual\"\nvirtual_state = \"{}\"\ntoken_label = \"e2e\"\n{extra}\n",
                state.display()
            ),
        )
        .expect("write config");
        TestChip { dir, conf, state }
    }
}

/// Runs `body` in a fresh process of this test binary with its own chip (PKCS11_SE050_CONF set
/// to it). In that child the body runs directly. `name` must be the test function's name.
pub fn isolated(name: &str, extra_config: &str, body: impl FnOnce(&Path, &Path)) {
    if role(name).is_some() {
        let conf = PathBuf::from(std::env::var("PKCS11_SE050_CONF").expect("config set by parent"));
        let state = PathBuf::from(std::env::var("PKCS11_E2E_STATE").expect("state set by parent"));
        body(&conf, &state);
        return;
    }
    let chip = TestChip::new(extra_config);
    run_role(name, "body", &chip, &[]);
}

/// In a child started by `run_role` for test `name`: the role it was given. None in the parent.
pub fn role(name: &str) -> Option<String> {
    if std::env::var(CHILD_ENV).as_deref() != Ok(name) {
        return None;
    }
    Some(std::env::var(ROLE_ENV).unwrap_or_else(|_| "body".into()))
}

/// Runs test `name` of this binary in a child process with `role`, against `chip`, and asserts
/// that it passed.
pub fn run_role(name: &str, role: &str, chip: &TestChip, env: &[(&str, &str)]) {
    let output = role_command(name, role, chip, env)
        .output()
        .expect("run test child");
    check_child(name, output);
}

/// Set by scripts/test-platforms to cargo's runner for another architecture's build (e.g.
/// `qemu-arm -L /`): the child runs under the same emulator as its parent (no binfmt_misc).
const RUNNER_ENV: &str = "PKCS11_E2E_RUNNER";

pub fn role_command(name: &str, role: &str, chip: &TestChip, env: &[(&str, &str)]) -> Command {
    let exe = std::env::current_exe().expect("test executable path");
    let runner = std::env::var(RUNNER_ENV).unwrap_or_default();
    let mut runner = runner.split_whitespace();
    let mut cmd = match runner.next() {
        Some(emulator) => {
            let mut cmd = Command::new(emulator);
            cmd.args(runner).arg(exe);
            cmd
        }
        None => Command::new(exe),
    };
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .env(ROLE_ENV, role)
        .env("PKCS11_SE050_CONF", &chip.conf)
        .env("PKCS11_E2E_STATE", &chip.state);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

pub fn check_child(name: &str, output: std::process::Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown with --nocapture (e.g. the timing figures a child prints).
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child test {name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
}
