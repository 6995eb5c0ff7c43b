#!/usr/bin/env python3
"""Part 6 of the benchmark (issue 15): a handshake storm and a cookie-answering flood.

Runs the device test wg-pkcs11/tests/device_storm.rs (in-process boringtun peers, each on its own
source address in a network namespace the test creates, against a device whose key is in the
virtual SE050 through the real libpkcs11_se050.so) with the sizes and chip latencies below, and
records the figures it prints:
  storm  20, 40, 100 peers all initiating at once, with a 30 ms and a 300 ms chip: time until
         every peer has a session, chip operations per completed handshake, initiations sent
  flood  10 peers rekeying while 2 addresses flood initiations at their per-address limit and
         answer cookie replies: the slowest rekey
Standalone (as root):  bench/storm.py [--out bench/results] [--report-only]
(writes storm.json and storm.md; --report-only rewrites storm.md from storm.json)
or as `bench/run --parts 6`.
"""

import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

STORMS = [(20, 30), (40, 30), (100, 30), (20, 300), (40, 300), (100, 300)]
FLOODS = [(10, 30), (10, 300)]
REKEY_TIMEOUT_S = 5
TARGETS = {
    "storm_40_at_300ms_s": 20.0,
    "storm_100_at_30ms_s": 10.0,
    "chip_ops_per_handshake": 1.5,
    "flood_rekey_s": 2 * REKEY_TIMEOUT_S,
}


def log(message):
    print(f"[storm {time.strftime('%H:%M:%S')}] {message}", flush=True)


def test_binary():
    """Build the device_storm test and return its executable."""
    out = subprocess.run(
        ["cargo", "test", "--release", "-p", "wg-pkcs11", "--test", "device_storm", "--no-run"],
        cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("building device_storm: " + out.stderr.strip().splitlines()[-1])
    m = re.search(r"Executable tests/device_storm\.rs \(([^)]+)\)", out.stderr)
    if not m:
        raise RuntimeError("no device_storm executable in cargo's output")
    return os.path.join(REPO, m.group(1))


def figures(line):
    return {k: (float(v) if "." in v else int(v)) if re.fullmatch(r"[\d.]+", v) else v
            for k, v in (kv.split("=", 1) for kv in line.split()[1:])}


def run_one(exe, test, tag, env):
    load = os.getloadavg()[0]
    started = time.time()
    out = subprocess.run([exe, test, "--nocapture", "--test-threads", "1"], cwd=REPO,
                         env=dict(os.environ, **env), capture_output=True, text=True,
                         timeout=900)
    # The line may follow libtest's "test NAME ... " on the same line.
    m = re.search(rf"\b{tag} (\S+=\S+(?: \S+=\S+)*)", out.stdout)
    line = f"{tag} {m.group(1)}" if m else None
    if line is None:
        return {"error": (out.stdout + out.stderr).strip()[-400:], "load_before": load}
    result = figures(line)
    result.update(load_before=round(load, 2), passed=out.returncode == 0,
                  wall_s=round(time.time() - started, 1))
    return result


def part_storm(results):
    exe = test_binary()
    storm = []
    for peers, ms in STORMS:
        log(f"storm: {peers} peers, {ms} ms chip")
        r = run_one(exe, "every_peer_of_a_storm", "STORM",
                    {"STORM_PEERS": str(peers), "STORM_LATENCY_MS": str(ms)})
        r.update(peers=peers, latency=ms)
        storm.append(r)
        log(f"  {r}")
    flood = []
    for peers, ms in FLOODS:
        log(f"flood: {peers} peers rekeying, {ms} ms chip")
        r = run_one(exe, "legitimate_rekeys_complete", "FLOOD",
                    {"FLOOD_PEERS": str(peers), "STORM_LATENCY_MS": str(ms)})
        r.update(peers=peers, latency=ms)
        flood.append(r)
        log(f"  {r}")
    results["storm"] = {"storm": storm, "flood": flood}


def verdict(ok):
    return "met" if ok else "**missed**"


def storm_section(results):
    data = results.get("storm")
    if not data:
        return []
    lines = ["## 6. Handshake storm and cookie-answering flood", "",
             "`bench/storm.py` runs wg-pkcs11/tests/device_storm.rs: in-process boringtun peers, "
             "each on its own source address (addresses added to a veth in a namespace), all "
             "initiate at once against the device, whose key is in the virtual SE050 (through "
             "libpkcs11_se050.so) taking the given time per ECDH. The per-peer static-static DHs "
             "are done before the storm starts. Load average (1 min) of the shared machine "
             "before each run is given.", "",
             "| peers | chip ms | all up (s) | chip ops / handshake | initiations sent | "
             "cookie replies | stale dropped | responses sent | load |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["storm"]:
        if "error" in r:
            lines.append(f"| {r['peers']} | {r['latency']} | not measured: {r['error'][-120:]} "
                         "| | | | | | |")
            continue
        lines.append(f"| {r['peers']} | {r['latency']} | {r['all_up_s']:.2f} ({r['up']}) | "
                     f"{r['chip_ops_per_handshake']:.2f} | {r['initiations_sent']} | "
                     f"{r['cookie_replies']} | {r['stale_dropped']} | {r['responses_sent']} | "
                     f"{r['load_before']} |")
    lines += ["", "| flood: peers rekeying | chip ms | rekeyed | slowest rekey (s) | flood "
              "initiations | cookie replies sent | chip ops | load |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["flood"]:
        if "error" in r:
            lines.append(f"| {r['peers']} | {r['latency']} | not measured: {r['error'][-120:]} "
                         "| | | | | |")
            continue
        lines.append(f"| {r['peers']} | {r['latency']} | {r['rekeyed']} | "
                     f"{r['slowest_rekey_s']:.2f} | {r['flood_initiations']} | "
                     f"{r['cookie_replies_sent']} | {r['chip_ops']} | {r['load_before']} |")
    by = {(r["peers"], r["latency"]): r for r in data["storm"] if "error" not in r}
    lines += ["", "Targets (issue 15):", ""]
    r = by.get((40, 300))
    if r:
        lines.append(f"- 40 peers at 300 ms all up within {TARGETS['storm_40_at_300ms_s']:.0f} s: "
                     f"{r['all_up_s']:.2f} s, {verdict(r['all_up_s'] <= TARGETS['storm_40_at_300ms_s'])}")
    r = by.get((100, 30))
    if r:
        lines.append(f"- 100 peers at 30 ms all up within {TARGETS['storm_100_at_30ms_s']:.0f} s: "
                     f"{r['all_up_s']:.2f} s, {verdict(r['all_up_s'] <= TARGETS['storm_100_at_30ms_s'])}")
    if by:
        worst = max(r["chip_ops_per_handshake"] for r in by.values())
        lines.append(f"- at most {TARGETS['chip_ops_per_handshake']} chip operations per completed "
                     f"handshake: worst {worst:.2f}, {verdict(worst <= TARGETS['chip_ops_per_handshake'])}")
    floods = [r for r in data["flood"] if "error" not in r]
    if floods:
        worst = max(r["slowest_rekey_s"] for r in floods)
        everyone = all(str(r["rekeyed"]) == "%d/%d" % (r["peers"], r["peers"]) for r in floods)
        lines.append(f"- every legitimate rekey under the flood within 2 x REKEY_TIMEOUT "
                     f"({TARGETS['flood_rekey_s']} s): slowest {worst:.2f} s, "
                     f"{verdict(worst <= TARGETS['flood_rekey_s'] and everyone)}")
    lines.append("")
    return lines


def main():
    if os.geteuid() != 0:
        sys.exit("bench/storm.py needs root (network namespaces)")
    out_dir = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else \
        os.path.join(HERE, "results")
    if "--report-only" in sys.argv:  # rewrite storm.md from storm.json
        with open(os.path.join(out_dir, "storm.json")) as f:
            results = json.load(f)
    else:
        results = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                   "nproc": os.cpu_count()}
        part_storm(results)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "storm.json"), "w") as f:
            json.dump(results, f, indent=1)
    with open(os.path.join(out_dir, "storm.md"), "w") as f:
        f.write(f"# Handshake storm (bench/storm.py)\n\nTaken {results['started']} on "
                f"{results['nproc']} CPUs (shared).\n\n" + "\n".join(storm_section(results)) + "\n")
    print("\n".join(storm_section(results)))


if __name__ == "__main__":
    main()
