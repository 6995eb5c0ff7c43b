"""What every part of the benchmark shares: the test network's names and addresses, where the
built binaries are, the NotMeasured exception, and small helpers to run tools and read what
they print."""

import os
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")

NS_A, NS_B, NS_C = "wgbench-a", "wgbench-b", "wgbench-c"
OUTER_A, OUTER_B = "10.200.0.1", "10.200.0.2"
FLOOD_A, FLOOD_C = "10.202.0.1", "10.202.0.3"
INNER_A, INNER_B = "10.201.0.1", "10.201.0.2"
PORT_A, PORT_B = 51820, 51821
# The in-process rekeying peer that stays legitimate through the flood (part 5).
INNER_REKEYER, PORT_REKEYER = "10.201.0.3", 51822
IF_A, IF_B = "wgbencha", "wgbenchb"
UAPI_DIR = "/var/run/wireguard"
MTU = 1420
# Largest UDP payload that fits the tunnel MTU in one IPv4 packet.
UDP_PAYLOAD = MTU - 20 - 8

TARGET_DIR = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
# WG_BENCH_BIN_DIR: the binaries of another profile (the runner's own test uses the profile it
# was built with); by default the release build `bench/run` makes.
RELEASE = os.environ.get("WG_BENCH_BIN_DIR") or os.path.join(TARGET_DIR, "release")
WG_BENCH = os.path.join(RELEASE, "wg-bench")
WG_PKCS11 = os.path.join(RELEASE, "wg-pkcs11")
MODULE = os.path.join(RELEASE, "libpkcs11_se050.so")


# Part 3's three measurements, which `--only` can pick like part 1's rows.
MODULE_MEASUREMENTS = ("derive", "scp03", "sign")


def only(args):
    """The names `--only` gives (rows of part 1, measurements of part 3), or None for all."""
    if not getattr(args, "only", None):
        return None
    return {name.strip() for name in args.only.split(",") if name.strip()}


class NotMeasured(Exception):
    """A measurement that cannot be taken; the message says why."""


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd, check=True, timeout=120, env=None, ns=None):
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[-500:]}")
    return result


def last_words(text, limit=300):
    """The last non-empty line of a tool's complaint: usually the one that says why."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][-limit:] if lines else "no message"


def key_values(text):
    """The `key=value` lines the wg-bench helpers print."""
    values = {}
    for line in text.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def wait_for(predicate, seconds, what):
    end = time.time() + seconds
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise NotMeasured(f"{what} within {seconds} s")


def tail(path, lines=3):
    try:
        with open(path) as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
