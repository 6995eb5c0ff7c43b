"""Part 5: a flood of mac1-valid initiations from a third namespace, while a legitimate
wireguard-go peer pings through its tunnel and a second legitimate peer keeps rekeying."""

import re

from chip import ecdh_count, soft_keypair
from common import (FLOOD_A, IF_A, IF_B, INNER_A, INNER_B, INNER_REKEYER, NS_A, NS_B, NS_C,
                    OUTER_A, OUTER_B, PORT_A, PORT_B, PORT_REKEYER, WG_BENCH, NotMeasured,
                    key_values, last_words, log, run)
from impls import Tunnel, WgPkcs11, WireguardGo, uapi_impls
from netns import PROCS


def part_flood(args, workdir, results):
    configs = uapi_impls(args, workdir) + [
        ("wg-pkcs11, token 0 ms", lambda: WgPkcs11(workdir, 0)),
        ("wg-pkcs11, token 50 ms", lambda: WgPkcs11(workdir, 50)),
    ]
    out = []
    for name, make in configs:
        log(f"flood: {name} (legitimate peers: wireguard-go, and a rekeying boringtun peer)")
        entry = dict(name=name, rate=args.flood_rate, seconds=args.flood_seconds)
        tunnel = Tunnel(make(), WireguardGo(workdir))
        try:
            a, b = tunnel.setup((
                tunnel.left.make_side(NS_A, IF_A, PORT_A, INNER_A,
                                      f"flood{getattr(tunnel.left, 'latency_ms', '')}"),
                tunnel.right.make_side(NS_B, IF_B, PORT_B, INNER_B, "b")))
            # A second legitimate peer, run in-process by boringtun, keeps forcing handshakes
            # through the flood: they must still complete (with a cookie round trip when the
            # daemon is under load).
            rekeyer_private, rekeyer_public = soft_keypair()
            tunnel.up([dict(public=rekeyer_public, allowed=INNER_REKEYER + "/32",
                            endpoint=f"{OUTER_B}:{PORT_REKEYER}")])
            token = getattr(a, "token", None)
            interval_ms, settle_ms = 300, 500
            rekeys = max(1, int((args.flood_seconds * 1000 - 2 * settle_ms) / interval_ms))
            rekeyer = PROCS.start_piped(
                [WG_BENCH, "rekey-peer", "--bind", f"{OUTER_B}:{PORT_REKEYER}", "--endpoint",
                 f"{OUTER_A}:{PORT_A}", "--private", rekeyer_private, "--peer-public", a.public,
                 "--inner-src", INNER_REKEYER, "--inner-dst", INNER_A, "--dst-port", "5557",
                 "--rekeys", str(rekeys), "--rekey-interval-ms", str(interval_ms),
                 "--settle-ms", str(settle_ms)], ns=NS_B)
            rekeyer.stdout.readline()
            if "ready=1" not in rekeyer.stdout.readline():
                raise NotMeasured("the rekeying legitimate peer got no first handshake: "
                                  + last_words(rekeyer.stderr.read()))
            before = ecdh_count(token.counters()) if token else None
            pings = int(args.flood_seconds / 0.01)
            ping = PROCS.start_piped(["ping", "-i", "0.01", "-c", str(pings), "-W", "1", INNER_A],
                                     ns=NS_B)
            flood = run([WG_BENCH, "flood", "--to", f"{FLOOD_A}:{PORT_A}", "--responder-public",
                         a.public, "--rate", str(args.flood_rate), "--seconds",
                         str(args.flood_seconds)], ns=NS_C, timeout=args.flood_seconds + 30)
            ping_out, _ = ping.communicate(timeout=args.flood_seconds + 30)
            rekey_out, rekey_err = rekeyer.communicate(timeout=args.flood_seconds + 30)
            if rekeyer.returncode == 0:
                r = key_values(rekey_out)
                entry.update(legit_rekeys_sent=int(r["rekeys_sent"]),
                             legit_rekeys_completed=int(r["rekeys_completed"]),
                             legit_handshake_ms_median=float(r.get("handshake_ms_median", "nan")),
                             legit_handshake_ms_max=float(r.get("handshake_ms_max", "nan")))
            else:
                entry["legit_rekeys_not_measured"] = last_words(rekey_err)
            after = ecdh_count(token.counters()) if token else None
            figures = key_values(flood.stdout)
            entry.update(sent=int(figures["sent"]), rate_achieved=float(figures["rate_achieved"]),
                         cookie_replies=int(figures["cookie_replies"]),
                         responses=int(figures["responses"]))
            m = re.search(r"(\d+) packets transmitted, (\d+) received", ping_out)
            if m:
                entry["pings_sent"], entry["pings_received"] = int(m.group(1)), int(m.group(2))
                entry["ping_loss_percent"] = 100 * (1 - int(m.group(2)) / max(1, int(m.group(1))))
            m = re.search(r"= [\d.]+/([\d.]+)/([\d.]+)/", ping_out)
            if m:
                entry["ping_avg_ms"], entry["ping_max_ms"] = float(m.group(1)), float(m.group(2))
            # Still alive after the flood? One more handshake-free ping.
            entry["tunnel_after"] = run(["ping", "-c", "3", "-W", "1", INNER_A], ns=NS_B,
                                        check=False).returncode == 0
            if token:
                if before is None or after is None:
                    entry["token_ops_not_measured"] = (
                        f"no ECDH counter found in {token.state}.counters")
                else:
                    entry["token_ops"] = after - before
            log("  " + ", ".join(f"{k}={v}" for k, v in entry.items() if k != "name"))
        except NotMeasured as e:
            entry["not_measured"] = str(e)
            log(f"  not measured: {e}")
        finally:
            if tunnel.sides:
                try:
                    tunnel.down()
                except (RuntimeError, NotMeasured) as e:
                    log(f"  teardown: {e}")
            PROCS.stop_all()
        out.append(entry)
    results["flood"] = out

