"""Part 2: the token on the handshake path. A rekeying peer forces handshakes under a 1 ms
packet stream each way; the longest gaps are set against the handshake windows, the token's
operations are counted, and the same streams over the bare veth give the noise floor."""

import statistics
import time

from chip import ecdh_count, soft_keypair
from common import (IF_A, INNER_A, INNER_B, NS_A, NS_B, OUTER_A, OUTER_B, PORT_A, PORT_B,
                    WG_BENCH, NotMeasured, key_values, last_words, log)
from impls import WgPkcs11, uapi_impls
from netns import PROCS


def pairs(text, key):
    """Every `key=a,b` line (listed gaps, handshake windows) as (a, b) integers."""
    out = []
    for line in text.splitlines():
        if line.startswith(key + "="):
            a, _, b = line[len(key) + 1:].partition(",")
            out.append((int(a), int(b)))
    return out


def split_gaps(gaps, windows, slack_ns=2_000_000):
    """Longest gap that overlaps a handshake (initiation sent .. response received + slack) and
    longest one elsewhere, in ms, with how many of the listed gaps overlapped one."""
    during, elsewhere = [], []
    for start, end in gaps:
        hit = any(start < done + slack_ns and end > sent for sent, done in windows)
        (during if hit else elsewhere).append((end - start) / 1e6)
    return max(during, default=0.0), max(elsewhere, default=0.0), len(during), len(gaps)


def per_handshake_gaps(gap_lists, windows, slack_ns=2_000_000):
    """For each handshake window, the longest gap (either direction) overlapping it, in ms; gaps
    under 2 ms are not listed and count as 0. A data path that waits for the token stalls during
    every handshake; the scheduler's noise hits only some: the median over the handshakes tells
    the two apart."""
    out = []
    for sent, done in windows:
        longest = 0.0
        for gaps in gap_lists:
            for start, end in gaps:
                if start < done + slack_ns and end > sent:
                    longest = max(longest, (end - start) / 1e6)
        out.append(longest)
    return out


def part_rekey(args, workdir, results):
    configs = [(name, make, None) for name, make in uapi_impls(args, workdir)] + [
        ("wg-pkcs11, token 0 ms", lambda: WgPkcs11(workdir, 0), 0),
        ("wg-pkcs11, token 50 ms", lambda: WgPkcs11(workdir, 50), 50),
    ]
    out = []
    log("rekeys: noise floor of the 1 ms streams without a tunnel")
    out.append(stream_noise_floor((2000 + args.rekeys * 300) / 1000))
    PROCS.stop_all()
    for name, make, latency in configs:
        log(f"rekeys: {name}")
        entry = dict(name=name, latency_ms=latency)
        impl = make()
        side = None
        try:
            side = impl.make_side(NS_A, IF_A, PORT_A, INNER_A, f"rekey{latency}")
            entry.update(measure_rekeys(args, impl, side))
            log("  " + ", ".join(f"{k}={v}" for k, v in entry.items() if k != "name"))
        except NotMeasured as e:
            entry["not_measured"] = str(e)
            log(f"  not measured: {e}")
        finally:
            if side is not None and impl.process:
                try:
                    impl.stop(side)
                except NotMeasured as e:
                    log(f"  teardown: {e}")
            PROCS.stop_all()
        out.append(entry)
    results["rekey"] = out


def stream_noise_floor(seconds):
    """The same two 1 ms streams over the bare veth, no tunnel: the gaps this machine's scheduler
    causes by itself, to read the tunnel's gaps against."""
    into_a = PROCS.start_piped([WG_BENCH, "stream-recv", "--bind", f"{OUTER_A}:5555",
                                "--seconds", str(seconds + 1)], ns=NS_A)
    into_b = PROCS.start_piped([WG_BENCH, "stream-recv", "--bind", f"{OUTER_B}:5556",
                                "--seconds", str(seconds + 1)], ns=NS_B)
    time.sleep(0.2)
    senders = [PROCS.start_piped([WG_BENCH, "stream-send", "--to", f"{OUTER_A}:5555",
                                  "--seconds", str(seconds)], ns=NS_B),
               PROCS.start_piped([WG_BENCH, "stream-send", "--to", f"{OUTER_B}:5556",
                                  "--seconds", str(seconds)], ns=NS_A)]
    for sender in senders:
        sender.communicate(timeout=seconds + 30)
    a = key_values(into_a.communicate(timeout=30)[0])
    b = key_values(into_b.communicate(timeout=30)[0])
    return dict(name="no tunnel (bare veth): noise floor", latency_ms=None,
                gap_into_daemon_ms=float(a["max_gap_ms"]), gap_from_daemon_ms=float(b["max_gap_ms"]),
                lost_into_daemon=int(a["lost"]), lost_from_daemon=int(b["lost"]),
                gaps_over_5ms=int(a["gaps_over_5ms"]) + int(b["gaps_over_5ms"]))


def measure_rekeys(args, impl, side):
    peer_private, peer_public = soft_keypair()
    impl.start(side, [dict(public=peer_public, allowed=INNER_B + "/32",
                           endpoint=f"{OUTER_B}:{PORT_B}")])
    rekeys, interval_ms, settle_ms = args.rekeys, 300, 1000
    window = (2 * settle_ms + rekeys * interval_ms) / 1000
    driver = PROCS.start_piped(
        [WG_BENCH, "rekey-peer", "--bind", f"{OUTER_B}:{PORT_B}", "--endpoint",
         f"{OUTER_A}:{PORT_A}", "--private", peer_private, "--peer-public", side.public,
         "--inner-src", INNER_B, "--inner-dst", INNER_A, "--dst-port", "5555",
         "--rekeys", str(rekeys), "--rekey-interval-ms", str(interval_ms),
         "--settle-ms", str(settle_ms)], ns=NS_B)
    first = driver.stdout.readline()
    ready = driver.stdout.readline()
    if "ready=1" not in ready:
        driver.wait(timeout=15)
        raise NotMeasured(f"rekeying peer got no first handshake: {last_words(driver.stderr.read())}")
    initial = key_values(first)
    # Read after the first handshake: what follows is the forced rekeys only (the once-per-peer
    # static-static DH is behind us).
    before = side.token.counters() if getattr(side, "token", None) else None
    receiver = PROCS.start_piped([WG_BENCH, "stream-recv", "--bind", f"{INNER_A}:5555",
                                  "--seconds", str(window + 1)], ns=NS_A)
    sender = PROCS.start_piped([WG_BENCH, "stream-send", "--to", f"{INNER_B}:5556",
                                "--seconds", str(window)], ns=NS_A)
    out, err = driver.communicate(timeout=window + 30)
    if driver.returncode != 0:
        raise NotMeasured(f"rekeying peer failed: {last_words(err)}")
    peer_figures = key_values(out)
    recv_out, _ = receiver.communicate(timeout=30)
    sender.communicate(timeout=30)
    into_daemon = key_values(recv_out)
    after = side.token.counters() if getattr(side, "token", None) else None
    result = dict(
        handshake_initial_ms=float(initial["handshake_initial_ms"]),
        rekeys_sent=int(peer_figures["rekeys_sent"]),
        rekeys_completed=int(peer_figures["rekeys_completed"]),
        handshake_ms_median=float(peer_figures.get("handshake_ms_median", "nan")),
        handshake_ms_max=float(peer_figures.get("handshake_ms_max", "nan")),
        # Stream peer -> daemon (decrypted by the daemon) and daemon -> peer (encrypted by it).
        gap_into_daemon_ms=float(into_daemon["max_gap_ms"]),
        lost_into_daemon=int(into_daemon["lost"]),
        gap_from_daemon_ms=float(peer_figures["rx_max_gap_ms"]),
        lost_from_daemon=int(peer_figures["rx_lost"]),
        gaps_over_5ms=int(into_daemon["gaps_over_5ms"]) + int(peer_figures["rx_gaps_over_5ms"]),
        overlapped=int(peer_figures.get("rekeys_overlapped", 0)),
        refused=int(peer_figures.get("rekeys_refused", 0)),
    )
    result["max_gap_ms"] = max(result["gap_into_daemon_ms"], result["gap_from_daemon_ms"])
    # The machine's own scheduling makes gaps too: split the long ones (> 2 ms) by whether they
    # overlap a handshake, which is when a data path that waits for the token would stall.
    windows = pairs(out, "handshake_at")
    into = split_gaps(pairs(recv_out, "gap_at"), windows)
    from_ = split_gaps(pairs(out, "rx_gap_at"), windows)
    each = per_handshake_gaps([pairs(recv_out, "gap_at"), pairs(out, "rx_gap_at")], windows)
    if each:
        result["per_handshake_gap_ms_median"] = statistics.median(each)
        result["handshakes_with_gap_over_5ms"] = sum(1 for g in each if g > 5)
    result.update(
        hs_gap_into_daemon_ms=into[0], hs_gap_from_daemon_ms=from_[0],
        other_gap_into_daemon_ms=into[1], other_gap_from_daemon_ms=from_[1],
        long_gaps_during_handshakes=into[2] + from_[2], long_gaps=into[3] + from_[3],
        handshake_time_share=sum(d - s_ for s_, d in windows) / 1e9 / window if windows else 0.0)
    result["max_gap_during_handshakes_ms"] = max(into[0], from_[0])
    if getattr(side, "token", None):
        b, a = ecdh_count(before), ecdh_count(after)
        if b is None or a is None:
            result["token_ops_not_measured"] = (
                f"no ECDH counter found in {side.token.state}.counters")
        else:
            # Every initiation the daemon received costs its es, completed or not.
            result["token_ops"] = a - b
            result["token_ops_per_handshake"] = (a - b) / max(1, result["rekeys_sent"])
    return result

