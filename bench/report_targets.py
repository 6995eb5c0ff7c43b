"""The targets of issues 5 and 13, each against what the same run measured."""

from mdtable import find, fmt, small_gap, target_line


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
             "Load average (1 min) during the wg-pkcs11 TCP tests: "
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
    lines.append("| CPU cost per GB at each end, every implementation | reported | "
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
