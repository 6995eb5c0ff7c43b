#!/usr/bin/python3
"""Checks that bench/run still works, without measuring anything that takes long: its options,
every module it loads, the report writer and the charts on the committed results, and (when
WG_BENCH_BIN_DIR names built binaries, as tests/bench_runner.rs does) a smoke run of part 3's
cheapest measurement, C_Sign, for a fraction of a second.

    /usr/bin/python3 bench/test_bench.py          (the smoke run needs root)
"""

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

import plots  # noqa: E402
import report  # noqa: E402

RUN = os.path.join(HERE, "run")
OPTIONS = ("--rounds", "--seconds", "--parts", "--rekeys", "--peers", "--idle-seconds",
           "--derive-seconds", "--flood-rate", "--flood-seconds", "--nice", "--no-build", "--out",
           "--only", "--impl")
# What the sign-rate helper prints (bench/src), as part 3 records it.
SIGN = dict(ecdsa_sign_per_s=1653.0, bare_ecdsa_per_s=6118.0, eddsa_sign_per_s=10590.0,
            bare_eddsa_per_s=56460.0, ecdsa_overhead_ratio=3.70, eddsa_overhead_ratio=5.33)


def committed(name):
    with open(os.path.join(HERE, "results", name)) as f:
        return json.load(f)


def svg_texts(path):
    """Every text of an SVG (matplotlib writes text as text: svg.fonttype none)."""
    tree = ElementTree.parse(path)
    return " ".join("".join(e.itertext()) for e in tree.iter() if e.tag.endswith("text"))


class Runner(unittest.TestCase):
    def test_help_lists_every_option(self):
        out = subprocess.run([RUN, "--help"], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        for option in OPTIONS:
            self.assertRegex(out.stdout, re.escape(option) + r"(?![\w-])")

    def test_every_part_module_loads(self):
        import parts
        self.assertEqual([number for number, *_ in parts.PARTS], [1, 2, 3, 4, 5, 6, 7])


class Report(unittest.TestCase):
    def setUp(self):
        self.results = committed("results.json")
        self.results["sign"] = dict(SIGN)
        self.out = tempfile.mkdtemp(prefix="wg-bench-test-")

    def tearDown(self):
        subprocess.run(["rm", "-rf", self.out])

    def test_every_part_has_its_table_and_its_chart(self):
        text = report.write(copy.deepcopy(self.results), self.out)
        for heading in ("## 1. Throughput", "## 2. The token on the handshake path",
                        "## 3. Module overhead", "### PlatformSCP03 cost per C_DeriveKey",
                        "### Signatures through the module", "## 4. Memory",
                        "## 5. Initiation flood", "## Targets of issue 5",
                        "## Targets of issue 13 (throughput)"):
            self.assertIn(heading, text)
        self.assertIn("| C_Sign Ed25519 through the module | 10,590 |", text)
        charts = {"throughput.svg": ("throughput (Mbit/s", "bare veth", "issue 5 target",
                                     "ceiling"),
                  "handshake.svg": ("gap in the 1 ms packet stream (ms", "noise floor",
                                    "target, 50 ms token"),
                  "module.svg": ("operations per second", "bare software (reference)"),
                  "memory.svg": ("resident memory, idle (VmRSS, MiB)", "target")}
        for name, labels in charts.items():
            self.assertIn(f"]({name})", text, f"results.md does not show {name}")
            texts = svg_texts(os.path.join(self.out, name))
            for label in labels:
                self.assertIn(label, texts, f"{name} has no {label!r}")
        with open(os.path.join(self.out, "results.json")) as f:
            self.assertEqual(json.load(f)["sign"], SIGN)

    def test_charts_are_the_same_for_the_same_results(self):
        report.write(copy.deepcopy(self.results), self.out)
        with open(os.path.join(self.out, "throughput.svg")) as f:
            first = f.read()
        report.write(copy.deepcopy(self.results), self.out)
        with open(os.path.join(self.out, "throughput.svg")) as f:
            self.assertEqual(first, f.read())

    def test_part_3_alone_has_its_section(self):
        only_sign = {k: v for k, v in self.results.items()
                     if k not in ("throughput", "rekey", "derive", "scp03", "memory", "flood",
                                  "storm", "aead_ceiling")}
        text = report.write(only_sign, self.out)
        self.assertIn("## 3. Module overhead", text)
        self.assertIn("### Signatures through the module", text)
        self.assertNotIn("## 1. Throughput", text)
        self.assertIn("Ed25519: C_Sign / ed25519-dalek", svg_texts(os.path.join(self.out,
                                                                                "module.svg")))

    def test_soak_chart(self):
        path = os.path.join(self.out, "soak.svg")
        plots.soak_chart(committed("soak.json"), path)
        texts = svg_texts(path)
        for label in ("resident memory (MiB)", "minute of the soak", "target: minute 1 + 5 %"):
            self.assertIn(label, texts)


@unittest.skipUnless(os.environ.get("WG_BENCH_BIN_DIR"), "no WG_BENCH_BIN_DIR: no smoke run")
class Smoke(unittest.TestCase):
    def test_part_3_sign(self):
        out_dir = tempfile.mkdtemp(prefix="wg-bench-smoke-")
        try:
            run = subprocess.run([RUN, "--parts", "3", "--only", "sign", "--no-build",
                                  "--derive-seconds", "0.2", "--nice", "0", "--out", out_dir],
                                 capture_output=True, text=True, timeout=300)
            self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
            with open(os.path.join(out_dir, "results.json")) as f:
                results = json.load(f)
            self.assertNotIn("not_measured", results["sign"], results["sign"])
            self.assertGreater(results["sign"]["eddsa_sign_per_s"], 0)
            self.assertNotIn("derive", results)
            with open(os.path.join(out_dir, "results.md")) as f:
                text = f.read()
            self.assertIn("| C_Sign ECDSA P-256 through the module |", text)
            self.assertIn("operations per second", svg_texts(os.path.join(out_dir,
                                                                          "module.svg")))
        finally:
            subprocess.run(["rm", "-rf", out_dir])


if __name__ == "__main__":
    unittest.main(verbosity=2)
