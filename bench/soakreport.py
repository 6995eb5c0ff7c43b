"""The soak test's figures: summary against issue 14's targets, and a Markdown report (its
chart, soak.svg, is drawn by plots.soak_chart)."""


def growth(rows, key):
    """Growth of `key` from the end of the first minute to the last, in percent."""
    if len(rows) < 2 or not rows[0][key]:
        return None
    return 100.0 * (rows[-1][key] - rows[0][key]) / rows[0][key]


def summary(rows):
    if not rows:
        return dict(not_measured="no minute completed")
    handshakes = sum(r["handshakes"] for r in rows)
    ops = sum(r["chip_ops"] for r in rows)
    lost = sum(r["lost_into_daemon"] + r["lost_from_daemon"] for r in rows)
    measuring = sum(r.get("dropped_at_measuring_sockets", 0) for r in rows)
    out = dict(minutes=len(rows), handshakes=handshakes, chip_ops=ops,
               chip_ops_per_handshake=ops / handshakes if handshakes else None,
               packets_lost=lost, dropped_by_measuring_sockets=measuring,
               dropped_at_tun=sum(r.get("dropped_at_tun", 0) for r in rows),
               rss_growth_percent=growth(rows, "rss_kb"),
               fds_growth_percent=growth(rows, "fds"), threads_first=rows[0]["threads"],
               threads_last=rows[-1]["threads"],
               failures=sum(len(r["failures"]) for r in rows))
    return out


def markdown(results):
    rows, s, a = results["rows"], results["summary"], results["args"]
    lines = [f"# wg-pkcs11 soak ({results['started']})", "",
             f"`bench/soak --minutes {a['minutes']} --peers {a['peers']} --latency-ms "
             f"{a['latency_ms']} --rekey-ms {a['rekey_ms']}`: wg-pkcs11 with a virtual SE050 of "
             f"{a['latency_ms']} ms per operation, {a['peers']} in-process peers each forcing a "
             f"handshake every {a['rekey_ms']} ms with a 1 ms packet stream both ways.", "",
             "![soak](soak.svg)", "",
             "| minute | RSS (KiB) | fds | threads | chip ECDH | handshakes | lost into daemon "
             "| lost from daemon | of which dropped by a measuring socket | dropped at the TUN |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['minute']} | {r['rss_kb']} | {r['fds']} | {r['threads']} | "
                     f"{r['chip_ops']} | {r['handshakes']} | {r['lost_into_daemon']} | "
                     f"{r['lost_from_daemon']} | {r.get('dropped_at_measuring_sockets', 'n/a')} | "
                     f"{r.get('dropped_at_tun', 'n/a')} |")
    lines += ["", "Against issue 14's targets:", ""]
    if "not_measured" in s:
        lines.append(f"- not measured: {s['not_measured']}")
    else:
        def pct(v):
            return "n/a" if v is None else f"{v:+.1f} %"
        lines.append(f"- RSS growth after the first minute: {pct(s['rss_growth_percent'])} "
                     "(target < 5 %)")
        lines.append(f"- fd growth after the first minute: {pct(s['fds_growth_percent'])} "
                     f"(target < 5 %); threads {s['threads_first']} -> {s['threads_last']}")
        per = s["chip_ops_per_handshake"]
        lines.append(f"- chip operations per handshake: "
                     f"{'n/a' if per is None else f'{per:.3f}'} ({s['chip_ops']} / "
                     f"{s['handshakes']}; target 1; the first minute includes each peer's "
                     "one-time static-static DH)")
        lines.append(f"- packets lost: {s['packets_lost']} in all (target: no more than a "
                     "handshake's worth); of these, "
                     f"{s.get('dropped_by_measuring_sockets', 'n/a')} were dropped by the "
                     "measuring processes' own sockets, and the daemon's TUN dropped "
                     f"{s.get('dropped_at_tun', 'n/a')}")
        if s["failures"]:
            lines.append(f"- peer processes that failed: {s['failures']}")
    return "\n".join(lines) + "\n"
