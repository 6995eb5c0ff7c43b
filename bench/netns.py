"""The benchmark's processes and network namespaces: everything started is tracked and stopped by
its own pid, and the namespaces are the benchmark's own (removed at the end, also on Ctrl-C)."""

import os
import signal
import subprocess

from common import (FLOOD_A, FLOOD_C, IF_A, IF_B, NS_A, NS_B, NS_C, OUTER_A, OUTER_B, UAPI_DIR,
                    log, run)


class Processes:
    def __init__(self):
        self.running = []

    def start(self, cmd, ns=None, env=None, log_path=None):
        if ns:
            cmd = ["ip", "netns", "exec", ns] + cmd
        out = open(log_path, "w") if log_path else subprocess.DEVNULL
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if log_path else
                                   subprocess.DEVNULL, env=env, start_new_session=True)
        process.log_path = log_path
        self.running.append(process)
        return process

    def start_piped(self, cmd, ns=None, env=None):
        if ns:
            cmd = ["ip", "netns", "exec", ns] + cmd
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=env, start_new_session=True)
        process.log_path = None
        self.running.append(process)
        return process

    def stop(self, process, timeout=10):
        """SIGTERM, then SIGKILL after `timeout`; returns False when it had to kill."""
        clean = True
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"  pid {process.pid} ({' '.join(process.args[-2:])}) ignored SIGTERM for "
                    f"{timeout} s: killed")
                clean = False
                process.kill()
                process.wait()
        if process in self.running:
            self.running.remove(process)
        return clean

    def stop_all(self):
        for process in list(self.running):
            self.stop(process)


PROCS = Processes()

# The soak (bench/soak) passes names of its own, so that it never meets a benchmark run.
BENCH_NAMES = dict(namespaces=(NS_A, NS_B, NS_C), interfaces=(IF_A, IF_B))


def namespaces_down(names=BENCH_NAMES):
    for ns in names["namespaces"]:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for name in names["interfaces"]:
        sock = os.path.join(UAPI_DIR, name + ".sock")
        if os.path.exists(sock):
            os.unlink(sock)


def namespaces_up(names=BENCH_NAMES):
    """Namespaces A, B, C; A-B joined by one veth pair (the tunnel's outer addresses), A-C by
    another (where part 5's flood comes from)."""
    namespaces_down(names)
    ns_a, ns_b, ns_c = names["namespaces"]
    for ns in (ns_a, ns_b, ns_c):
        run(["ip", "netns", "add", ns])
        run(["ip", "link", "set", "lo", "up"], ns=ns)
    run(["ip", "link", "add", "veth-a", "netns", ns_a, "type", "veth", "peer", "name", "veth-b",
         "netns", ns_b])
    run(["ip", "link", "add", "veth-ac", "netns", ns_a, "type", "veth", "peer", "name", "veth-c",
         "netns", ns_c])
    for ns, dev, addr in ((ns_a, "veth-a", OUTER_A), (ns_b, "veth-b", OUTER_B),
                          (ns_a, "veth-ac", FLOOD_A), (ns_c, "veth-c", FLOOD_C)):
        run(["ip", "addr", "add", addr + "/24", "dev", dev], ns=ns)
        run(["ip", "link", "set", dev, "up"], ns=ns)
