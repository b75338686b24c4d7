"""Ids for requests, usage events and budget reservations, without a system call per id.

Every call takes three ids (the gateway's request id, the usage event's id, the budget reservation's). Drawing
each from ``os.urandom`` is a system call that also releases the GIL, and on a loaded gateway another thread
(the ledger writer) takes the GIL for the rest of its switch interval. Instead one generator per process is seeded
from ``os.urandom`` once, and again in every forked child, so processes never share a sequence — and it is our own
instance, so a program that calls ``random.seed()`` does not make ids repeat between runs.
These ids are unique, not secret (a Mersenne Twister can be predicted from its output): anything an
attacker must not guess — keys, tokens — comes from :mod:`secrets`.

Usage events, the rows of the ledger, get time-ordered ids (UUIDv7): a random key puts every insert on a
random page of the primary-key index, so each event dirties, logs and later checkpoints a page of its own; a
time-ordered key appends, and a batch of events shares the index's last page (half the ledger's cost per
event in ``bench``-style batches).
"""

from __future__ import annotations

import functools
import os
import random
import time

__all__ = ["random_hex", "time_ordered_hex"]


class _Source:
    __slots__ = ("bits",)

    def __init__(self) -> None:
        rng = random.Random(os.urandom(32))
        self.bits = rng.getrandbits  # one C call per id: atomic under the GIL, safe from any thread
        os.register_at_fork(after_in_child=lambda: rng.seed(os.urandom(32)))


@functools.cache
def _source() -> _Source:
    return _Source()


def random_hex(nbytes: int = 16) -> str:
    """``2 * nbytes`` random lower-case hex digits (a 16-byte id is as unlikely to repeat as a UUID4)."""
    return "%0*x" % (nbytes * 2, _source().bits(nbytes * 8))  # noqa: UP031 - the fastest spelling


_LOW62 = (1 << 62) - 1


def time_ordered_hex() -> str:
    """A UUIDv7 as 32 lower-case hex digits: the Unix time in milliseconds (48 bits), the version, 74 random
    bits with the variant. Ids made in a later millisecond sort after earlier ones."""
    ms = time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF
    r = _source().bits(74)
    return "%032x" % (ms << 80 | 0x7 << 76 | (r >> 62) << 64 | 0b10 << 62 | (r & _LOW62))
