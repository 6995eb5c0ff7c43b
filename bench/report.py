"""The results of bench/run as markdown for people, with the targets of issue 5 next to them."""

import storm


def fmt(value, digits=0):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def find(rows, name):
    for row in rows or []:
        if row.get("name") == name:
            return row
    return None


def small_gap(ms):
    """Gaps under 2 ms are not listed: a 0 means "none over 2 ms"."""
    if ms is None:
        return "-"
    return "< 2" if ms == 0 else f"{ms:.2f}"


def target_line(what, measured, target, ratio, met, unit=""):
    if measured is None:
        return f"| {what} | {target} | not measured (see its section) | - | - |"
    return (f"| {what} | {target} | {measured}{unit} | {ratio:.2f} | "
            f"{'met' if met else '**not met**'} |")


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
    lines += derive_section(results)
    lines += memory_section(results)
    lines += flood_section(results)
    lines += storm.storm_section(results)
    lines += targets_section(results)
    lines += throughput_targets_section(results)
    return "\n".join(lines) + "\n"


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


def rekey_section(results):
    rows = results.get("rekey")
    if rows is None:
        return []
    lines = ["## 2. The token on the handshake path", "",
             f"A peer run in-process by boringtun's `Tunn` (`wg-bench rekey-peer`, namespace B) "
             f"forces {results['args']['rekeys']} handshakes, one every 300 ms, with "
             "`format_handshake_initiation(force_resend = true)`; the daemon under test "
             "(namespace A) answers them as responder, so each costs it its static-key DH `es`. "
             "Meanwhile a UDP stream of one packet per ms runs each way through the tunnel; the "
             "longest gap between two arrivals is the longest time the data path stood still. "
             "Handshake time: initiation sent to response received, at the peer. The first row "
             "runs the same streams over the bare veth, without a tunnel: the gaps this machine's "
             "scheduler makes by itself. Because those are there too, every gap over 2 ms is listed "
             "with its time and compared with the handshake windows (initiation sent to response "
             "received, + 2 ms): a data path that waited for the token would show gaps as long as "
             "the token operation overlapping the windows; the scheduler's gaps fall in them only in "
             "proportion to the windows' share of the time (\"expected by chance\"). A data path that "
             "waits for the token stalls in every handshake; the scheduler hits only some: the "
             "median over the handshakes of the longest gap in each tells the two apart, and is "
             "what the < 5 ms target is read on.", "",
             "| daemon (responder) | handshakes completed | handshake ms median / max | longest gap ms, any time (into / out of daemon) | longest gap ms overlapping a handshake (into / out) | per handshake: median of its longest gap, ms | handshakes with a gap > 5 ms | gaps > 2 ms overlapping a handshake / all (expected by chance) | gaps > 5 ms | stream packets lost (in / out) | token ops | token ops per handshake |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if row.get("not_measured"):
            lines.append(f"| {row['name']} | not measured: {row['not_measured']} | | | | | | | | | | |")
            continue
        if "rekeys_completed" not in row:  # the noise floor: streams without a tunnel
            lines.append(f"| {row['name']} | - | - | {fmt(row['gap_into_daemon_ms'], 2)} / "
                         f"{fmt(row['gap_from_daemon_ms'], 2)} | - | - | - | - | {row['gaps_over_5ms']} | "
                         f"{row['lost_into_daemon']} / {row['lost_from_daemon']} | - | - |")
            continue
        if row.get("latency_ms") is None:
            ops = per = "n/a (key in memory)"
        elif "token_ops" in row:
            ops, per = str(row["token_ops"]), f"{row['token_ops_per_handshake']:.2f}"
        else:
            ops, per = f"not measured: {row.get('token_ops_not_measured')}", "-"
        lines.append(f"| {row['name']} | {row['rekeys_completed']}/{row['rekeys_sent']} | "
                     f"{fmt(row['handshake_ms_median'], 2)} / {fmt(row['handshake_ms_max'], 2)} | "
                     f"{fmt(row['gap_into_daemon_ms'], 2)} / {fmt(row['gap_from_daemon_ms'], 2)} | "
                     f"{fmt(row.get('hs_gap_into_daemon_ms'), 2)} / {fmt(row.get('hs_gap_from_daemon_ms'), 2)} | "
                     f"{small_gap(row.get('per_handshake_gap_ms_median'))} | "
                     f"{row.get('handshakes_with_gap_over_5ms', '-')}/{row['rekeys_completed']} | "
                     f"{row.get('long_gaps_during_handshakes', '-')} / {row.get('long_gaps', '-')} "
                     f"({row.get('long_gaps', 0) * row.get('handshake_time_share', 0):.0f}) | "
                     f"{row['gaps_over_5ms']} | "
                     f"{row['lost_into_daemon']} / {row['lost_from_daemon']} | {ops} | {per} |")
    lines.append("")
    return lines


def derive_section(results):
    row = results.get("derive")
    if row is None:
        return []
    lines = ["## 3. Module overhead", "",
             "`wg-bench derive-rate`: C_DeriveKey (CKM_ECDH1_DERIVE, then C_GetAttributeValue of "
             "the secret and C_DestroyObject, as wg-pkcs11 does per handshake) through "
             "libpkcs11_se050.so via cryptoki on the virtual SE050 at 0 ms latency, against a bare "
             "x25519-dalek Diffie-Hellman, in the same process.", ""]
    if row.get("not_measured"):
        lines.append(f"Not measured: {row['not_measured']}")
    else:
        lines += ["| | per second | µs each |", "|---|---:|---:|",
                  f"| C_DeriveKey through the module | {fmt(row['derive_per_s'])} | {fmt(row['derive_us'], 1)} |",
                  f"| bare x25519-dalek DH | {fmt(row['bare_dh_per_s'])} | {fmt(row['bare_dh_us'], 1)} |",
                  "", f"Overhead ratio (time per C_DeriveKey / time per bare DH): "
                      f"**{row['overhead_ratio']:.2f}**"]
        if "chip_ecdh_per_derive" in row:
            lines.append(f"\nECDHs counted by the virtual chip per C_DeriveKey: "
                         f"{row['chip_ecdh_per_derive']:.2f}.")
    lines.append("")
    lines += scp03_section(results)
    lines += sign_section(results)
    return lines


def sign_section(results):
    """Issue 22: C_Sign through the module against a bare software signature."""
    row = results.get("sign")
    if row is None:
        return []
    lines = ["### Signatures through the module", "",
             "`wg-bench sign-rate`: C_Sign (CKM_ECDSA_SHA256 on a P-256 key, CKM_EDDSA on an "
             "Ed25519 key; each signature verified on the host by the module) on the virtual "
             "SE050 at 0 ms latency, against RustCrypto p256 / ed25519-dalek in the same process.",
             ""]
    if row.get("not_measured"):
        return lines + [f"Not measured: {row['not_measured']}", ""]
    return lines + ["| | per second |", "|---|---:|",
                    f"| C_Sign ECDSA P-256 through the module | {fmt(row['ecdsa_sign_per_s'])} |",
                    f"| bare p256 ECDSA | {fmt(row['bare_ecdsa_per_s'])} |",
                    f"| C_Sign Ed25519 through the module | {fmt(row['eddsa_sign_per_s'])} |",
                    f"| bare ed25519-dalek | {fmt(row['bare_eddsa_per_s'])} |",
                    "", f"Overhead ratios: ECDSA **{row['ecdsa_overhead_ratio']:.2f}**, "
                        f"Ed25519 **{row['eddsa_overhead_ratio']:.2f}**", ""]


def i2c_ms(bytes_, transfers, hz):
    """I2C time of `bytes_` data bytes and one address byte per transfer, 9 clocks a byte."""
    return (bytes_ + transfers) * 9 / hz * 1000


def scp03_section(results):
    row = results.get("scp03")
    if row is None:
        return []
    lines = ["### PlatformSCP03 cost per C_DeriveKey", "",
             "Through the module: `derive-rate` with `scp03_keys` set, on a virtual chip that "
             "requires Platform SCP. On the counted bus (`wg-bench scp03-cost`): the module's host "
             "stack (lock, secure channel or not, T=1) on one virtual chip each, bytes on the I2C "
             "bus counted; I2C time = (bytes + one address byte per transfer) x 9 clocks.", ""]
    if row.get("not_measured"):
        return lines + [f"Not measured: {row['not_measured']}", ""]
    derive = results.get("derive") or {}
    if "derive_us" in derive:
        lines.append(f"C_DeriveKey through the module: {derive['derive_us']:.1f} µs plain, "
                     f"{row['module_scp03_derive_us']:.1f} µs with SCP03.")
        lines.append("")
    lines += ["| link | APDUs | bytes on the bus | µs (virtual chip) | I2C ms at 400 kHz | at 1 MHz |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, key in [("plain", "plain"), ("SCP03, channel open", "scp03"),
                      ("SCP03, channel re-opened first", "scp03_reopen")]:
        b, t = row[f"{key}_bytes_per_derive"], row[f"{key}_transfers_per_derive"]
        lines.append(f"| {name} | {row[f'{key}_apdus_per_derive']:.0f} | {b:.0f} | "
                     f"{row[f'{key}_us_per_derive']:.0f} | {i2c_ms(b, t, 400e3):.2f} | "
                     f"{i2c_ms(b, t, 1e6):.2f} |")
    lines.append("")
    return lines


def memory_section(results):
    data = results.get("memory")
    if data is None:
        return []
    lines = ["## 4. Memory", "",
             f"Resident memory of the daemon process (VmRSS; Pss from smaps_rollup), "
             f"{results['args']['idle_seconds']:.0f} s after start, idle, with 1 peer and with "
             f"{data['peers']} configured peers (generated keys, one /32 each).", "",
             f"| daemon | RSS 1 peer | RSS {data['peers']} peers | per extra peer (RSS) | Pss 1 peer | Pss {data['peers']} peers | per extra peer (Pss) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in data["implementations"]:
        if row.get("not_measured"):
            lines.append(f"| {row['name']} | not measured: {row['not_measured']} | | | | | |")
            continue
        if "many" not in row or "per_peer_kib" not in row:
            lines.append(f"| {row['name']} | incomplete: {row.get('not_measured', '?')} | | | | | |")
            continue
        one, many = row["one"], row["many"]
        lines.append(f"| {row['name']} | {one['rss_kib'] / 1024:.1f} MiB | {many['rss_kib'] / 1024:.1f} MiB | "
                     f"{row['per_peer_kib']:.2f} KiB | {one.get('pss_kib', 0) / 1024:.1f} MiB | "
                     f"{many.get('pss_kib', 0) / 1024:.1f} MiB | {row.get('per_peer_pss_kib', 0):.2f} KiB |")
        if row.get("warning"):
            lines.append(f"| | warning: {row['warning']} | | | | | |")
    lines.append("")
    return lines


def flood_section(results):
    rows = results.get("flood")
    if rows is None:
        return []
    args = results["args"]
    lines = ["## 5. Initiation flood", "",
             f"`wg-bench flood` in a third namespace C sends handshake initiations with a valid "
             f"mac1 (random ephemeral key and ciphertext) at {args['flood_rate']}/s for "
             f"{args['flood_seconds']:.0f} s to the daemon in A, while a legitimate wireguard-go "
             "peer in B pings it every 10 ms through its established tunnel, and a second "
             "legitimate peer (boringtun's `Tunn` in-process, `wg-bench rekey-peer`) forces a new "
             "handshake every 300 ms (it answers cookie replies, as a real peer does). The flood "
             "never answers cookie replies. Token ops: ECDHs the virtual SE050 counted during the "
             "flood, the legitimate peer's handshakes included.",
             "",
             "| daemon under flood | initiations sent (rate) | cookie replies | handshake responses | token ops | legit ping loss | ping avg / max ms | legit handshakes completed (median / max ms) | tunnel after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        if row.get("not_measured"):
            lines.append(f"| {row['name']} | not measured: {row['not_measured']} | | | | | | | |")
            continue
        if "legit_rekeys_sent" in row:
            legit = (f"{row['legit_rekeys_completed']}/{row['legit_rekeys_sent']} "
                     f"({fmt(row['legit_handshake_ms_median'], 1)} / {fmt(row['legit_handshake_ms_max'], 1)})")
        else:
            legit = f"not measured: {row.get('legit_rekeys_not_measured', '?')}"
        if "token_ops" in row:
            ops = str(row["token_ops"])
        elif "token_ops_not_measured" in row:
            ops = f"not measured: {row['token_ops_not_measured']}"
        else:
            ops = "n/a (key in memory)"
        lines.append(f"| {row['name']} | {row['sent']:,} ({row['rate_achieved']:,.0f}/s) | "
                     f"{row['cookie_replies']:,} | {row['responses']} | {ops} | "
                     f"{fmt(row.get('ping_loss_percent'), 1)}% | {fmt(row.get('ping_avg_ms'), 2)} / "
                     f"{fmt(row.get('ping_max_ms'), 2)} | {legit} | "
                     f"{'up' if row.get('tunnel_after') else '**down**'} |")
    lines.append("")
    return lines


def targets_section(results):
    lines = ["## Targets of issue 5", "",
             "| target | wanted | measured | ratio measured / target | |", "|---|---|---|---:|---|"]
    rows = results.get("throughput") or []
    own = find(rows, "wg-pkcs11")
    others = [r for r in (find(rows, "wireguard-go"), find(rows, "boringtun-cli"))
              if r and "tcp_mbps" in r]
    if own and "tcp_mbps" in own and others:
        fastest = max(others, key=lambda r: r["tcp_mbps"])
        wanted = 1.5 * fastest["tcp_mbps"]
        ratio = own["tcp_mbps"] / wanted
        lines.append(target_line("TCP throughput", f"{own['tcp_mbps']:.0f} Mbit/s "
                                 f"({own['tcp_mbps'] / fastest['tcp_mbps']:.2f}x {fastest['name']})",
                                 f">= 1.5x {fastest['name']} = {wanted:.0f} Mbit/s", ratio, ratio >= 1))
    else:
        lines.append(target_line("TCP throughput", None, ">= 1.5x the faster of wireguard-go and boringtun-cli", 0, False))

    rekey = results.get("rekey") or []
    for name in ("wg-pkcs11, token 0 ms", "wg-pkcs11, token 50 ms"):
        row = find(rekey, name)
        if row and "token_ops_per_handshake" in row:
            per = row["token_ops_per_handshake"]
            lines.append(target_line(f"token ops per handshake ({name[11:]})", f"{per:.2f}",
                                     "1 per side", per / 1, per <= 1.0))
        else:
            lines.append(target_line(f"token ops per handshake ({name[11:]})", None, "1 per side", 0, False))
    row = find(rekey, "wg-pkcs11, token 50 ms")
    floor = find(rekey, "no tunnel (bare veth): noise floor")
    floor_text = (f"; without any tunnel the same streams saw {max(floor['gap_into_daemon_ms'], floor['gap_from_daemon_ms']):.1f} ms"
                  if floor and "gap_into_daemon_ms" in floor else "")
    what = ("stream gap during a rekey, 50 ms token (median over the handshakes of the longest "
            "gap in each)")
    if row and "per_handshake_gap_ms_median" in row:
        gap = row["per_handshake_gap_ms_median"]
        measured = (f"{small_gap(gap)} ms; {row['handshakes_with_gap_over_5ms']} of "
                    f"{row['rekeys_completed']} handshakes saw a gap > 5 ms; longest overlapping "
                    f"one {row['max_gap_during_handshakes_ms']:.2f} ms, at any time "
                    f"{row['max_gap_ms']:.2f} ms{floor_text}")
        # Gaps under 2 ms are not listed: then the ratio is only known to be under 2/5.
        ratio = "< 0.40" if gap == 0 else f"{gap / 5:.2f}"
        lines.append(f"| {what} | < 5 ms | {measured} | {ratio} | "
                     f"{'met' if gap < 5 else '**not met**'} |")
    else:
        lines.append(target_line(what, None, "< 5 ms", 0, False))

    derive = results.get("derive") or {}
    if "overhead_ratio" in derive:
        r = derive["overhead_ratio"]
        lines.append(target_line("C_DeriveKey vs bare DH", f"{r:.2f}x", "<= 1.25x", r / 1.25, r <= 1.25))
    else:
        lines.append(target_line("C_DeriveKey vs bare DH", None, "<= 1.25x", 0, False))

    memory = find((results.get("memory") or {}).get("implementations"), "wg-pkcs11")
    if memory and "per_peer_kib" in memory:
        mib = memory["one"]["rss_kib"] / 1024
        lines.append(target_line("resident memory idle, 1 peer", f"{mib:.1f} MiB", "< 16 MiB", mib / 16, mib < 16))
        per = memory["per_peer_kib"]
        lines.append(target_line("memory per extra peer", f"{per:.2f} KiB", "< 4 KiB", per / 4, per < 4))
    else:
        lines.append(target_line("resident memory idle, 1 peer", None, "< 16 MiB", 0, False))
        lines.append(target_line("memory per extra peer", None, "< 4 KiB", 0, False))

    for name in ("wg-pkcs11, token 0 ms", "wg-pkcs11, token 50 ms"):
        flood = find(results.get("flood"), name)
        what = f"flood ({name[11:]}): legitimate tunnel never drops; token ops bounded by cookies"
        if flood and "ping_loss_percent" in flood:
            loss = flood["ping_loss_percent"]
            ok = loss == 0 and flood.get("tunnel_after")
            ops = flood.get("token_ops")
            legit = flood.get("legit_rekeys_completed")
            ops_text = (f"{ops} token ops ({ops / flood['seconds']:.0f}/s) for "
                        f"{flood['sent']:,} forged initiations"
                        + (f" and {flood.get('legit_rekeys_sent')} legitimate ones "
                           f"({legit} handshakes completed)" if legit is not None else "")
                        if ops is not None else "token ops not measured")
            lines.append(f"| {what} | 0% ping loss | {loss:.1f}% loss (ping max "
                         f"{fmt(flood.get('ping_max_ms'), 0)} ms), {ops_text} | - | "
                         f"{'met' if ok else '**not met**'} (loss) |")
        else:
            lines.append(target_line(what, None, "0% ping loss", 0, False))
    lines.append("")
    return lines


def throughput_targets_section(results):
    """Issue 13's targets, stated against what the same run measured."""
    rows = results.get("throughput")
    if rows is None:
        return []
    lines = ["## Targets of issue 13 (throughput)", "",
             f"Load average (1 min) during the wg-pkcs11 TCP tests: "
             + (", ".join(f"{x:.1f}" for x in (find(rows, "wg-pkcs11") or {}).get("loadavg_tcp", []))
                or "-") + ". On a shared machine the absolute figures move with the load; the "
             "ratios to the bare veth are taken in the same round, the CPU per GB less so.", "",
             "| target | wanted | measured | ratio measured / target | |", "|---|---|---|---:|---|"]
    bare, own = find(rows, "bare veth"), find(rows, "wg-pkcs11")
    if bare and own and "tcp_mbps" in bare and "tcp_mbps" in own:
        r = own["tcp_mbps"] / bare["tcp_mbps"]
        lines.append(target_line("TCP, single stream, wg-pkcs11 at both ends",
                                 f"{own['tcp_mbps']:.0f} Mbit/s = {r:.3f}x bare veth "
                                 f"({bare['tcp_mbps']:.0f})", ">= 0.35x bare veth", r / 0.35,
                                 r >= 0.35))
        r = own["udp_mbps"] / bare["udp_mbps"] if bare.get("udp_mbps") else None
        if r is not None:
            lines.append(target_line("UDP at full rate, received by wg-pkcs11",
                                     f"{own['udp_mbps']:.0f} Mbit/s = {r:.3f}x bare veth "
                                     f"({bare['udp_mbps']:.0f}); sent {own['udp_sent_mbps']:.0f}, "
                                     f"loss {own['udp_lost_percent']:.1f}%",
                                     ">= 0.4x bare veth", r / 0.4, r >= 0.4))
    else:
        lines.append(target_line("TCP, single stream, wg-pkcs11 at both ends", None,
                                 ">= 0.35x bare veth", 0, False))
    mixed = [r for r in rows if "->" in r["name"]]
    both = [r["name"] for r in mixed if "tcp_mbps" in r]
    mixed_text = "; ".join(f"{n}: {find(rows, n)['tcp_mbps']:.0f} Mbit/s" for n in both)
    mixed_ok = (any(n.startswith("wg-pkcs11 ->") for n in both)
                and any(n.endswith("-> wg-pkcs11") for n in both))
    lines.append(f"| TCP in the mixed pairs, both directions | reported | "
                 f"{mixed_text or 'not measured'} | - | {'met' if mixed_ok else '**not met**'} |")
    costed = [r for r in rows if r.get("cpu_s_per_gb")]
    lines.append(f"| CPU cost per GB at each end, every implementation | reported | "
                 + ("; ".join(f"{r['name']}: " + " / ".join(fmt(c, 2) for c in r["cpu_s_per_gb"])
                              for r in costed) or "not measured")
                 + f" CPU s | - | {'met' if costed else '**not met**'} |")
    ceiling = results.get("aead_ceiling")
    if ceiling and own and "tcp_mbps" in own:
        goodput = min(ceiling["seal_mbps"], ceiling["open_mbps"]) * 1368 / 1420
        lines.append(f"| the ceiling, and the tunnel as a fraction of it | reported | one core seals "
                     f"{ceiling['seal_mbps']:.0f} and opens {ceiling['open_mbps']:.0f} Mbit/s; "
                     f"wg-pkcs11 TCP = {own['tcp_mbps'] / goodput:.2f} of the "
                     f"{goodput:.0f} Mbit/s of goodput one core's crypto allows | - | met |")
    else:
        lines.append("| the ceiling, and the tunnel as a fraction of it | reported | not measured | - | **not met** |")
    lines.append("")
    return lines


if __name__ == "__main__":
    # Redraw results.md from results.json (after a change to this file): report.py DIR
    import json
    import os
    import sys
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")
    with open(os.path.join(folder, "results.json")) as f:
        data = json.load(f)
    with open(os.path.join(folder, "results.md"), "w") as f:
        f.write(markdown(data))
