"""The id sources: random ids never repeat (also across fork); usage-event ids are UUIDv7s in time order."""

from __future__ import annotations

import time
import uuid

from llm_connect._ids import random_hex, time_ordered_hex
from llm_connect.usage import new_request_id


def test_random_hex_has_the_asked_width_and_does_not_repeat() -> None:
    ids = {random_hex(12) for _ in range(50_000)}
    assert len(ids) == 50_000
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    assert len(random_hex()) == 32


def test_event_ids_are_uuid7_in_time_order() -> None:
    before_ms = time.time_ns() // 1_000_000
    first = new_request_id()
    u = uuid.UUID(hex=first)
    assert len(first) == 32 and first == first.lower()
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert before_ms <= int(first[:12], 16) <= time.time_ns() // 1_000_000  # the leading 48 bits: Unix ms
    time.sleep(0.002)
    later = [time_ordered_hex() for _ in range(20_000)]
    assert len(set(later)) == len(later)  # 74 random bits per millisecond
    assert all(first < x for x in later)  # a later millisecond sorts later
    assert later == sorted(later, key=lambda x: x[:12])  # never back in time within one process


def test_a_forked_child_draws_other_ids(in_fork) -> None:
    child = in_fork(lambda: random_hex(16) + time_ordered_hex()[12:])
    mine = random_hex(16) + time_ordered_hex()[12:]
    assert len(child) == 52 and child != mine
