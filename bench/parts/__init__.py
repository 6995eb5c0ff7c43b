"""The parts of the benchmark, in the order `--parts` numbers them: (number, key of its results
and failures, whether it needs the benchmark's network namespaces, function(args, workdir,
results))."""

import storm
from parts.flood import part_flood
from parts.handshake import part_rekey
from parts.memory import part_memory
from parts.module import part_module
from parts.profile import part_profile
from parts.throughput import part_throughput

PARTS = (
    (1, "throughput", True, part_throughput),
    (2, "rekey", True, part_rekey),
    (3, "derive", False, part_module),
    (4, "memory", True, part_memory),
    (5, "flood", True, part_flood),
    # device_storm.rs makes namespaces of its own.
    (6, "storm", False, lambda args, workdir, results: storm.part_storm(results)),
    (7, "profile", True, part_profile),
)
