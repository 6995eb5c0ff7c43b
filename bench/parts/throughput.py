"""Part 1: throughput. iperf3 TCP (one stream) and UDP (at line rate) through every pairing,
the bare veth as reference, implementations alternated within each round, median of the
rounds; CPU cost per GB at each end; one core's ChaCha20-Poly1305 rate as the ceiling."""

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

from common import (INNER_B, MODULE_MEASUREMENTS, NS_A, NS_B, OUTER_B, UDP_PAYLOAD, WG_BENCH,
                    NotMeasured, key_values, last_words, log, only, run)
from impls import Tunnel, WgPkcs11, uapi_impls
from netns import PROCS

def iperf(server_addr, udp, seconds, cpus=None):
    pin = ["taskset", "-c", cpus] if cpus is not None else []
    server = PROCS.start(pin + ["iperf3", "-s", "-1", "-B", server_addr], ns=NS_B)
    time.sleep(0.3)
    cmd = pin + ["iperf3", "-c", server_addr, "-t", str(seconds), "-J"]
    if udp:
        cmd += ["-u", "-b", "0", "-l", str(UDP_PAYLOAD)]
    else:
        cmd += ["-O", "1"]
    result = run(cmd, ns=NS_A, check=False, timeout=seconds + 30)
    PROCS.stop(server)
    try:
        data = json.loads(result.stdout)
    except ValueError:
        raise NotMeasured(f"iperf3 gave no JSON: {result.stderr.strip()[-200:]}")
    if "error" in data:
        raise NotMeasured(f"iperf3: {data['error']}")
    end = data["end"]
    if udp:
        s = end["sum"]
        sent_bps = s["bits_per_second"]
        lost = s.get("lost_percent", 0.0)
        # iperf3 3.12 reports the sender's rate; the receiver got (1 - loss) of it.
        # The receiver's rate: what the server counted as arrived (iperf3 takes the loss from
        # the server's own report), over the same seconds.
        return dict(sent_mbps=sent_bps / 1e6, lost_percent=lost,
                    mbps=sent_bps * (1 - lost / 100) / 1e6,
                    packets=s.get("packets"), lost_packets=s.get("lost_packets"))
    return dict(mbps=end["sum_received"]["bits_per_second"] / 1e6,
                bytes=end["sum_received"].get("bytes"),
                retransmits=end["sum_sent"].get("retransmits"))


HELPER_ROW = "wg-pkcs11, 1 crypto helper"
BARE_ONE_CORE_ROW = "bare veth, 1 core"
ONE_CORE_ROW = "wg-pkcs11, 1 core"
ONE_CORE = "0"
PINNED_ROWS = (BARE_ONE_CORE_ROW, ONE_CORE_ROW)


def throughput_pairs(args, workdir):
    """Every pairing part 1 measures, as (name, tunnel factory): the same implementation at both
    ends, and wg-pkcs11 with each other implementation in both directions (A -> B: A encrypts
    what iperf3 sends, B decrypts it)."""
    def own(**kw):
        return WgPkcs11(workdir, **kw)
    pairs_ = [("bare veth", None)]
    others = uapi_impls(args, workdir)
    for name, make in others:
        pairs_.append((name, lambda m=make: Tunnel(m(), m())))
    pairs_.append(("wg-pkcs11", lambda: Tunnel(own(), own())))
    # Scaling (issue 13): the same tunnel with a crypto helper per daemon (none is the default
    # on 2 cores), and the whole test (both daemons and iperf3) on one core, against the bare
    # veth on that core.
    helper = {"WG_PKCS11_CRYPTO_HELPERS": "1"}
    pairs_.append((HELPER_ROW, lambda: Tunnel(own(extra_env=helper), own(extra_env=helper))))
    pairs_.append((BARE_ONE_CORE_ROW, None))
    pairs_.append((ONE_CORE_ROW, lambda: Tunnel(own(cpus=ONE_CORE), own(cpus=ONE_CORE))))
    for name, make in others:
        if name == "boringtun-cli":
            continue  # one stream at ~500 Mbit/s: the mix would only measure boringtun again
        pairs_.append((f"wg-pkcs11 -> {name}", lambda m=make: Tunnel(own(), m())))
        pairs_.append((f"{name} -> wg-pkcs11", lambda m=make: Tunnel(m(), own())))
    return pairs_


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU time of a process and all its threads (/proc/PID/stat fields 14, 15)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def perf_cycles_support():
    """None when `perf stat -e cycles` counts here, else why not (no perf, or a VM without a PMU:
    then the CPU cost is given in CPU seconds from /proc alone)."""
    if not shutil.which("perf"):
        return "perf is not installed (Debian: linux-perf)"
    result = subprocess.run(["perf", "stat", "-x", ",", "-e", "cycles", "true"],
                            capture_output=True, text=True, timeout=30)
    if "<not supported>" in result.stderr or result.returncode != 0:
        return "`perf stat -e cycles` says <not supported> (no hardware counters in this VM)"
    return None


def delivered_bytes(side):
    """Bytes of IP packets the daemon at `side` has written into its TUN (the interface's rx)."""
    out = run(["ip", "-j", "-s", "link", "show", "dev", side.ifname], ns=side.ns, check=False)
    try:
        return int(json.loads(out.stdout)[0]["stats64"]["rx"]["bytes"])
    except (ValueError, LookupError, TypeError):
        return None


class CpuMeter:
    """CPU spent by the daemons at A and B over one measurement: seconds from /proc/PID/stat,
    and cycles from `perf stat -p` where the machine counts them; and the bytes B delivered
    meanwhile (iperf3's own count leaves out the omitted first second, the CPU time does not)."""

    def __init__(self, tunnel, cycles):
        self.side_b = tunnel.sides[1]
        self.bytes_before = delivered_bytes(self.side_b)
        self.pids = [impl.process.pid if impl.process else None
                     for impl in (tunnel.left, tunnel.right)]
        self.before = [cpu_seconds(p) if p else None for p in self.pids]
        self.perf = []
        if cycles:
            for pid in self.pids:
                out = tempfile.NamedTemporaryFile(prefix="wgbench-perf-", delete=False).name
                self.perf.append((PROCS.start(["perf", "stat", "-x", ",", "-e", "cycles", "-o",
                                               out, "-p", str(pid)]), out))

    def done(self):
        """(CPU seconds at A and B, cycles at A and B or None, bytes delivered at B or None)."""
        after = [cpu_seconds(p) if p else None for p in self.pids]
        bytes_after = delivered_bytes(self.side_b)
        moved = (bytes_after - self.bytes_before
                 if bytes_after is not None and self.bytes_before is not None else None)
        seconds = [(y - x) if x is not None and y is not None else None
                   for x, y in zip(self.before, after)]
        cycles = []
        for process, out in self.perf:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            PROCS.stop(process)
            value = None
            try:
                with open(out) as f:
                    for line in f:
                        parts = line.strip().split(",")
                        if len(parts) > 2 and parts[2].startswith("cycles") and parts[0].isdigit():
                            value = int(parts[0])
                os.unlink(out)
            except OSError:
                pass
            cycles.append(value)
        return seconds, cycles or None, moved


def aead_ceiling(seconds=2):
    """One core's ChaCha20-Poly1305 rate (ring, 1420-byte packets), per CPU second."""
    result = run([WG_BENCH, "aead-rate", "--seconds", str(seconds)], check=False, timeout=120)
    if result.returncode != 0:
        raise NotMeasured(f"wg-bench aead-rate: {last_words(result.stderr)}")
    return {k: float(v) for k, v in key_values(result.stdout).items()}


def part_throughput(args, workdir, results):
    implementations = throughput_pairs(args, workdir)
    wanted = only(args)
    if wanted is not None:
        # Part 3's measurements may be named in the same --only; any other name is a mistake.
        unknown = wanted - {name for name, _ in implementations} - set(MODULE_MEASUREMENTS)
        implementations = [(n, m) for n, m in implementations if n in wanted]
        if unknown or not implementations:
            raise NotMeasured(f"--only names no row of part 1: "
                              f"{', '.join(sorted(unknown or wanted))}")
    cycles_missing = perf_cycles_support()
    results["cpu_counter"] = ("cycles (perf stat) and CPU seconds (/proc)" if cycles_missing is None
                              else f"CPU seconds (/proc); no cycles: {cycles_missing}")
    ceilings = []
    rows = {name: dict(tcp=[], udp=[], not_measured=None) for name, _ in implementations}
    tunnels = {}
    for round_no in range(1, args.rounds + 1):
        log(f"ceiling round {round_no}/{args.rounds}: wg-bench aead-rate")
        try:
            ceilings.append(aead_ceiling())
            log(f"  seal {ceilings[-1]['seal_mbps']:.0f} Mbit/s, open "
                f"{ceilings[-1]['open_mbps']:.0f} Mbit/s per CPU second")
        except NotMeasured as e:
            log(f"  not measured: {e}")
        for name, make in implementations:
            row = rows[name]
            if row["not_measured"]:
                continue
            log(f"throughput round {round_no}/{args.rounds}: {name}")
            tunnel = None
            try:
                if name in PINNED_ROWS and (os.cpu_count() or 1) < 2:
                    raise NotMeasured("this machine has one core: nothing to compare")
                cpus = ONE_CORE if name in PINNED_ROWS else None
                if make is None:
                    target = OUTER_B
                else:
                    tunnel = tunnels.get(name) or make()
                    if name not in tunnels:
                        tunnel.setup()
                        tunnels[name] = tunnel
                    tunnel.up()
                    target = INNER_B
                if tunnel and any(n is not None for n in tunnel.first_handshake_ops):
                    row.setdefault("first_handshake_ops", []).append(tunnel.first_handshake_ops)
                meter = CpuMeter(tunnel, cycles_missing is None) if tunnel else None
                tcp = iperf(target, False, args.seconds, cpus)
                if meter:
                    cpu_s, cycles, moved = meter.done()
                    gb = (moved or 0) / 1e9
                    if gb > 0:
                        tcp["cpu_s_per_gb"] = [c / gb if c is not None else None for c in cpu_s]
                        if cycles:
                            tcp["gcycles_per_gb"] = [c / 1e9 / gb if c is not None else None
                                                     for c in cycles]
                tcp["loadavg"] = os.getloadavg()[0]
                udp = iperf(target, True, args.seconds, cpus)
                row["tcp"].append(tcp["mbps"])
                row.setdefault("tcp_details", []).append(tcp)
                row["udp"].append(udp)
                cost = ""
                if tcp.get("cpu_s_per_gb"):
                    cost = ", CPU s per GB at A / B " + " / ".join(
                        f"{c:.2f}" if c is not None else "-" for c in tcp["cpu_s_per_gb"])
                log(f"  TCP {tcp['mbps']:.0f} Mbit/s{cost}; UDP {udp['mbps']:.0f} Mbit/s received "
                    f"({udp['lost_percent']:.1f}% lost of {udp['sent_mbps']:.0f} sent); "
                    f"load {tcp['loadavg']:.1f}")
            except NotMeasured as e:
                row["not_measured"] = str(e)
                log(f"  not measured: {e}")
            finally:
                if tunnel and tunnel.sides:
                    try:
                        tunnel.down()
                    except (RuntimeError, NotMeasured) as e:
                        log(f"  teardown: {e}")
                PROCS.stop_all()
    out = []
    for name, _ in implementations:
        row = rows[name]
        entry = dict(name=name, rounds_tcp=row["tcp"], rounds_udp=row["udp"])
        if row["tcp"]:
            entry["tcp_mbps"] = statistics.median(row["tcp"])
            entry["udp_mbps"] = statistics.median(u["mbps"] for u in row["udp"])
            entry["udp_sent_mbps"] = statistics.median(u["sent_mbps"] for u in row["udp"])
            entry["udp_lost_percent"] = statistics.median(u["lost_percent"] for u in row["udp"])
        details = row.get("tcp_details") or []
        for key in ("cpu_s_per_gb", "gcycles_per_gb"):
            per_end = [d[key] for d in details if d.get(key)]
            if per_end:
                entry[key] = [statistics.median(x[i] for x in per_end if x[i] is not None)
                              if any(x[i] is not None for x in per_end) else None
                              for i in range(2)]
        if details:
            entry["loadavg_tcp"] = [d["loadavg"] for d in details]
        if row.get("first_handshake_ops"):
            entry["first_handshake_ops"] = row["first_handshake_ops"]
        if row["not_measured"]:
            entry["not_measured"] = row["not_measured"]
            if row["tcp"]:
                entry["not_measured"] += f" (after {len(row['tcp'])} round(s))"
        out.append(entry)
    results["throughput"] = out
    if ceilings:
        results["aead_ceiling"] = dict(
            rounds=ceilings, seal_mbps=statistics.median(c["seal_mbps"] for c in ceilings),
            open_mbps=statistics.median(c["open_mbps"] for c in ceilings),
            size=ceilings[0].get("size", 1420))

