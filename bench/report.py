"""The results of bench/run as a folder: results.json (every figure), results.md (markdown for
people, with the targets of issues 5 and 13 next to the figures) and one SVG chart per part
that has one (plots.py).

Redraw the markdown and the charts from results.json (after a change to the report or the
charts):  bench/report.py [DIR]   (default bench/results)
"""

import json
import os
import sys

import plots
import storm
from report_parts import flood_section, memory_section, module_section, rekey_section
from report_targets import targets_section, throughput_targets_section
from report_throughput import throughput_section


def markdown(results):
    m = results["machine"]
    lines = ["# wg-pkcs11 benchmark results", ""]
    lines.append(f"Taken {results['started']} by `bench/run` "
                 f"(commit {m['commit']}, {results.get('duration_s', '?')} s for the whole run).")
    lines.append("")
    lines.append(f"Machine: {m['nproc']} CPUs, {m['cpu']}, {m['memory_gib']} GiB, Linux "
                 f"{m['kernel']}, load average at start {', '.join(f'{x:.2f}' for x in m['loadavg'])}. "
                 + "; ".join(f"{k}: {v}" for k, v in m["versions"].items()) + ". "
                 f"Everything the benchmark starts runs at nice {results['args'].get('nice', 0)}.")
    lines.append("")
    if results.get("build"):
        for package, note in results["build"].items():
            lines.append(f"- {package}: {note}")
        lines.append("")

    for part, failure in (results.get("failures") or {}).items():
        lines.append(f"- part {part} failed and is not measured: {failure}")
    if results.get("failures"):
        lines.append("")
    lines += throughput_section(results)
    lines += rekey_section(results)
    lines += module_section(results)
    lines += memory_section(results)
    lines += flood_section(results)
    lines += storm.storm_section(results)
    lines += targets_section(results)
    lines += throughput_targets_section(results)
    return "\n".join(lines) + "\n"



def write(results, out_dir):
    """results.json, the charts and results.md into `out_dir`; returns the markdown."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    draw(results, out_dir)
    text = markdown(results)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text)
    return text


def draw(results, out_dir):
    for name, chart in plots.charts_for(results).items():
        chart(results, os.path.join(out_dir, name))


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "results")
    with open(os.path.join(folder, "results.json")) as f:
        data = json.load(f)
    draw(data, folder)
    with open(os.path.join(folder, "results.md"), "w") as f:
        f.write(markdown(data))


if __name__ == "__main__":
    main()
