"""A local, fsync'd file that holds usage events the ledger could not write (its database was down, a
table was being migrated …), so that an event whose call was answered is never lost. The ledger writes
them back, idempotently, on its next successful commit (or while idle, every few seconds).

Several processes may share one spool (gateway replicas on one SQLite file): appends and the write-back hold
an exclusive ``flock`` on the spool file, so a write-back never drops an event appended meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
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

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        """The spool file, open for reading and writing, held by this thread alone and (``flock``) by this
        process alone among those sharing it."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                try:
                    import fcntl
                except ImportError:  # pragma: no cover - not POSIX: threads only
                    pass
                else:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                yield fd
            finally:
                os.close(fd)  # releases the flock

    def append(self, events: Sequence[UsageEvent]) -> None:
        """Durably add ``events`` (raises OSError if even the spool cannot be written)."""
        opts = orjson.OPT_NON_STR_KEYS
        data = b"".join(orjson.dumps(e.to_dict(), default=str, option=opts) + b"\n" for e in events)
        with self._locked() as fd:
            os.lseek(fd, 0, os.SEEK_END)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)

    def read(self) -> list[UsageEvent]:
        """Every spooled event (a torn last line, from a crash mid-append, is skipped)."""
        with self._locked():
            return self._read()

    def drain(self, write: Callable[[list[UsageEvent]], None]) -> int:
        """Hand every spooled event to ``write`` and, once it returned, empty the spool — all under the lock,
        so nothing appended meanwhile is lost. If ``write`` raises, the spool is left as it was. Returns the
        number of events written back."""
        with self._locked() as fd:
            events = self._read()
            if events:
                write(events)
            os.ftruncate(fd, 0)
            return len(events)

    def _read(self) -> list[UsageEvent]:
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
        with self._locked() as fd:
            rest = b"".join(self.path.read_bytes().splitlines(keepends=True)[count:])
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, rest)
            os.fsync(fd)
