"""Part 1's section of the report: the throughput table, ratios, the ceiling and scaling."""

from mdtable import find, fmt


# The Linux kernel's WireGuard is an interop peer of the tests (tests/interop_kernel.rs), not of the
# benchmark: it runs only in a VM here, and under TCG emulation the figure would be qemu's.
KERNEL_ROW = "wg-pkcs11 -> Linux kernel (Debian 12's 6.1, wireguard.ko)"
KERNEL_NOT_MEASURED = ("this machine's kernel has no wireguard module, so the kernel runs in a qemu VM, "
                       "under TCG emulation where KVM does not work; its 10-30 Mbit/s would measure "
                       "the emulator. Interoperability (handshake each way, token and software keys, "
                       "preshared key, roaming, rekey, byte counters) is tested by "
                       "tests/interop_kernel.rs")


def cpu_counter_note(results):
    what = results.get("cpu_counter")
    return f"Counted here: {what}." if what else ""


def throughput_section(results):
    rows = results.get("throughput")
    if rows is None:
        return []
    args = results["args"]
    lines = ["## 1. Throughput", "",
             f"iperf3 through the tunnel between two namespaces joined by a veth pair, from "
             f"namespace A to B, {args['seconds']} s per test, median of {args['rounds']} rounds "
             f"(implementations alternated within each round). TCP: one stream. UDP: `-b 0` "
             f"(as fast as the sender can), {1420 - 28}-byte datagrams; \"received\" is what "
             f"arrived, the rest was lost.", "",
             "![throughput](throughput.svg)", "",
             "\"A -> B\": A encrypts what iperf3 sends, B decrypts it (the mixed pairs are run both "
             "ways round). CPU per GB: CPU seconds (user + system, all threads, /proc/PID/stat) "
             "each end's daemon used during the TCP test, per GB of IP packets B's daemon wrote "
             "into its TUN meanwhile (its interface's rx bytes; median of the rounds); kernel work done in the daemon's system calls counts, "
             "softirq work the kernel does elsewhere does not. " + cpu_counter_note(results), "",
             "| implementation (A -> B) | TCP Mbit/s | TCP / bare veth | UDP received Mbit/s | UDP received / bare veth | UDP sent Mbit/s | UDP loss | CPU s per GB, A / B | TCP per round | load avg (1 min) per round |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for row in rows:
        # The one-core rows are compared with the bare veth on the same core.
        bare = find(rows, "bare veth, 1 core" if row["name"].endswith(", 1 core") else "bare veth")
        bare_tcp = bare.get("tcp_mbps") if bare else None
        bare_udp = bare.get("udp_mbps") if bare else None
        if "tcp_mbps" in row:
            cpu = row.get("cpu_s_per_gb")
            cpu_text = " / ".join(fmt(c, 2) for c in cpu) if cpu else "-"
            if row.get("gcycles_per_gb"):
                cpu_text += " (Gcycles " + " / ".join(fmt(c, 2) for c in row["gcycles_per_gb"]) + ")"
            load = ", ".join(f"{x:.1f}" for x in row.get("loadavg_tcp", []))
            lines.append(f"| {row['name']} | {fmt(row['tcp_mbps'])} | "
                         f"{fmt(row['tcp_mbps'] / bare_tcp, 2) if bare_tcp else '-'} | "
                         f"{fmt(row['udp_mbps'])} | "
                         f"{fmt(row['udp_mbps'] / bare_udp, 2) if bare_udp else '-'} | "
                         f"{fmt(row['udp_sent_mbps'])} | {fmt(row['udp_lost_percent'], 1)}% | "
                         f"{cpu_text} | {', '.join(fmt(x) for x in row['rounds_tcp'])} | {load} |")
        if row.get("not_measured"):
            lines.append(f"| {row['name']} | not measured: {row['not_measured']} | | | | | | | | |")
    ceiling = results.get("aead_ceiling")
    if ceiling:
        lines.append(f"| ceiling: one core's ChaCha20-Poly1305 (ring), {ceiling['size']:.0f}-byte "
                     f"packets, seal / open | {fmt(ceiling['seal_mbps'])} / "
                     f"{fmt(ceiling['open_mbps'])} | | | | | | | "
                     f"{', '.join(fmt(c['seal_mbps']) + ' / ' + fmt(c['open_mbps']) for c in ceiling['rounds'])} | |")
    lines.append(f"| {KERNEL_ROW} | not measured: {KERNEL_NOT_MEASURED} | | | | | | | | |")
    own = find(rows, "wg-pkcs11")
    lines.append("")
    if own and "tcp_mbps" in own:
        for peer in ("wireguard-go", "boringtun-cli"):
            other = find(rows, peer)
            if other and "tcp_mbps" in other:
                lines.append(f"- wg-pkcs11 / {peer}: TCP {own['tcp_mbps'] / other['tcp_mbps']:.2f}x, "
                             f"UDP received {own['udp_mbps'] / other['udp_mbps']:.2f}x")
    else:
        lines.append("- Ratios of wg-pkcs11 to the others: not measured (no wg-pkcs11 figure).")
    if ceiling:
        slowest = min(ceiling["seal_mbps"], ceiling["open_mbps"])
        lines.append(f"- The ceiling is `wg-bench aead-rate`: plaintext bits one core seals or opens "
                     f"per second of its CPU time (so the machine's load does not lower it). A "
                     f"1420-byte packet carries 1368 bytes of TCP payload (IPv4, TCP timestamps), "
                     f"so one core's crypto alone allows at most "
                     f"{fmt(slowest * 1368 / 1420)} Mbit/s of single-stream TCP goodput. As a "
                     f"fraction of that: "
                     + "; ".join(f"{r['name']} {r['tcp_mbps'] / (slowest * 1368 / 1420):.2f}"
                                 for r in rows if "tcp_mbps" in r and not r["name"].startswith("bare veth")))
    lines += scaling_lines(rows)
    for row in rows:
        if row.get("first_handshake_ops"):
            per_round = "; ".join(
                f"A (initiator) {a if a is not None else '-'}, B (responder) {b if b is not None else '-'}"
                for a, b in row["first_handshake_ops"])
            lines.append(f"- {row['name']}: token operations from start to the first handshake "
                         f"done, per round: {per_round} (expected 2 for a token side: the "
                         "once-per-peer static-static DH and the handshake's own)")
    lines.append("")
    return lines


def scaling_lines(rows):
    """How wg-pkcs11's single-stream TCP scales from one core to two, and with a helper."""
    own, helper = find(rows, "wg-pkcs11"), find(rows, "wg-pkcs11, 1 crypto helper")
    one, bare_one = find(rows, "wg-pkcs11, 1 core"), find(rows, "bare veth, 1 core")
    if not (own and one and "tcp_mbps" in own and "tcp_mbps" in one):
        return []
    line = (f"- Scaling, single-stream TCP: wg-pkcs11 with everything on one core (`taskset -c 0`: "
            f"both daemons and iperf3) {fmt(one['tcp_mbps'])} Mbit/s, on both cores "
            f"{fmt(own['tcp_mbps'])} Mbit/s ({own['tcp_mbps'] / one['tcp_mbps']:.2f}x)")
    if bare_one and "tcp_mbps" in bare_one:
        line += f"; the bare veth went from {fmt(bare_one['tcp_mbps'])} to " + (
            f"{fmt(find(rows, 'bare veth')['tcp_mbps'])} Mbit/s" if find(rows, "bare veth") else "-")
    if helper and "tcp_mbps" in helper:
        line += (f". With a crypto helper per daemon on the same two cores: "
                 f"{fmt(helper['tcp_mbps'])} Mbit/s ({helper['tcp_mbps'] / own['tcp_mbps']:.2f}x "
                 f"the default, which has none on two cores)")
    return [line + "."]
