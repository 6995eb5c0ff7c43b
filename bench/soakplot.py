"""The soak test's figures: summary against issue 14's targets, an SVG of the minutes, and a
Markdown report (no plotting package needed)."""

from xml.sax.saxutils import escape

WIDTH, HEIGHT, LEFT, RIGHT, TOP, PANEL, GAP = 820, 0, 70, 30, 60, 150, 40


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


def panel(out, index, title, rows, series, unit):
    """One panel: minutes on x, one line per (key, colour, label)."""
    top = TOP + index * (PANEL + GAP)
    width = WIDTH - LEFT - RIGHT
    values = [r[k] for r in rows for k, _, _ in series]
    high = max(values + [1]) * 1.15
    out.append(f'<text x="{LEFT}" y="{top - 8}" font-size="13">{escape(title)}</text>')
    out.append(f'<rect x="{LEFT}" y="{top}" width="{width}" height="{PANEL}" fill="none" '
               f'stroke="#bbb"/>')
    for i in range(5):
        v = high * i / 4
        y = top + PANEL - PANEL * i / 4
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">'
                   f'{v:,.0f}</text>')
    n = max(1, len(rows) - 1)
    for j, r in enumerate(rows):
        x = LEFT + width * j / n if len(rows) > 1 else LEFT + width / 2
        out.append(f'<text x="{x:.1f}" y="{top + PANEL + 14}" text-anchor="middle" fill="#555">'
                   f'{r["minute"]}</text>')
    for s, (key, colour, label) in enumerate(series):
        points = []
        for j, r in enumerate(rows):
            x = LEFT + width * j / n if len(rows) > 1 else LEFT + width / 2
            y = top + PANEL - PANEL * r[key] / high
            points.append(f"{x:.1f},{y:.1f}")
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>')
        out.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
                   f'stroke-width="1.5"/>')
        out.append(f'<text x="{LEFT + 10 + 220 * s}" y="{top + 16}" fill="{colour}">'
                   f'{escape(label)} ({unit})</text>')


def svg(results):
    rows = results["rows"]
    height = TOP + 4 * (PANEL + GAP) + 10
    m = results["machine"]
    a = results["args"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="15">wg-pkcs11 soak: '
           f'{a["peers"]} peers, chip {a["latency_ms"]} ms, a rekey every {a["rekey_ms"]} ms per '
           f'peer; per minute</text>',
           f'<text x="{WIDTH / 2}" y="38" text-anchor="middle" fill="#555">'
           f'{escape(m["cpu"])}, {m["nproc"]} CPUs, Linux {escape(m["kernel"])}, '
           f'{escape(results["started"])}</text>']
    if rows:
        for r in rows:
            r["rss_mb"] = r["rss_kb"] / 1024
        panel(out, 0, "Resident memory", rows, [("rss_mb", "#3b6fb6", "RSS")], "MiB")
        panel(out, 1, "Open file descriptors and threads", rows,
              [("fds", "#3b6fb6", "fds"), ("threads", "#e0913a", "threads")], "count")
        panel(out, 2, "Chip operations and handshakes completed", rows,
              [("chip_ops", "#3b6fb6", "chip ECDH"), ("handshakes", "#e0913a", "handshakes")],
              "per minute")
        panel(out, 3, "Packets lost (both directions, all peers)", rows,
              [("lost_into_daemon", "#3b6fb6", "into the daemon"),
               ("lost_from_daemon", "#e0913a", "from the daemon")], "per minute")
    out.append("</svg>")
    return "\n".join(out) + "\n"


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
