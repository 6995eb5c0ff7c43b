"""The implementations under test, each bringing up one end of a tunnel in a namespace
(wireguard-go, boringtun-cli, any `--impl NAME=PATH`, and wg-pkcs11 with its key in a virtual
SE050), and the Tunnel between namespaces A and B made of two of them."""

import itertools
import os
import shutil
import subprocess
import sys
import time

from chip import Token, ecdh_count, soft_keypair
from common import (INNER_A, INNER_B, IF_A, IF_B, MODULE, MTU, NS_A, NS_B, OUTER_A, OUTER_B,
                    PORT_A, PORT_B, UAPI_DIR, WG_PKCS11, NotMeasured, run, tail, wait_for)
from netns import PROCS


class Side:
    """What one end needs: its namespace, interface, keys, port and the peer it talks to."""

    def __init__(self, ns, ifname, listen_port, inner_addr, private, public):
        self.ns, self.ifname, self.listen_port = ns, ifname, listen_port
        self.inner_addr, self.private, self.public = inner_addr, private, public


def uapi_ready(ifname):
    return os.path.exists(os.path.join(UAPI_DIR, ifname + ".sock"))


def peers_config(peers):
    lines = []
    for peer in peers:
        lines.append("[Peer]")
        lines.append(f"PublicKey = {peer['public']}")
        lines.append(f"AllowedIPs = {peer['allowed']}")
        if peer.get("endpoint"):
            lines.append(f"Endpoint = {peer['endpoint']}")
        lines.append("")
    return "\n".join(lines)


class UapiDaemon:
    """A userspace implementation configured with `wg setconf` (wireguard-go, boringtun-cli)."""

    name = None
    token = None

    def __init__(self, workdir):
        self.workdir = workdir
        self.process = None

    def command(self, ifname):
        raise NotImplementedError

    def make_side(self, ns, ifname, listen_port, inner_addr, label):
        private, public = soft_keypair()
        return Side(ns, ifname, listen_port, inner_addr, private, public)

    def start(self, side, peers):
        clear_leftovers(side, self.name)
        self.process = PROCS.start(self.command(side.ifname), ns=side.ns,
                                   log_path=os.path.join(self.workdir, f"{self.name}-{side.ifname}.log"))
        wait_for(lambda: uapi_ready(side.ifname) or self.process.poll() is not None, 10,
                 f"{self.name}: no UAPI socket")
        if self.process.poll() is not None:
            raise NotMeasured(f"{self.name} exited: {tail(self.process.log_path)}")
        conf = os.path.join(self.workdir, f"{side.ifname}.setconf")
        with open(conf, "w") as f:
            f.write(f"[Interface]\nPrivateKey = {side.private}\nListenPort = {side.listen_port}\n\n")
            f.write(peers_config(peers))
        run(["wg", "setconf", side.ifname, conf], ns=side.ns, timeout=300)
        run(["ip", "addr", "add", side.inner_addr + "/24", "dev", side.ifname], ns=side.ns)
        run(["ip", "link", "set", side.ifname, "mtu", str(MTU), "up"], ns=side.ns)
        return self.process

    def stop(self, side):
        if self.process:
            PROCS.stop(self.process)
            self.process = None
        clear_leftovers(side, self.name)


def clear_leftovers(side, what):
    """A daemon that was killed leaves its UAPI socket behind; the next one must not talk to it."""
    wait_for(lambda: not link_exists(side), 20, f"{what}: interface {side.ifname} not gone")
    sock = os.path.join(UAPI_DIR, side.ifname + ".sock")
    if os.path.exists(sock):
        os.unlink(sock)


def link_exists(side):
    return subprocess.run(["ip", "netns", "exec", side.ns, "ip", "link", "show", side.ifname],
                          capture_output=True).returncode == 0


class WireguardGo(UapiDaemon):
    name = "wireguard-go"

    def command(self, ifname):
        return ["wireguard-go", "-f", ifname]


class BoringtunCli(UapiDaemon):
    name = "boringtun-cli"

    def command(self, ifname):
        return [shutil.which("boringtun-cli") or os.path.expanduser("~/.cargo/bin/boringtun-cli"),
                "-f", "--disable-drop-privileges", ifname]


class CustomUapi(UapiDaemon):
    """Any userspace WireGuard driven like wireguard-go (`PATH -f IFNAME`, configured with `wg`),
    named on the command line with `--impl NAME=PATH`."""

    def __init__(self, workdir, name, path):
        super().__init__(workdir)
        self.name, self.path = name, path

    def command(self, ifname):
        return [self.path, "-f", ifname]


def custom_impls(args):
    """(name, path) of every `--impl NAME=PATH`, checked: a name clashing with a built-in one or
    a path that is not an executable file is refused before anything starts."""
    out = []
    for spec in args.impl or []:
        name, sep, path = spec.partition("=")
        name, path = name.strip(), os.path.abspath(os.path.expanduser(path.strip()))
        if not sep or not name or not path:
            sys.exit(f"--impl {spec!r}: expected NAME=PATH")
        if name in ("bare veth", "wireguard-go", "boringtun-cli", "wg-pkcs11") or "->" in name \
                or "," in name or name in (n for n, _ in out):
            sys.exit(f"--impl {spec!r}: the name {name!r} is taken or contains '->' or ','")
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            sys.exit(f"--impl {spec!r}: {path} is not an executable file")
        out.append((name, path))
    return out


def uapi_impls(args, workdir):
    """Every implementation driven through `wg` alone, for the parts that compare daemons:
    (name, factory), the built-in ones first, then each `--impl`."""
    return ([("wireguard-go", lambda: WireguardGo(workdir)),
             ("boringtun-cli", lambda: BoringtunCli(workdir))]
            + [(name, (lambda n=name, p=path: CustomUapi(workdir, n, p)))
               for name, path in custom_impls(args)])


SIDE_NUMBERS = itertools.count(1)


class WgPkcs11:
    """wg-pkcs11 with its key in a virtual SE050, addressed by a pkcs11: URI."""

    name = "wg-pkcs11"

    def __init__(self, workdir, latency_ms=0, extra_env=None, cpus=None):
        self.workdir = workdir
        self.latency_ms = latency_ms
        self.process = None
        self.tokens = {}
        self.token = None
        # Extra environment for the daemon (WG_PKCS11_CRYPTO_HELPERS), and the CPUs it may run
        # on (taskset -c), for the scaling rows of part 1.
        self.extra_env = dict(extra_env or {})
        self.cpus = cpus

    def make_side(self, ns, ifname, listen_port, inner_addr, label):
        check_wg_pkcs11_built()
        # A fresh chip (state file) and key for every side made: no run depends on another.
        label = f"{label}{next(SIDE_NUMBERS)}"
        token = Token(self.workdir, label, self.latency_ms)
        key_label = f"bench-{label}"
        public = token.genkey(key_label)
        side = Side(ns, ifname, listen_port, inner_addr, token.uri(key_label), public)
        side.token = token
        return side

    def start(self, side, peers):
        clear_leftovers(side, "wg-pkcs11")
        self.token = side.token
        conf = os.path.join(self.workdir, f"{side.ifname}.conf")
        with open(conf, "w") as f:
            f.write(f"[Interface]\nPrivateKey = {side.private}\nListenPort = {side.listen_port}\n"
                    f"Address = {side.inner_addr}/24\nMTU = {MTU}\n\n")
            f.write(peers_config(peers))
        cmd = [WG_PKCS11, "up", "--foreground", conf]
        if self.cpus is not None:
            cmd = ["taskset", "-c", self.cpus] + cmd
        self.process = PROCS.start(cmd, ns=side.ns, env=dict(side.token.env, **self.extra_env),
                                   log_path=os.path.join(self.workdir, f"wg-pkcs11-{side.ifname}.log"))

        def up():
            return self.process.poll() is not None or (uapi_ready(side.ifname) and subprocess.run(
                ["ip", "netns", "exec", side.ns, "ip", "addr", "show", "dev", side.ifname],
                capture_output=True, text=True).stdout.count(side.inner_addr) > 0)
        wait_for(up, 60, "wg-pkcs11: interface with its address and UAPI socket not up")
        if self.process.poll() is not None:
            raise NotMeasured(f"wg-pkcs11 up exited: {tail(self.process.log_path, 1)}")
        return self.process

    def stop(self, side):
        if self.process:
            PROCS.stop(self.process)
            self.process = None
        clear_leftovers(side, "wg-pkcs11")


def check_wg_pkcs11_built():
    for path, what in ((WG_PKCS11, "the wg-pkcs11 binary"), (MODULE, "libpkcs11_se050.so")):
        if not os.path.exists(path):
            raise NotMeasured(f"{what} was not built ({path})")


class Tunnel:
    """A tunnel between namespaces A and B: `left` at A, `right` at B."""

    def __init__(self, left, right):
        self.left, self.right = left, right
        self.sides = None
        self.first_handshake_ops = [None, None]

    def setup(self, sides=None):
        """Keys are made once per pairing (token keys are persistent) and reused every round."""
        if sides is None:
            sides = (self.left.make_side(NS_A, IF_A, PORT_A, INNER_A, "a"),
                     self.right.make_side(NS_B, IF_B, PORT_B, INNER_B, "b"))
        self.sides = sides
        return sides

    def up(self, extra_peers_a=()):
        a, b = self.sides
        tokens = [getattr(side, "token", None) for side in (a, b)]
        before = [ecdh_count(t.counters()) if t else None for t in tokens]
        self.left.start(a, [dict(public=b.public, allowed=INNER_B + "/32",
                                 endpoint=f"{OUTER_B}:{PORT_B}")] + list(extra_peers_a))
        self.right.start(b, [dict(public=a.public, allowed=INNER_A + "/32",
                                  endpoint=f"{OUTER_A}:{PORT_A}")])
        end = time.time() + 15
        while time.time() < end:
            if run(["ping", "-c", "1", "-W", "1", INNER_B], ns=NS_A, check=False).returncode == 0:
                # Token operations of start-up and the first handshake (A initiates: its ping
                # goes first), per side; None for a key in memory.
                after = [ecdh_count(t.counters()) if t else None for t in tokens]
                self.first_handshake_ops = [
                    (y - (x or 0)) if y is not None else None for x, y in zip(before, after)]
                return
        raise NotMeasured("no ping through the tunnel within 15 s (no handshake?)")

    def down(self):
        a, b = self.sides
        errors = []
        for impl, side in ((self.left, a), (self.right, b)):
            try:
                impl.stop(side)
            except NotMeasured as e:
                errors.append(str(e))
        if errors:
            raise RuntimeError("; ".join(errors))
