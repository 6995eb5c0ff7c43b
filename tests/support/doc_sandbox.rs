//! Runs a guide's `<!-- docs: run -->` blocks, in file order, as one script in a sandbox that
//! cannot change the host (docs/testing.md, "Docs that run"):
//!
//! - new mount, network and PID namespaces (`unshare`): only a loopback interface, and every
//!   process the guide starts (a detached daemon too) dies with the script;
//! - `/etc`, `/usr` and `/var` are overlays whose writes land in a temporary directory, `/run`
//!   is a fresh tmpfs, the repository is an overlay too (a guide may write files in it) and `HOME` is a temporary directory;
//! - the freshly built `libpkcs11_se050.so` installed where the Debian package puts it and
//!   registered with p11-kit as `pkcs11-se050` (and no other module registered), its
//!   configuration `/etc/pkcs11-se050/pkcs11-se050.toml` the virtual SE050 (30 ms per operation,
//!   state in `/var/lib/pkcs11-se050/`), and `wg-pkcs11` and `pkcs11-se050-tool` first in PATH.
//!
//! So a guide is a script a user could type on a machine with a chip, and the sandbox stands in
//! for that machine.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::doc_blocks::{CommandBlock, Marker};

/// How long one guide may run: the run blocks are meant to take seconds.
pub const GUIDE_TIMEOUT: Duration = Duration::from_secs(180);

const PRELUDE: &str = r#"#!/bin/bash
# The docs test's sandbox (tests/support/doc_sandbox.rs); arguments: WORK REPO BINARY_DIR.
exec 2>&1
set -eo pipefail
docs_block="the sandbox's setup"
trap 'status=$?; [ $status -eq 0 ] || echo "docs: FAILED: the block at $docs_block (exit status $status)"' EXIT
work=$1 repo=$2 binaries=$3

mount -t tmpfs docs-sandbox "$work/layers"
for dir in etc usr var; do
    mkdir -p "$work/layers/$dir/upper" "$work/layers/$dir/work"
    mount -t overlay docs-sandbox -o "lowerdir=/$dir,upperdir=$work/layers/$dir/upper,workdir=$work/layers/$dir/work" "/$dir"
done
mount -t tmpfs docs-sandbox-run /run
mkdir -p /run/lock
mkdir -p "$work/layers/repo/upper" "$work/layers/repo/work"
mount -t overlay docs-sandbox -o "lowerdir=$repo,upperdir=$work/layers/repo/upper,workdir=$work/layers/repo/work" "$repo"
ip link set lo up

multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
rm -f /etc/pkcs11/modules/*.module /usr/share/p11-kit/modules/*.module
install -D -m 0644 "$binaries/libpkcs11_se050.so" "/usr/lib/$multiarch/pkcs11/libpkcs11_se050.so"
install -D -m 0644 "$repo/conf/pkcs11-se050.module" /etc/pkcs11/modules/pkcs11-se050.module
install -D -m 0644 /dev/stdin /etc/pkcs11-se050/pkcs11-se050.toml <<'EOF'
# The docs test's sandbox: the virtual SE050 (a real one: transport = "i2c").
transport = "virtual"
virtual_state = "/var/lib/pkcs11-se050/se050.state"
virtual_latency_ms = 30
EOF
mkdir -p /var/lib/pkcs11-se050 /etc/wireguard
mkdir -p "$work/bin" "$HOME"
ln -sf "$binaries/wg-pkcs11" "$binaries/pkcs11-se050-tool" "$work/bin/"
command -v sudo >/dev/null || printf '#!/bin/sh\nexec "$@"\n' > "$work/bin/sudo"
chmod 0755 "$work/bin/"*
export PATH="$work/bin:$PATH"
cd "$repo"
"#;

/// The script: the prelude, then each run block, labelled with its place.
pub fn guide_script(blocks: &[&CommandBlock]) -> String {
    let mut script = PRELUDE.to_string();
    for block in blocks {
        assert_eq!(
            block.marker,
            Marker::Run,
            "{} is not a run block",
            block.place()
        );
        let place = block.place();
        script.push_str(&format!(
            "\ndocs_block='{place}'\nprintf '\\n=== %s\\n' \"$docs_block\"\n"
        ));
        script.push_str(&block.commands());
    }
    script.push_str("\ndocs_block=end\necho '=== docs: every block ran'\n");
    script
}

/// The outcome of one guide: whether every block ran, its output, and how long it took.
pub struct GuideRun {
    pub success: bool,
    pub output: String,
    pub elapsed: Duration,
}

/// Runs `script` in a fresh sandbox as root, with `binary_dir` (target/<profile>/) providing the
/// module and the binaries.
pub fn run_in_sandbox(script: &str, repo: &Path, binary_dir: &Path) -> GuideRun {
    let work = tempfile::Builder::new()
        .prefix("docs-sandbox.")
        .tempdir()
        .expect("cannot make a temporary directory");
    std::fs::create_dir(work.path().join("layers")).expect("cannot make the layers directory");
    let script_path = work.path().join("guide.sh");
    std::fs::write(&script_path, script).expect("cannot write the guide's script");
    let started = Instant::now();
    let out = Command::new("timeout")
        .args(["--kill-after=5", &GUIDE_TIMEOUT.as_secs().to_string()])
        .args([
            "unshare",
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
        ])
        .arg("bash")
        .arg(&script_path)
        .arg(work.path())
        .arg(repo)
        .arg(binary_dir)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        )
        .env("HOME", work.path().join("home"))
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .current_dir(repo)
        .output()
        .expect("cannot run timeout/unshare (coreutils, util-linux)");
    let elapsed = started.elapsed();
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.code() == Some(124) {
        output.push_str(&format!(
            "\ndocs: the guide did not finish within {GUIDE_TIMEOUT:?} (killed)\n"
        ));
    }
    GuideRun {
        success: out.status.success(),
        output,
        elapsed,
    }
}
