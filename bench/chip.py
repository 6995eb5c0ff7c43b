"""Keys for the benchmark: software key pairs (wg-bench keys), and the virtual SE050 seen through
libpkcs11_se050.so, with the chip's own operation counters (the "token ops" of the report)."""

import base64
import os

from common import MODULE, WG_BENCH, WG_PKCS11, NotMeasured, last_words, run


def soft_keypair():
    out = run([WG_BENCH, "keys", "--count", "1"]).stdout.split()
    return out[0], out[1]


class Token:
    """One virtual SE050 (its own state file) seen through libpkcs11_se050.so."""

    def __init__(self, workdir, name, latency_ms):
        self.name = name
        self.state = os.path.join(workdir, f"se050-{name}.state")
        self.conf = os.path.join(workdir, f"se050-{name}-{latency_ms}ms.toml")
        with open(self.conf, "w") as f:
            f.write(f'transport = "virtual"\nvirtual_state = "{self.state}"\n'
                    f"virtual_latency_ms = {latency_ms}\n")
        self.env = dict(os.environ, PKCS11_SE050_CONF=self.conf)

    def with_latency(self, workdir, latency_ms):
        """The same chip (same state file) with another simulated latency."""
        other = Token(workdir, self.name, latency_ms)
        other.state = self.state
        with open(other.conf, "w") as f:
            f.write(f'transport = "virtual"\nvirtual_state = "{self.state}"\n'
                    f"virtual_latency_ms = {latency_ms}\n")
        return other

    def uri(self, label):
        return f"pkcs11:object={label};type=private?module-path={MODULE}"

    def genkey(self, label):
        result = run([WG_PKCS11, "genkey", self.uri(label)], env=self.env, check=False)
        said = (result.stderr + result.stdout).strip()
        if result.returncode != 0:
            raise NotMeasured(f"`wg-pkcs11 genkey` failed (exit {result.returncode}): "
                              f"{last_words(said)}")
        lines = result.stdout.strip().splitlines()
        public = lines[-1].strip() if lines else ""
        try:
            valid = len(base64.b64decode(public, validate=True)) == 32
        except ValueError:
            valid = False
        if not valid:
            raise NotMeasured(f"`wg-pkcs11 genkey` printed no public key (output {said[-200:]!r})")
        return public

    def counters(self):
        """The virtual chip's operation counters (applet: STATE.counters)."""
        return read_counters(self.state)


COUNTER_NAMES = ("apdus", "ecdh", "keygen", "deletes", "reads", "random", "writes")


def read_counters(state_path):
    """The virtual SE050's operation counters, cumulative over every process using the chip
    (pkcs11-se050 virtual_se050/counters.rs): the file `<state>.counters`, 8 bytes of magic
    `VSE050CT` then one u64 little-endian per counter."""
    path = state_path + ".counters"
    if not os.path.exists(path):
        return None if not os.path.exists(state_path) else {name: 0 for name in COUNTER_NAMES}
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"VSE050CT" or len(data) < 8 + 8 * len(COUNTER_NAMES):
        raise NotMeasured(f"{path} is not a counters file this benchmark knows")
    return {name: int.from_bytes(data[8 + 8 * i:16 + 8 * i], "little")
            for i, name in enumerate(COUNTER_NAMES)}


def ecdh_count(counters):
    return counters["ecdh"] if counters else None
