"""The benchmark's charts, drawn with matplotlib (Debian: python3-matplotlib) as SVG, so that a
report stays text: the same results give the same file (fixed ids, no date, text as text).

Every chart names its axes with their units and carries its reference series: the bare veth and
the targets for throughput, the noise floor and the 5 ms target for the handshake gaps, bare
software for the module, the 16 MiB target for memory, the 5 % growth line for the soak."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

plt.rcParams.update({
    "svg.hashsalt": "wg-bench",  # stable element ids: a rerun with the same figures is no diff
    "svg.fonttype": "none",      # text stays text (searchable, diffable), not glyph outlines
    "font.size": 9,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "axes.axisbelow": True,
})

TCP, UDP, TARGET, OTHER = "#3b6fb6", "#e0913a", "#2a9d2a", "#b03a2e"
REFERENCE, BARE_UDP = "#777777", "#bbbbbb"


def subtitle(results):
    m = results["machine"]
    return f"{m['cpu']}, {m['nproc']} CPUs, Linux {m['kernel']}, {results['started']}"


def save(fig, path):
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)


def bar_rows(names, height_per_row=0.42):
    """A figure tall enough for one horizontal group of bars per name, top to bottom."""
    fig, ax = plt.subplots(figsize=(9, 1.4 + height_per_row * max(1, len(names))))
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    return fig, ax


def legend(ax, handles=None):
    """Outside the plot, on its right: it never hides a bar."""
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7)


def label_bars(ax, bars, fmt="{:,.0f}"):
    for bar in bars:
        width = bar.get_width()
        if width > 0:
            ax.annotate(fmt.format(width), (width, bar.get_y() + bar.get_height() / 2),
                        xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)


def throughput_chart(results, path):
    """Part 1: TCP and UDP received per pairing; bare veth, issue 5's target and one core's
    crypto ceiling as references. Log scale: the bare veth is an order of magnitude faster."""
    rows = results["throughput"]
    names = [r["name"] for r in rows]
    fig, ax = bar_rows(names, 0.5)
    for offset, key, colour, bare_colour in ((-0.2, "tcp_mbps", TCP, REFERENCE),
                                             (0.2, "udp_mbps", UDP, BARE_UDP)):
        values = [r.get(key, 0) for r in rows]
        colours = [bare_colour if r["name"].startswith("bare veth") else colour for r in rows]
        label_bars(ax, ax.barh([i + offset for i in range(len(rows))], values, height=0.38,
                               color=colours))
    for i, row in enumerate(rows):
        if "tcp_mbps" not in row:
            ax.annotate(f"not measured: {row.get('not_measured', '')[:70]}", (0, i),
                        xycoords=("axes fraction", "data"), xytext=(4, 0),
                        textcoords="offset points", va="center", color=OTHER, fontsize=7)
    handles = [Patch(color=TCP, label="TCP, one stream"),
               Patch(color=UDP, label="UDP at line rate, received"),
               Patch(color=REFERENCE, label="bare veth, TCP (reference: no tunnel)"),
               Patch(color=BARE_UDP, label="bare veth, UDP received")]
    others = [r["tcp_mbps"] for r in rows
              if r["name"] in ("wireguard-go", "boringtun-cli") and "tcp_mbps" in r]
    if others:
        target = 1.5 * max(others)
        handles.append(ax.axvline(target, color=TARGET, linestyle="--",
                                  label=f"issue 5 target, wg-pkcs11 TCP: {target:,.0f} Mbit/s"))
    ceiling = results.get("aead_ceiling")
    if ceiling:
        goodput = min(ceiling["seal_mbps"], ceiling["open_mbps"]) * 1368 / 1420
        handles.append(ax.axvline(
            goodput, color=OTHER, linestyle=":",
            label=f"ceiling: one core's ChaCha20-Poly1305 allows {goodput:,.0f} Mbit/s TCP"))
    if any("tcp_mbps" in r for r in rows):
        ax.set_xscale("log")
    ax.set_xlabel("throughput (Mbit/s, log scale)")
    ax.set_ylabel("implementation (A -> B)")
    ax.set_title(f"Throughput through the tunnel, median of {results['args']['rounds']} rounds\n"
                 f"{subtitle(results)}", fontsize=9)
    legend(ax, handles)
    save(fig, path)


def handshake_chart(results, path):
    """Part 2: per daemon, the longest stream gap overlapping a handshake and the median over the
    handshakes; the bare veth's noise floor and the 5 ms target as references."""
    rows = [r for r in results["rekey"] if "rekeys_completed" in r]
    floor = next((r for r in results["rekey"] if "rekeys_completed" not in r
                  and "gap_into_daemon_ms" in r), None)
    fig, ax = bar_rows([r["name"] for r in rows] or ["(no daemon measured)"])
    median = [r.get("per_handshake_gap_ms_median", 0) for r in rows]
    longest = [r.get("max_gap_during_handshakes_ms", 0) for r in rows]
    label_bars(ax, ax.barh([i - 0.2 for i in range(len(rows))], median, height=0.38, color=TCP,
                           label="per handshake: median of its longest gap"), "{:.2f}")
    label_bars(ax, ax.barh([i + 0.2 for i in range(len(rows))], longest, height=0.38,
                           color=UDP, label="longest gap overlapping a handshake"), "{:.2f}")
    if floor:
        noise = max(floor["gap_into_daemon_ms"], floor["gap_from_daemon_ms"])
        ax.axvline(noise, color=REFERENCE, linestyle="-.",
                   label=f"noise floor: longest gap without a tunnel, {noise:.2f} ms")
    ax.axvline(5, color=TARGET, linestyle="--", label="target, 50 ms token: < 5 ms")
    ax.set_xlabel("gap in the 1 ms packet stream (ms; gaps under 2 ms count as 0)")
    ax.set_ylabel("daemon (responder)")
    ax.set_title(f"The data path during {results['args']['rekeys']} forced rekeys\n"
                 f"{subtitle(results)}", fontsize=9)
    legend(ax)
    save(fig, path)


# Part 3's operations: (label, measurement, key through the module, key of bare software).
MODULE_OPERATIONS = (
    ("X25519: C_DeriveKey / x25519-dalek", "derive", "derive_per_s", "bare_dh_per_s"),
    ("ECDSA P-256: C_Sign / p256", "sign", "ecdsa_sign_per_s", "bare_ecdsa_per_s"),
    ("Ed25519: C_Sign / ed25519-dalek", "sign", "eddsa_sign_per_s", "bare_eddsa_per_s"),
)


def module_operations(results):
    return [(label, results[part][mod], results[part][bare])
            for label, part, mod, bare in MODULE_OPERATIONS
            if mod in (results.get(part) or {}) and bare in results[part]]


def module_chart(results, path):
    """Part 3: operations per second through the module against bare software (the reference),
    on the virtual chip at 0 ms."""
    ops = module_operations(results)
    fig, ax = bar_rows([label for label, _, _ in ops] or ["(nothing measured)"])
    label_bars(ax, ax.barh([i - 0.2 for i in range(len(ops))], [m for _, m, _ in ops],
                           height=0.38, color=TCP, label="through libpkcs11_se050.so"))
    label_bars(ax, ax.barh([i + 0.2 for i in range(len(ops))], [b for _, _, b in ops],
                           height=0.38, color=REFERENCE, label="bare software (reference)"))
    values = [v for _, m, b in ops for v in (m, b) if v > 0]
    log_scale = bool(values) and max(values) / min(values) > 20
    if log_scale:
        ax.set_xscale("log")
    ax.set_xlabel("operations per second" + (" (log scale)" if log_scale else ""))
    ax.set_ylabel("operation: module / reference")
    ax.set_title(f"Module overhead, virtual SE050 at 0 ms\n{subtitle(results)}", fontsize=9)
    legend(ax)
    save(fig, path)


def memory_chart(results, path):
    """Part 4: resident memory idle with 1 peer and with many; the 16 MiB target."""
    data = results["memory"]
    rows = [r for r in data["implementations"] if "per_peer_kib" in r]
    fig, ax = bar_rows([r["name"] for r in rows] or ["(no daemon measured)"])
    label_bars(ax, ax.barh([i - 0.2 for i in range(len(rows))],
                           [r["one"]["rss_kib"] / 1024 for r in rows], height=0.38, color=TCP,
                           label="1 peer"), "{:.1f}")
    label_bars(ax, ax.barh([i + 0.2 for i in range(len(rows))],
                           [r["many"]["rss_kib"] / 1024 for r in rows], height=0.38, color=UDP,
                           label=f"{data['peers']} peers"), "{:.1f}")
    ax.axvline(16, color=TARGET, linestyle="--", label="target, wg-pkcs11 with 1 peer: < 16 MiB")
    ax.set_xlabel("resident memory, idle (VmRSS, MiB)")
    ax.set_ylabel("daemon")
    ax.set_title(f"Memory\n{subtitle(results)}", fontsize=9)
    legend(ax)
    save(fig, path)


# What each part draws: (results key, file name, chart); the report links the same files.
CHARTS = (("throughput", "throughput.svg", throughput_chart),
          ("rekey", "handshake.svg", handshake_chart),
          ("derive", "module.svg", module_chart),
          ("sign", "module.svg", module_chart),
          ("memory", "memory.svg", memory_chart))


def charts_for(results):
    """The chart files these results make, each once."""
    out = {}
    for key, name, draw in CHARTS:
        if key in results and name not in out:
            out[name] = draw
    return out


def soak_chart(results, path):
    """The soak, per minute: memory, descriptors and threads, chip operations against
    handshakes, packets lost; the first minute's RSS and fds +5 % as the flatness target."""
    rows = results["rows"]
    a = results["args"]
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    minutes = [r["minute"] for r in rows]
    panels = (
        ("resident memory (MiB)", [("RSS", [r["rss_kb"] / 1024 for r in rows])]),
        ("open fds / threads (count)", [("fds", [r["fds"] for r in rows]),
                                        ("threads", [r["threads"] for r in rows])]),
        ("per minute (count)", [("chip ECDH", [r["chip_ops"] for r in rows]),
                                ("handshakes completed", [r["handshakes"] for r in rows])]),
        ("packets lost per minute", [("into the daemon", [r["lost_into_daemon"] for r in rows]),
                                     ("from the daemon", [r["lost_from_daemon"] for r in rows])]),
    )
    for ax, (ylabel, series) in zip(axes, panels):
        for (label, values), colour in zip(series, (TCP, UDP)):
            ax.plot(minutes, values, marker="o", color=colour, label=label)
        ax.set_ylabel(ylabel)
    if rows:
        axes[0].axhline(rows[0]["rss_kb"] / 1024 * 1.05, color=TARGET, linestyle="--",
                        label="target: minute 1 + 5 %")
        axes[1].axhline(rows[0]["fds"] * 1.05, color=TARGET, linestyle="--",
                        label="target for fds: minute 1 + 5 %")
        axes[2].plot(minutes, [r["handshakes"] for r in rows], color=REFERENCE, linestyle=":",
                     label="target: one chip operation per handshake")
    for ax in axes:
        # Room above the highest line, the targets included (a flat series sits on its target).
        top = max([max(line.get_ydata(), default=0) for line in ax.get_lines()] + [1])
        ax.set_ylim(0, top * 1.15)
        legend(ax)
    axes[-1].set_xlabel("minute of the soak")
    if len(minutes) <= 20:
        axes[-1].set_xticks(minutes)
    else:
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_title(f"wg-pkcs11 soak: {a['peers']} peers, chip {a['latency_ms']} ms, a rekey "
                      f"every {a['rekey_ms']} ms per peer\n{subtitle(results)}", fontsize=9)
    save(fig, path)
