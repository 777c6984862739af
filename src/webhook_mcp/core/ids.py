"""Event ids: ``evt_`` and a UUIDv7 in hex, the one id every event gets, wherever it is published."""

from __future__ import annotations

import os
import random
import time

# A generator of our own, seeded from the OS (and again in a forked child): the module's shared
# one may be seeded by anyone (random.seed(0), a test framework), which would repeat ids. It costs
# no system call per id, as os.urandom would; event ids are not secrets (every receiver sees them).
_bits = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _bits.seed(os.urandom(32)))

_VERSION_7 = 0x7 << 76
_VARIANT_RFC4122 = 0x2 << 62
_RANDOM_A = 0xFFF << 64  # the 12 random bits between the version and the variant
_RANDOM_B = (1 << 62) - 1


def new_event_id() -> str:
    """Milliseconds since the epoch first, then 74 random bits, so ids sort by creation time and
    new rows land at the end of the indexes that hold them, instead of at random places in
    indexes that stop fitting the cache as the tables grow."""
    random_bits = _bits.getrandbits(76)
    value = (time.time_ns() // 1_000_000) << 80 | _VERSION_7 | random_bits & _RANDOM_A | _VARIANT_RFC4122
    return f"evt_{value | random_bits & _RANDOM_B:032x}"
