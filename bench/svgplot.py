"""Throughput per implementation as a small SVG bar chart (no plotting package needed)."""

from xml.sax.saxutils import escape

WIDTH, ROW, LEFT, RIGHT, TOP = 820, 46, 210, 90, 72
COLOURS = {"tcp": "#3b6fb6", "udp": "#e0913a"}


def throughput_svg(results):
    rows = [r for r in results["throughput"]]
    # The bare veth is an order of magnitude faster: it gets its own figure in the label, and the
    # scale is set by the tunnels so their differences stay visible.
    tunnels = [r for r in rows if r["name"] != "bare veth" and "tcp_mbps" in r]
    others = [r["tcp_mbps"] for r in tunnels if r["name"] in ("wireguard-go", "boringtun-cli")]
    # Issue 5's target for wg-pkcs11: 1.5x the faster of the two, single-stream TCP.
    target = 1.5 * max(others) if others else None
    scale_max = max([max(r["tcp_mbps"], r["udp_mbps"]) for r in tunnels] + [target or 0] or [1000])
    scale_max = nice_ceiling(scale_max * 1.1)
    plot_width = WIDTH - LEFT - RIGHT
    height = TOP + ROW * len(rows) + 50
    m = results["machine"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="15">'
           f'Throughput through the tunnel, median of {results["args"]["rounds"]} rounds (Mbit/s)</text>',
           f'<text x="{WIDTH / 2}" y="38" text-anchor="middle" fill="#555">'
           f'{escape(m["cpu"])}, {m["nproc"]} CPUs, Linux {escape(m["kernel"])}, {escape(results["started"])}</text>']
    for i in range(6):
        value = scale_max * i / 5
        x = LEFT + plot_width * i / 5
        out.append(f'<line x1="{x:.1f}" y1="{TOP - 5}" x2="{x:.1f}" y2="{TOP + ROW * len(rows)}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP + ROW * len(rows) + 15}" text-anchor="middle" '
                   f'fill="#555">{value:,.0f}</text>')
    if target:
        x = LEFT + plot_width * target / scale_max
        out.append(f'<line x1="{x:.1f}" y1="{TOP - 8}" x2="{x:.1f}" y2="{TOP + ROW * len(rows)}" '
                   f'stroke="#2a2" stroke-width="1.5" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{x:.1f}" y="{TOP - 11}" text-anchor="middle" fill="#2a2">'
                   f'target for wg-pkcs11 TCP: {target:,.0f}</text>')
    for index, row in enumerate(rows):
        y = TOP + ROW * index
        out.append(f'<text x="{LEFT - 8}" y="{y + ROW / 2 + 4}" text-anchor="end">'
                   f'{escape(row["name"])}</text>')
        if "tcp_mbps" not in row:
            out.append(f'<text x="{LEFT + 6}" y="{y + ROW / 2 + 4}" fill="#a00">not measured: '
                       f'{escape(row.get("not_measured", "")[:70])}...</text>')
            continue
        for offset, kind, value in ((4, "tcp", row["tcp_mbps"]), (22, "udp", row["udp_mbps"])):
            clipped = value > scale_max
            bar = plot_width * min(value, scale_max) / scale_max
            out.append(f'<rect x="{LEFT}" y="{y + offset}" width="{bar:.1f}" height="16" '
                       f'fill="{COLOURS[kind]}"/>')
            label = f'{value:,.0f}' + (" (off scale)" if clipped else "")
            tx = LEFT + bar + 4 if not clipped else LEFT + bar - 4
            anchor = "start" if not clipped else "end"
            colour = "black" if not clipped else "white"
            out.append(f'<text x="{tx:.1f}" y="{y + offset + 12}" text-anchor="{anchor}" '
                       f'fill="{colour}">{label}</text>')
    legend_y = TOP + ROW * len(rows) + 32
    out.append(f'<rect x="{LEFT}" y="{legend_y}" width="12" height="12" fill="{COLOURS["tcp"]}"/>'
               f'<text x="{LEFT + 16}" y="{legend_y + 10}">TCP, one stream</text>')
    out.append(f'<rect x="{LEFT + 150}" y="{legend_y}" width="12" height="12" fill="{COLOURS["udp"]}"/>'
               f'<text x="{LEFT + 166}" y="{legend_y + 10}">UDP at line rate, received</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_ceiling(value):
    step = 10 ** (len(str(int(value))) - 1)
    return ((int(value) // step) + 1) * step
