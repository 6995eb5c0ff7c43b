"""Part 4: memory. Resident memory (VmRSS, and Pss) of each daemon, idle, with 1 peer and with
--peers configured peers; the growth per extra peer."""

import time

from common import (IF_A, INNER_A, INNER_B, NS_A, OUTER_B, PORT_A, PORT_B, WG_BENCH, NotMeasured,
                    log, run)
from impls import WgPkcs11, uapi_impls
from netns import PROCS


def memory_of(pid):
    figures = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                figures["rss_kib"] = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    figures["pss_kib"] = int(line.split()[1])
    except OSError:
        pass
    return figures


def part_memory(args, workdir, results):
    out = []
    many = args.peers
    keys = run([WG_BENCH, "keys", "--count", str(many)]).stdout.split("\n")
    publics = [line.split()[1] for line in keys if line.strip()]
    many_peers = [dict(public=publics[i], allowed=f"10.{210 + i // 65536}.{(i // 256) % 256}.{i % 256}/32")
                  for i in range(many)]
    one_peer = [dict(public=publics[0], allowed=INNER_B + "/32", endpoint=f"{OUTER_B}:{PORT_B}")]
    for name, make in uapi_impls(args, workdir) + [("wg-pkcs11", lambda: WgPkcs11(workdir, 0))]:
        log(f"memory: {name}")
        entry = dict(name=name)
        impl = make()
        side = None
        try:
            side = impl.make_side(NS_A, IF_A, PORT_A, INNER_A, "mem")
            for label, peers in (("one", one_peer), ("many", many_peers)):
                process = impl.start(side, peers)
                time.sleep(args.idle_seconds)
                if process.poll() is not None:
                    raise NotMeasured(f"{name} exited with {len(peers)} peers")
                configured = run(["wg", "show", side.ifname, "peers"], ns=NS_A,
                                 check=False).stdout.split()
                figures = memory_of(process.pid)
                figures["peers_shown"] = len(configured)
                entry[label] = figures
                impl.stop(side)
            if entry["many"]["peers_shown"] != many:
                entry["warning"] = (f"`wg show` lists {entry['many']['peers_shown']} peers, "
                                    f"not {many}")
            entry["per_peer_kib"] = ((entry["many"]["rss_kib"] - entry["one"]["rss_kib"])
                                     / (many - 1))
            if "pss_kib" in entry["one"] and "pss_kib" in entry["many"]:
                entry["per_peer_pss_kib"] = ((entry["many"]["pss_kib"] - entry["one"]["pss_kib"])
                                             / (many - 1))
            log(f"  {entry}")
        except NotMeasured as e:
            entry["not_measured"] = str(e)
            log(f"  not measured: {e}")
        finally:
            if side is not None and impl.process:
                try:
                    impl.stop(side)
                except NotMeasured:
                    pass
            PROCS.stop_all()
        out.append(entry)
    results["memory"] = dict(peers=many, implementations=out)

