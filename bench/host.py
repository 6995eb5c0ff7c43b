"""The machine the benchmark runs on, and the release build it measures."""

import os
import platform
import subprocess
import sys

from common import MODULE, REPO, TARGET_DIR, WG_PKCS11, log
from impls import BoringtunCli


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name, cmd in (("wireguard-go", ["wireguard-go", "--version"]),
                      ("boringtun-cli", [BoringtunCli(None).command("x")[0], "--version"]),
                      ("iperf3", ["iperf3", "--version"])):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
            versions[name] = out.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            versions[name] = "not found"
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = "unknown"
    return dict(nproc=os.cpu_count(), cpu=cpu, kernel=platform.release(),
                memory_gib=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                loadavg=os.getloadavg(), commit=commit, versions=versions)


def build(args):
    if args.no_build:
        return {}
    notes = {}
    log(f"building release binaries (CARGO_TARGET_DIR={TARGET_DIR})")
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET_DIR)
    result = subprocess.run(["cargo", "build", "--release", "-p", "wg-bench"], cwd=REPO, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"cannot build the benchmark helpers:\n{result.stderr[-3000:]}")
    for package, artefact in (("pkcs11-se050", MODULE), ("wg-pkcs11", WG_PKCS11)):
        result = subprocess.run(["cargo", "build", "--release", "-p", package], cwd=REPO, env=env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            notes[package] = "build failed: " + result.stderr.strip().splitlines()[-1]
            if os.path.exists(artefact):
                os.unlink(artefact)  # never measure a stale binary
            log(f"  {package}: {notes[package]}")
    return notes
