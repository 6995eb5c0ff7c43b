"""Part 7 of the benchmark (issue 13): where wg-pkcs11's time goes under a single TCP stream.

wg-pkcs11 at both ends (A sends, B receives, as in part 1), iperf3 TCP through the tunnel:
  count   `perf stat --per-thread` on each daemon: system calls by kind (tracepoints) and calls to
          malloc / calloc / realloc (uprobes on libc, added for the run and removed after), per
          thread, next to the bytes B delivered into its TUN; from them: system calls and
          allocations per packet, TUN reads per TSO super-packet, segments per UDP GSO send,
          datagrams per recvmmsg, segments per coalesced TUN write
  sample  `perf record --call-graph dwarf` of each daemon, folded with inferno-collapse-perf
          into flamegraphs (inferno-flamegraph, `cargo install inferno`) and summarised per
          thread with `perf report`
Runs as `bench/run --parts 7`; writes profile.md, profile.json, flame-a.svg and flame-b.svg.
Anything that cannot run (no perf, no inferno) says "not measured: <why>".
"""

import json
import os
import re
import shutil
import subprocess
import time

from common import INNER_B, NotMeasured
from impls import Tunnel, WgPkcs11
from netns import PROCS
from parts.throughput import delivered_bytes, iperf

# Tracepoints of the system calls the data path makes (device/send.rs, receive.rs, udp.rs,
# tun.rs, waker.rs), and the uprobes for the allocator (Rust's System allocator is libc's).
SYSCALLS = ("read", "write", "sendmsg", "sendto", "recvmmsg", "poll", "futex")
ALLOCATORS = ("malloc", "calloc", "realloc")
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
MTU = 1420


def log(message):
    print(f"[profile {time.strftime('%H:%M:%S')}] {message}", flush=True)


def add_probes():
    """uprobes on libc's allocator; returns the event names added (removed by remove_probes)."""
    added = []
    for name in ALLOCATORS:
        event = f"wgbench_{name}"
        subprocess.run(["perf", "probe", "-q", "-d", f"probe_libc:{event}"], capture_output=True)
        result = subprocess.run(["perf", "probe", "-q", "-x", LIBC, "--add", f"{event}={name}"],
                                capture_output=True, text=True)
        if result.returncode == 0:
            added.append(f"probe_libc:{event}")
    return added


def remove_probes(events):
    for event in events:
        subprocess.run(["perf", "probe", "-q", "-d", event], capture_output=True)


def parse_per_thread(path):
    """`perf stat --per-thread -x,` output: {thread name: {event: count}}."""
    threads = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) < 4 or not parts[1].strip().isdigit():
                continue
            # "wg-tun-1234,5678,,syscalls:sys_enter_read,..." (comm-tid, count, unit, event)
            comm = re.sub(r"-\d+$", "", parts[0].strip())
            event = parts[3].split(":")[-1].replace("sys_enter_", "").replace("wgbench_", "")
            threads.setdefault(comm, {})
            threads[comm][event] = threads[comm].get(event, 0) + int(parts[1])
    return threads


def count_phase(tunnel, seconds, workdir):
    """Syscalls and allocations per thread at A and B over one iperf3 TCP test."""
    probes = add_probes()
    events = [f"syscalls:sys_enter_{s}" for s in SYSCALLS] + probes
    outs, procs = [], []
    a, b = tunnel.sides
    try:
        before = delivered_bytes(b)
        for end, impl in (("a", tunnel.left), ("b", tunnel.right)):
            out = os.path.join(workdir, f"stat-{end}.csv")
            outs.append(out)
            procs.append(PROCS.start(["perf", "stat", "--per-thread", "-x", ",", "-e",
                                      ",".join(events), "-o", out, "-p",
                                      str(impl.process.pid)]))
        time.sleep(0.5)
        tcp = iperf(INNER_B, False, seconds)
        for p in procs:
            p.send_signal(2)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            PROCS.stop(p)
        moved = delivered_bytes(b) - before
    finally:
        remove_probes(probes)
    counts = [parse_per_thread(o) for o in outs]
    packets = moved / MTU  # full-size packets: a bulk TCP stream is almost all of them
    return dict(tcp_mbps=tcp["mbps"], bytes=moved, packets_estimate=round(packets),
                allocation_probes=bool(probes), a=counts[0], b=counts[1])


def derived(counts):
    """The figures per packet that matter, from the per-thread counts."""
    packets = max(1, counts["packets_estimate"])
    a_tun = counts["a"].get("wg-tun", {})
    b_udp = counts["b"].get("wg-udp", {})
    a_udp = counts["a"].get("wg-udp", {})
    b_tun = counts["b"].get("wg-tun", {})

    def per(x):
        return x / packets

    def total(side, kinds):
        return sum(t.get(k, 0) for t in counts[side].values() for k in kinds)
    out = dict(
        # A's send path: TUN reads (one per TSO super-packet), UDP GSO sends.
        a_tun_reads_per_packet=per(a_tun.get("read", 0)),
        a_gso_sends_per_packet=per(a_tun.get("sendmsg", 0) + a_tun.get("sendto", 0)),
        a_polls_per_packet=per(a_tun.get("poll", 0)),
        # B's receive path: recvmmsg calls, TUN writes (one per coalesced super-packet).
        b_recvmmsg_per_packet=per(b_udp.get("recvmmsg", 0)),
        b_tun_writes_per_packet=per(b_udp.get("write", 0)),
        b_polls_per_packet=per(b_udp.get("poll", 0)),
        syscalls_per_packet_a=per(total("a", SYSCALLS)),
        syscalls_per_packet_b=per(total("b", SYSCALLS)),
        # The ACK direction: B's TUN thread sends, A's UDP thread receives.
        ack_path_syscalls=dict(b_tun=b_tun, a_udp=a_udp),
    )
    if counts["allocation_probes"]:
        out["allocations_per_packet"] = {
            f"{side} {thread}": per(sum(t.get(k, 0) for k in ALLOCATORS))
            for side in ("a", "b") for thread, t in counts[side].items()
            if thread in ("wg-tun", "wg-udp")}
        out["allocations_total"] = {
            f"{side} {thread}": sum(t.get(k, 0) for k in ALLOCATORS)
            for side in ("a", "b") for thread, t in counts[side].items()}
    for name, v in (("a_tun_reads_per_packet", "segments_per_tso_read"),
                    ("a_gso_sends_per_packet", "segments_per_gso_send"),
                    ("b_recvmmsg_per_packet", "packets_per_recvmmsg"),
                    ("b_tun_writes_per_packet", "segments_per_tun_write")):
        out[v] = 1 / out[name] if out[name] else None
    return out


def clean_symbol(text):
    """A symbol as `perf report` prints it, without the empty srcline columns ("-  -")."""
    return re.sub(r"(\s+-)+\s*$", "", text.strip())[:120]


def sample_phase(tunnel, seconds, workdir, out_dir):
    """perf record of both daemons under iperf3; flamegraphs and per-thread summaries."""
    collapse, flame = shutil.which("inferno-collapse-perf"), shutil.which("inferno-flamegraph")
    for name in ("inferno-collapse-perf", "inferno-flamegraph"):
        if not shutil.which(name) and os.path.exists(os.path.expanduser(f"~/.cargo/bin/{name}")):
            if name == "inferno-collapse-perf":
                collapse = os.path.expanduser(f"~/.cargo/bin/{name}")
            else:
                flame = os.path.expanduser(f"~/.cargo/bin/{name}")
    records, procs = [], []
    for end, impl in (("a", tunnel.left), ("b", tunnel.right)):
        data = os.path.join(workdir, f"perf-{end}.data")
        records.append((end, data))
        procs.append(PROCS.start(["perf", "record", "-F", "199", "--call-graph", "dwarf,16384",
                                  "-o", data, "-p", str(impl.process.pid)]))
    time.sleep(0.5)
    tcp = iperf(INNER_B, False, seconds)
    for p in procs:
        p.send_signal(2)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        PROCS.stop(p)
    summary = dict(tcp_mbps=tcp["mbps"])
    for end, data in records:
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio",
                                 "--sort", "comm,dso,symbol", "--percent-limit", "1.5", "-g", "none"],
                                capture_output=True, text=True, timeout=600)
        rows = []
        for line in report.stdout.splitlines():
            hit = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(\S+)\s+\[.\]\s+(.*)", line)
            if hit:
                rows.append(dict(percent=float(hit.group(1)), thread=hit.group(2),
                                 dso=hit.group(3), symbol=clean_symbol(hit.group(4))))
        threads = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio",
                                  "--sort", "comm", "-g", "none"],
                                 capture_output=True, text=True, timeout=600)
        per_thread = []
        for line in threads.stdout.splitlines():
            hit = re.match(r"\s*([\d.]+)%\s+(\S+)\s*$", line)
            if hit:
                per_thread.append(dict(percent=float(hit.group(1)), thread=hit.group(2)))
        summary[end] = dict(top=rows, threads=per_thread)
        if collapse and flame:
            script = subprocess.run(["perf", "script", "-i", data], capture_output=True,
                                    timeout=1200)
            folded = subprocess.run([collapse], input=script.stdout, capture_output=True,
                                    timeout=600)
            svg = subprocess.run([flame, "--title", f"wg-pkcs11 at {end.upper()} under one iperf3 "
                                  f"TCP stream ({'encrypting' if end == 'a' else 'decrypting'})"],
                                 input=folded.stdout, capture_output=True, timeout=600)
            if svg.returncode == 0:
                with open(os.path.join(out_dir, f"flame-{end}.svg"), "wb") as f:
                    f.write(svg.stdout)
                with open(os.path.join(out_dir, f"flame-{end}.folded"), "wb") as f:
                    f.write(folded.stdout)
                summary[end]["flamegraph"] = f"flame-{end}.svg"
        else:
            summary[end]["flamegraph_not_made"] = "inferno is not installed (cargo install inferno)"
    return summary


def part_profile(args, workdir, results):
    if not shutil.which("perf"):
        results["profile"] = dict(not_measured="perf is not installed (Debian: linux-perf)")
        return
    os.makedirs(args.out, exist_ok=True)
    entry = dict(load_at_start=os.getloadavg())
    tunnel = Tunnel(WgPkcs11(workdir), WgPkcs11(workdir))
    try:
        tunnel.setup()
        tunnel.up()
        log("counting system calls and allocations per thread")
        counts = count_phase(tunnel, args.seconds, workdir)
        entry["counts"] = counts
        entry["derived"] = derived(counts)
        log(f"  {json.dumps(entry['derived'], default=str)[:600]}")
        log("sampling (perf record --call-graph dwarf)")
        entry["samples"] = sample_phase(tunnel, args.seconds, workdir, args.out)
        entry["load_at_end"] = os.getloadavg()
    except NotMeasured as e:
        entry["not_measured"] = str(e)
    finally:
        if tunnel.sides:
            try:
                tunnel.down()
            except (RuntimeError, NotMeasured) as e:
                log(f"  teardown: {e}")
        PROCS.stop_all()
    results["profile"] = entry
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "profile.json"), "w") as f:
        json.dump(entry, f, indent=1, default=str)
    with open(os.path.join(args.out, "profile.md"), "w") as f:
        f.write(profile_markdown(entry))


def profile_markdown(entry):
    lines = ["# Where wg-pkcs11's time goes (bench/run --parts 7)", ""]
    if entry.get("not_measured"):
        return "\n".join(lines + [f"not measured: {entry['not_measured']}", ""])
    load = entry.get("load_at_start")
    lines.append(f"Load average at start: {', '.join(f'{x:.1f}' for x in load)}." if load else "")
    lines.append("")
    d, c = entry.get("derived", {}), entry.get("counts", {})
    if d:
        lines += ["## Per packet (one TCP stream, A -> B)", "",
                  f"{c['bytes'] / 1e6:.0f} MB delivered at {c['tcp_mbps']:.0f} Mbit/s, about "
                  f"{c['packets_estimate']:,} full-size packets (bytes / {MTU}).", "",
                  "| figure | value |", "|---|---:|"]
        for key, value in d.items():
            if isinstance(value, float):
                lines.append(f"| {key.replace('_', ' ')} | {value:.3f} |")
            elif isinstance(value, dict) and key.startswith("allocations"):
                for k, v in value.items():
                    lines.append(f"| {key.replace('_', ' ')}: {k} | "
                                 f"{v:.4f} |" if isinstance(v, float) else f"| {key.replace('_', ' ')}: {k} | {v} |")
        lines.append("")
        lines += ["System calls per thread (A | B):", "", "```"]
        for side in ("a", "b"):
            for thread, t in sorted(c.get(side, {}).items()):
                lines.append(f"{side.upper()} {thread:14} " + " ".join(f"{k}={v}" for k, v in sorted(t.items())))
        lines += ["```", ""]
    s = entry.get("samples", {})
    for end in ("a", "b"):
        if end not in s:
            continue
        lines += [f"## Samples at {end.upper()} ({'encrypting' if end == 'a' else 'decrypting'} "
                  f"side, {s['tcp_mbps']:.0f} Mbit/s while sampled)", ""]
        if s[end].get("flamegraph"):
            lines += [f"![flamegraph {end}]({s[end]['flamegraph']})", ""]
        lines.append("Per thread: " + ", ".join(f"{t['thread']} {t['percent']:.1f}%"
                                                for t in s[end]["threads"]))
        lines += ["", "| % of samples | thread | object | symbol |", "|---:|---|---|---|"]
        for row in s[end]["top"]:
            lines.append(f"| {row['percent']:.1f} | {row['thread']} | {row['dso']} | "
                         f"`{clean_symbol(row['symbol'])}` |")
        lines.append("")
    return "\n".join(lines) + "\n"
