"""A local, fsync'd file that holds usage events the ledger could not write (its database was down, a
table was being migrated …), so that an event whose call was answered is never lost. The ledger writes
them back, idempotently, on its next successful commit.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson

from .events import UsageEvent

__all__ = ["Spool"]

log = logging.getLogger("llm_connect.usage")


class Spool:
    """JSON lines of :meth:`UsageEvent.to_dict`, appended and fsync'd before the caller is answered."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    def append(self, events: Sequence[UsageEvent]) -> None:
        """Durably add ``events`` (raises OSError if even the spool cannot be written)."""
        data = b"".join(orjson.dumps(e.to_dict()) + b"\n" for e in events)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)

    def read(self) -> list[UsageEvent]:
        """Every spooled event (a torn last line, from a crash mid-append, is skipped)."""
        with self._lock:
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                return []
        out = []
        for line in raw.splitlines():
            try:
                out.append(UsageEvent.from_dict(orjson.loads(line)))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("skipping an unreadable line in the usage spool %s", self.path)
        return out

    def clear(self, count: int) -> None:
        """Drop the first ``count`` events (those written back); keep any appended since."""
        with self._lock:
            try:
                lines = self.path.read_bytes().splitlines(keepends=True)
            except FileNotFoundError:
                return
            rest = b"".join(lines[count:])
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            tmp.write_bytes(rest)
            os.replace(tmp, self.path)
