"""The usage ledger: every UsageEvent persisted, in SQLite (default) or PostgreSQL.

Durability contract: :meth:`Ledger.record` and :meth:`Ledger.arecord` return only after the transaction
holding the event is committed. An event whose call was acknowledged after its record returned is never
lost, ``kill -9`` included. SQLite runs in WAL mode with ``synchronous=NORMAL`` by default (a commit is in the
WAL before the call returns: it survives any process kill); ``synchronous="FULL"`` also fsyncs the WAL at each
commit, so it survives an OS crash or power cut too (one fsync per group commit).
PostgreSQL commits with its own (default: synchronous) durability.

One dedicated writer thread per ledger owns the write connection. Events queued while a commit is running
are written together in the next transaction (group commit), so the fsync cost is shared under load;
``arecord`` hands its event to that thread and awaits a future, so the event loop never blocks on I/O.

Writes are idempotent on ``request_id`` (primary key; a known id is skipped): recording an event twice never
counts it twice. Costs are exact: NUMERIC in PostgreSQL, decimal text in SQLite summed with an exact
Decimal aggregate.

A charged call's event is never dropped silently. Metadata the table cannot hold as JSON (nested past
orjson's limit, an integer beyond 64 bits) is stored as ``{"_unstorable": "<reason>"}``, the row kept; a batch
the database refuses goes to the spool and is written back later (see ``_writer``). Each such case is
reported to the ``on_failure`` hook as ``(kind, events, error)``, kind one of :data:`FAILURE_KINDS`.

Schema changes are additive and applied at open: a table from an older version gains the ``estimated`` and
``endpoint`` columns (SQLite ``ALTER TABLE ... ADD COLUMN``, PostgreSQL ``ADD COLUMN IF NOT EXISTS``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import re
import sqlite3
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from ..errors import LLMConfigurationError, LLMUsageError
from ._queries import COLUMNS, GROUP_BYS, LedgerQueries
from ._writer import GroupCommitWriter, Item, Upkeep
from .events import UsageEvent
from .spool import Spool
from .tracker import UsageTracker

log = logging.getLogger("llm_connect.usage")

__all__ = [
    "FAILURE_KINDS",
    "GROUP_BYS",
    "Ledger",
    "LedgerSubscriber",
    "OnFailure",
    "PostgresLedger",
    "SqliteLedger",
    "default_db_path",
]

_UTC = UTC
_INT64_MAX = 2**63 - 1
_TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

#: what ``on_failure`` reports: metadata stored as ``{"_unstorable": ...}`` (row kept); an event refused before
#: it was queued (the caller gets LLMUsageError); a batch the database refused, kept in the spool; a spool
#: write-back that failed (retried); events neither the database nor the spool took (the caller gets the error)
FAILURE_KINDS = ("unstorable_metadata", "refused", "spooled", "replay", "lost")

#: ``on_failure(kind, events, error)``: ``events`` is how many events that failure touched
OnFailure = Callable[[str, int, BaseException | None], None]


def default_db_path() -> Path:
    """The default SQLite ledger file: ``usage.sqlite3`` in the data directory (``$LLM_CONNECT_HOME``, else
    ``$XDG_DATA_HOME/llm-connect``, else ``~/.local/share/llm-connect``). ``$LLM_CONNECT_LEDGER`` overrides
    the whole target (see :func:`llm_connect.paths.default_ledger_url`)."""
    from ..paths import data_dir

    return data_dir() / "usage.sqlite3"


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=_UTC) if ts.tzinfo is None else ts.astimezone(_UTC)


def _no_nul(value: Any) -> Any:
    return value.replace("\x00", "").replace("\\u0000", "") if isinstance(value, str) else value


def _dumps(meta: dict[str, Any]) -> str:
    return orjson.dumps(meta or {}, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _storable(meta: dict[str, Any]) -> tuple[str, str | None]:
    """(the metadata's JSON, None), or (the JSON of ``{"_unstorable": reason}``, reason) when it cannot be
    stored: the row is kept either way."""
    try:
        return _dumps(meta), None
    except TypeError as exc:  # orjson.JSONEncodeError: "Recursion limit reached", "Integer exceeds 64-bit range"
        reason = f"{type(exc).__name__}: {exc}"
        return _dumps({"_unstorable": reason}), reason


class LedgerSubscriber:
    """Attaches a ledger to a UsageTracker: ``emit`` records synchronously, ``aemit`` awaits ``arecord``."""

    #: ``arecord`` queues the event for the writer thread before it first waits: a cancelled caller cannot
    #: lose it, so the tracker awaits it directly (no task)
    cancel_safe = True

    def __init__(self, ledger: Ledger, tracker: UsageTracker | None = None) -> None:
        self.ledger = ledger
        self._unsubscribe: Callable[[], None] | None = tracker.subscribe(self) if tracker is not None else None

    def __call__(self, event: UsageEvent) -> None:
        self.ledger.record(event)

    async def acall(self, event: UsageEvent) -> None:
        await self.ledger.arecord(event)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


class Ledger(LedgerQueries):
    """Base of the SQLite and PostgreSQL ledgers: the writer thread, the read API, group-bys.

    ``on_failure(kind, events, error)`` is called (from the caller's or the writer's thread) for every event
    that does not reach the table the normal way; see :data:`FAILURE_KINDS`. It must not block.
    """

    #: the SQL parameter marker of the dialect
    _P = "?"

    def __init__(
        self,
        *,
        table: str = "llm_usage",
        batch_max: int = 512,
        spool: str | os.PathLike[str] | None = None,
        on_failure: OnFailure | None = None,
        replay_interval: float = 5.0,
    ) -> None:
        if not _TABLE_RE.match(table):
            raise LLMConfigurationError(f"ledger table name {table!r} is not a plain SQL identifier")
        self.table = table
        #: where events go when the database cannot take them (written back on the next commit)
        self.spool = Spool(spool) if spool is not None else None
        self.batch_max = max(1, int(batch_max))
        self.on_failure = on_failure
        self._writer = GroupCommitWriter(
            connect=self._connect,
            write=self._write,
            to_row=self._to_row,
            spool=self.spool,
            batch_max=self.batch_max,
            report=self._failed,
            replay_interval=replay_interval,
            after_answer=self._after_answer,
        )

    def _after_answer(self, conn: Any) -> None:
        """Upkeep on the write connection after a batch's callers were answered (none by default)."""

    def _failed(self, kind: str, events: int, error: BaseException | None) -> None:
        hook = self.on_failure
        if hook is not None:
            try:
                hook(kind, events, error)
            except Exception:  # a broken hook must not break a write
                log.exception("the ledger's on_failure hook failed")

    # -- opening ----------------------------------------------------------------------------------

    @staticmethod
    def open(target: str | os.PathLike[str] | None = None, **kwargs: Any) -> Ledger:
        """``postgresql://...`` / ``postgres://...`` -> PostgresLedger; ``sqlite:///path`` or a file path
        (default: ``$LLM_CONNECT_LEDGER``, else :func:`default_db_path`) -> SqliteLedger.
        Keyword arguments go to the constructor."""
        if target is None:
            from ..paths import default_ledger_url

            target = default_ledger_url()
        s = os.fspath(target)
        low = s.lower()
        if low.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            return PostgresLedger(s.replace("postgresql+psycopg://", "postgresql://", 1), **kwargs)
        if low.startswith("sqlite:///"):
            s = s[len("sqlite:///") :]
        elif "://" in s:
            raise LLMConfigurationError(f"unsupported ledger URL {s!r} (use a file path or postgresql://...)")
        return SqliteLedger(s, **kwargs)

    # -- dialect hooks ----------------------------------------------------------------------------

    @abstractmethod
    def _write(self, conn: Any, rows: Sequence[tuple[Any, ...]]) -> list[bool]:
        """Insert-or-ignore ``rows`` in one transaction and commit; per row: was it new?"""

    def _to_row(self, e: UsageEvent, meta_json: str | None = None) -> tuple[Any, ...]:
        """The row of ``e`` in COLUMNS order; the dialect hooks shape timestamps, costs and flags.

        An event the table cannot hold (a missing id, provider, model or token count, a count beyond 64 bits, a
        NaN latency) is refused here, in the caller's thread, with LLMUsageError — before it is queued, never
        dropped in a batch."""
        row = (
            e.request_id,
            self._ts_param(e.timestamp),
            e.provider,
            e.model,
            e.tenant_id,
            e.agent,
            e.thread_id,
            e.task_type,
            e.input_tokens,
            e.output_tokens,
            e.cache_read_tokens,
            e.cache_write_tokens,
            e.reasoning_tokens,
            e.total_tokens,
            self._cost_param(e.cost_usd),
            float(e.latency_ms),
            self._flag(e.success),
            e.error_type,
            self._flag(e.streamed),
            e.deployment,
            _dumps(e.metadata) if meta_json is None else meta_json,
            self._flag(e.estimated),
            e.endpoint,
        )
        if None in row[:4] or None in row[8:14] or row[15] != row[15] or not row[0]:
            raise LLMUsageError(f"usage event not storable (an id, provider, model or count is missing): {e!r}")
        if max(row[8:14]) > _INT64_MAX:
            raise LLMUsageError(f"usage event not storable (a token count beyond 64 bits): {e!r}")
        return row

    def _item(self, e: UsageEvent, loop: asyncio.AbstractEventLoop | None = None, fut: Any = None) -> Item:
        """The queued form of ``e``: its row, with unstorable metadata replaced (the event too, for the spool)."""
        meta_json, unstorable = _storable(e.metadata)
        if unstorable is not None:
            log.warning("usage event %s: metadata not storable (%s); stored without it", e.request_id, unstorable)
            e = dataclasses.replace(e, metadata={"_unstorable": unstorable})
            self._failed("unstorable_metadata", 1, None)
        try:
            row = self._to_row(e, meta_json)
        except LLMUsageError as exc:
            self._failed("refused", 1, exc)
            raise
        return Item(e, row, loop, fut)

    def _cost_param(self, cost: Decimal | None) -> Any:
        return cost

    def _flag(self, value: bool) -> Any:
        return bool(value)

    def _ts_param(self, ts: datetime) -> Any:
        return _utc(ts)

    # -- writing ----------------------------------------------------------------------------------

    def record(self, event: UsageEvent) -> bool:
        """Persist ``event``; returns once committed. True if new, False if its request_id was known."""
        item = self._item(event)
        self._submit(item)
        assert item.done is not None
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.inserted

    async def arecord(self, event: UsageEvent) -> bool:
        """Async :meth:`record`: the write runs on the writer thread; returns once committed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._submit(self._item(event, loop, fut))
        return await fut

    def record_many(self, events: Sequence[UsageEvent]) -> int:
        """Persist several events (one transaction when queued together); returns how many were new."""
        items = [self._item(e) for e in events]
        for it in items:
            self._submit(it)
        for it in items:
            assert it.done is not None
            it.done.wait()
        errors = [it.error for it in items if it.error is not None]
        if errors:
            raise errors[0]
        return sum(it.inserted for it in items)

    def subscriber(self, tracker: UsageTracker | None = None) -> LedgerSubscriber:
        """A tracker subscriber writing to this ledger; subscribed to ``tracker`` if given."""
        return LedgerSubscriber(self, tracker)

    def _submit(self, item: Item) -> None:
        try:
            self._writer.submit(item)
        except RuntimeError:
            exc = LLMUsageError("the usage ledger is closed")
            self._failed("refused", 1, exc)
            raise exc from None

    def close(self) -> None:
        """Finish queued writes and stop the writer thread. Reads still work after close."""
        self._writer.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------- SQLite


class _DecimalSum:
    """Exact SUM of decimal text, as an SQLite aggregate (result: text, NULL if every value was NULL)."""

    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: Any) -> None:
        if value is not None:
            d = Decimal(str(value))
            self.total = d if self.total is None else self.total + d

    def finalize(self) -> str | None:
        return None if self.total is None else str(self.total)


#: one row's placeholders in an SQLite INSERT
#: columns added after the first release, with their declarations (a table made before gains them at open)
_SQLITE_ADDED = (("estimated", "INTEGER NOT NULL DEFAULT 0"), ("endpoint", "TEXT"))
_SQLITE_ROW = f"({', '.join('?' * len(COLUMNS))})"


class SqliteLedger(Ledger):
    """A ledger in one SQLite file (WAL). ``synchronous`` is ``"NORMAL"`` (default) or ``"FULL"``."""

    _P = "?"
    #: rows written between two WAL checkpoints. A commit of one row adds ~5 pages to the WAL (the table's and its
    #: three indexes' last leaves), one of 16 rows ~12: at most ~5 000 pages (20 MB) between checkpoints, reached
    #: at one row per commit; under load, when commits hold many rows, far fewer
    CHECKPOINT_ROWS = 1000

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = "llm_usage",
        synchronous: str = "NORMAL",
        batch_max: int = 512,
        busy_timeout_ms: int = 30_000,
        spool: str | os.PathLike[str] | None = None,
        on_failure: OnFailure | None = None,
        replay_interval: float = 5.0,
    ) -> None:
        super().__init__(
            table=table,
            batch_max=batch_max,
            spool=spool or f"{os.fspath(path)}.spool.jsonl",
            on_failure=on_failure,
            replay_interval=replay_interval,
        )
        sync = synchronous.upper()
        if sync not in ("FULL", "NORMAL", "EXTRA"):
            raise LLMConfigurationError(f"sqlite synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        if str(path) == ":memory:":
            raise LLMConfigurationError("the SQLite ledger needs a file (it is shared by a writer thread)")
        self.synchronous = sync
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._rows_at_checkpoint = 0  # the writer connection's total_changes at the last checkpoint (_after_answer)
        #: the bulk of each checkpoint: its own connection and thread (see _after_answer)
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._upkeep = Upkeep(self._checkpoint, self._close_checkpoint_conn, name="llm-connect-ledger-checkpoint")
        #: the process that asked for a bulk checkpoint the writer has not finished yet (0: none) / the upkeep
        #: thread is done with it
        self._bulk_pending = 0
        self._bulk_done = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(
                f"""
                CREATE TABLE IF NOT EXISTS {self.table} (
                    request_id TEXT PRIMARY KEY,
                    ts TEXT NOT NULL,
                    provider TEXT NOT NULL,
                    model TEXT NOT NULL,
                    tenant_id TEXT,
                    agent TEXT,
                    thread_id TEXT,
                    task_type TEXT,
                    input_tokens INTEGER NOT NULL DEFAULT 0,
                    output_tokens INTEGER NOT NULL DEFAULT 0,
                    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
                    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
                    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
                    total_tokens INTEGER NOT NULL DEFAULT 0,
                    cost_usd TEXT,
                    latency_ms REAL NOT NULL DEFAULT 0,
                    success INTEGER NOT NULL,
                    error_type TEXT,
                    streamed INTEGER NOT NULL DEFAULT 0,
                    deployment TEXT,
                    metadata TEXT,
                    estimated INTEGER NOT NULL DEFAULT 0,
                    endpoint TEXT
                );
                CREATE INDEX IF NOT EXISTS {self.table}_ts ON {self.table} (ts);
                CREATE INDEX IF NOT EXISTS {self.table}_tenant_ts ON {self.table} (tenant_id, ts);
                """
            )
            self._migrate(conn)
        finally:
            conn.close()

    def _columns(self, conn: sqlite3.Connection) -> set[str]:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({self.table})")}

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Add the columns a table made by an older version lacks (additive: old rows get the default)."""
        for column, decl in _SQLITE_ADDED:
            if column in self._columns(conn):
                continue
            try:
                conn.execute(f"ALTER TABLE {self.table} ADD COLUMN {column} {decl}")
            except sqlite3.OperationalError:
                if column not in self._columns(conn):  # not another process adding it at the same moment
                    raise

    def __repr__(self) -> str:
        return f"SqliteLedger({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        # no checkpoint inside a commit a caller waits for: _after_answer runs them (see there)
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.create_aggregate("decsum", 1, _DecimalSum)  # type: ignore[arg-type]
        return conn

    def _after_answer(self, conn: sqlite3.Connection) -> None:
        """WAL checkpoints every CHECKPOINT_ROWS rows, in two steps, none inside a commit a call waits for.

        SQLite's automatic checkpoint (every 1 000 WAL pages) would run inside a commit, with its fsyncs, and the
        calls waiting for that commit would wait for it too. Run here on the writer's thread (after the batch's
        callers were answered) it still held up the next batch for its milliseconds — at one connection, the next
        request: the latency tail. So the bulk of it runs on a connection and a thread of its own (PASSIVE: it
        copies what no reader still needs and never blocks the writer, which goes on appending meanwhile) and,
        once that is done, the writer checkpoints what was appended meanwhile (a few pages: ~0.5 ms, against
        2–20 ms for the whole). That last step is needed: the WAL starts over from its beginning only after a
        checkpoint that reached its end, which one running beside steady writes never does."""
        if self._bulk_done:
            self._bulk_done, self._bulk_pending = False, 0
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            return  # the next commit starts the WAL over: no bulk may run then (it would hold the restart off)
        if self._bulk_pending and self._bulk_pending != os.getpid():  # forked while one ran: its thread stayed behind
            self._bulk_pending = 0
        rows = conn.total_changes
        if rows < self._rows_at_checkpoint:  # a fresh connection (the last one failed) counts from 0
            self._rows_at_checkpoint = 0
        if not self._bulk_pending and rows - self._rows_at_checkpoint >= self.CHECKPOINT_ROWS:
            self._rows_at_checkpoint = rows
            self._bulk_pending = os.getpid()
            self._upkeep.poke()

    def _checkpoint(self) -> None:
        """The bulk of a checkpoint (the upkeep thread's), on its own connection."""
        conn = self._checkpoint_conn
        if conn is None:
            conn = self._checkpoint_conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000, check_same_thread=False
            )
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            self._close_checkpoint_conn()  # a fresh connection next time
            raise
        finally:  # failed too: the writer's step then checkpoints the whole WAL
            self._bulk_done = True

    def _close_checkpoint_conn(self) -> None:
        conn, self._checkpoint_conn = self._checkpoint_conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Finish queued writes and stop the writer and checkpoint threads. Reads still work after close."""
        super().close()
        self._upkeep.close()

    def _write(self, conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[bool]:
        """Write the batch and flag each row new (True) or already stored (False).

        Each statement is one ``sqlite3_step``, and sqlite3 drops and retakes the GIL around every step; under
        load each retake waits for the event-loop thread to let go. So the normal case — every id new, the
        batch within one statement's variable limit — is a single plain multi-row ``INSERT`` in autocommit
        mode: one statement, one transaction, one step. An id already stored (or repeated in the batch) makes
        that statement fail whole, writing nothing; then, inside ``BEGIN IMMEDIATE``, an insert that skips
        known ids (``ON CONFLICT (request_id) DO NOTHING``) per chunk, whose insert count answers when every
        id was new, else a look-up of the ids and the insert again. No ``executemany`` (a step per row) and
        no ``RETURNING`` (a step per returned row)."""
        if len(rows) <= self._rows_per_insert(conn):
            try:  # autocommit: one statement, one transaction, one sqlite3_step
                conn.execute(self._insert_sql(len(rows), plain=True), [v for row in rows for v in row])
                return [True] * len(rows)
            except sqlite3.IntegrityError as exc:  # nothing was written
                if exc.sqlite_errorcode != sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
                    raise
                # an id already stored, or repeated in the batch: the careful path below
        unique = {r[0] for r in rows}
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            self._insert(conn, rows)
            if conn.total_changes - before == len(unique):
                new_ids = unique
            else:
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                new_ids = unique - self._known_ids(conn, list(unique))
                self._insert(conn, rows)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        out: list[bool] = []
        for r in rows:  # an id repeated inside one batch is new only once
            out.append(r[0] in new_ids)
            new_ids.discard(r[0])
        return out

    @staticmethod
    def _rows_per_insert(conn: sqlite3.Connection) -> int:
        return max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(COLUMNS))

    def _insert(self, conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        per = self._rows_per_insert(conn)
        for i in range(0, len(rows), per):
            chunk = rows[i : i + per]
            conn.execute(self._insert_sql(len(chunk)), [v for row in chunk for v in row])

    def _insert_sql(self, nrows: int, *, plain: bool = False) -> str:
        """An insert of ``nrows`` rows that skips known ids (and only those: any other constraint still fails);
        ``plain``: one that fails whole on a known id. Built per batch (microseconds beside the write; sqlite3
        keeps the compiled statements of recent texts): a cache of every batch size's text would hold megabytes."""
        sql = f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) VALUES {', '.join([_SQLITE_ROW] * nrows)}"
        return sql if plain else sql + " ON CONFLICT (request_id) DO NOTHING"

    def _known_ids(self, conn: sqlite3.Connection, ids: list[str]) -> set[str]:
        known: set[str] = set()
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            q = f"SELECT request_id FROM {self.table} WHERE request_id IN ({', '.join('?' * len(part))})"
            known.update(r[0] for r in conn.execute(q, part))
        return known

    def _cost_param(self, cost: Decimal | None) -> Any:
        return None if cost is None else str(cost)  # exact decimal text, summed by decsum

    def _flag(self, value: bool) -> Any:
        return 1 if value else 0

    def _from_row(self, r: Sequence[Any]) -> UsageEvent:
        return UsageEvent(
            request_id=r[0],
            timestamp=_utc(datetime.fromisoformat(r[1])),
            provider=r[2],
            model=r[3],
            tenant_id=r[4],
            agent=r[5],
            thread_id=r[6],
            task_type=r[7],
            input_tokens=int(r[8]),
            output_tokens=int(r[9]),
            cache_read_tokens=int(r[10]),
            cache_write_tokens=int(r[11]),
            reasoning_tokens=int(r[12]),
            total_tokens=int(r[13]),
            cost_usd=None if r[14] is None else Decimal(r[14]),
            latency_ms=float(r[15]),
            success=bool(r[16]),
            error_type=r[17],
            streamed=bool(r[18]),
            deployment=r[19],
            metadata=orjson.loads(r[20]) if r[20] else {},
            estimated=bool(r[21]),
            endpoint=r[22],
        )

    def _ts_param(self, ts: datetime) -> Any:
        return _utc(ts).isoformat(timespec="microseconds")

    def _day_expr(self) -> str:
        return "substr(ts, 1, 10)"

    def _hour_expr(self) -> str:
        return "substr(ts, 1, 13)"

    def _meta_expr(self, key: str) -> str:
        return f"json_extract(metadata, '$.{key}')"

    def _sum_cost_expr(self) -> str:
        return "decsum(cost_usd)"


# ----------------------------------------------------------------------------------------- PostgreSQL


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise LLMConfigurationError(
            "the PostgreSQL usage ledger needs psycopg 3: pip install 'llm-connect[postgres]'"
        ) from exc
    return psycopg


_META = COLUMNS.index("metadata")
_LATENCY = COLUMNS.index("latency_ms")


def _pg_json(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """A batch as one JSON array of objects keyed by column (metadata embedded as the JSON it already is;
    costs as decimal strings, exact; timestamps in RFC 3339; an infinite latency, which JSON cannot hold, as
    the text PostgreSQL reads), for ``json_populate_recordset``."""
    objs = []
    for row in rows:
        obj = dict(zip(COLUMNS, row, strict=True))
        obj["metadata"] = orjson.Fragment(row[_META])
        if not math.isfinite(row[_LATENCY]):
            obj["latency_ms"] = str(row[_LATENCY])
        objs.append(obj)
    return orjson.dumps(objs, default=str)


class PostgresLedger(Ledger):
    """A ledger in a PostgreSQL table (``cost_usd NUMERIC``, ``ts TIMESTAMPTZ``, ``metadata JSONB``)."""

    _P = "%s"

    def __init__(
        self,
        url: str,
        *,
        table: str = "llm_usage",
        batch_max: int = 512,
        connect_timeout: float = 10.0,
        spool: str | os.PathLike[str] | None = None,
        on_failure: OnFailure | None = None,
        replay_interval: float = 5.0,
    ) -> None:
        if spool is None:
            from ..paths import data_dir

            spool = data_dir() / f"ledger-spool-{table}.jsonl"
        super().__init__(
            table=table, batch_max=batch_max, spool=spool, on_failure=on_failure, replay_interval=replay_interval
        )
        self._psycopg = _import_psycopg()
        self.url = url
        self._insert_sql = (
            f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} "
            f"FROM json_populate_recordset(NULL::{self.table}, %s::json) "
            "ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
        )
        self.connect_timeout = connect_timeout
        t = self.table
        with self._connect() as conn:
            # the advisory lock serialises concurrent first-time schema creation across processes
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"llm_connect_ledger:{t}",))
            conn.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {t} (
                    request_id TEXT PRIMARY KEY,
                    ts TIMESTAMPTZ NOT NULL,
                    provider TEXT NOT NULL,
                    model TEXT NOT NULL,
                    tenant_id TEXT,
                    agent TEXT,
                    thread_id TEXT,
                    task_type TEXT,
                    input_tokens BIGINT NOT NULL DEFAULT 0,
                    output_tokens BIGINT NOT NULL DEFAULT 0,
                    cache_read_tokens BIGINT NOT NULL DEFAULT 0,
                    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
                    reasoning_tokens BIGINT NOT NULL DEFAULT 0,
                    total_tokens BIGINT NOT NULL DEFAULT 0,
                    cost_usd NUMERIC,
                    latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
                    success BOOLEAN NOT NULL,
                    error_type TEXT,
                    streamed BOOLEAN NOT NULL DEFAULT FALSE,
                    deployment TEXT,
                    metadata JSONB,
                    estimated BOOLEAN NOT NULL DEFAULT FALSE,
                    endpoint TEXT
                )
                """
            )
            # additive migration of a table made by an older version
            conn.execute(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS estimated BOOLEAN NOT NULL DEFAULT FALSE")
            conn.execute(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS endpoint TEXT")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_ts ON {t} (ts)")
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_tenant_ts ON {t} (tenant_id, ts)")
            conn.commit()

    def __repr__(self) -> str:
        return f"PostgresLedger(table={self.table!r})"

    def _connect(self) -> Any:
        return self._psycopg.connect(self.url, connect_timeout=max(1, int(self.connect_timeout)))

    def _write(self, conn: Any, rows: Sequence[tuple[Any, ...]]) -> list[bool]:
        """The whole batch in one ``INSERT ... SELECT FROM json_populate_recordset(<the batch as JSON>)`` on an
        autocommit connection: one statement with one parameter, one round trip and one transaction per batch
        whatever its size (a statement per row would cost each row a parse, a plan and a message on both
        sides, and binding a parameter per value costs the writer thread more than encoding the JSON).
        Replicas writing one table each commit their own batches: nothing serialises them but a repeated
        request_id."""
        if not conn.autocommit:
            conn.autocommit = True  # the single statement is its own transaction
        try:
            with conn.cursor() as cur:
                cur.execute(self._insert_sql, (_pg_json(rows).decode(),))
                new_ids = {r[0] for r in cur.fetchall()}
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                pass
            raise
        out: list[bool] = []
        for row in rows:  # a request_id repeated inside one batch is new only once
            rid = row[0]
            out.append(rid in new_ids)
            new_ids.discard(rid)
        return out

    def _to_row(self, e: UsageEvent, meta_json: str | None = None) -> tuple[Any, ...]:
        # PostgreSQL text (and jsonb) cannot hold NUL: one such value (it can come from a client) would
        # otherwise fail the whole group-commit batch it travels in. (A plain loop: this runs on the event loop
        # for every call, and a row without NUL — nearly all — is returned as it is.)
        row = super()._to_row(e, meta_json)
        for v in row:
            if v.__class__ is str and ("\x00" in v or "\\u0000" in v):
                return tuple(_no_nul(x) for x in row)
        return row

    def _from_row(self, r: Sequence[Any]) -> UsageEvent:
        meta = r[20]
        if isinstance(meta, (str, bytes)):
            meta = orjson.loads(meta)
        return UsageEvent(
            request_id=r[0],
            timestamp=_utc(r[1]),
            provider=r[2],
            model=r[3],
            tenant_id=r[4],
            agent=r[5],
            thread_id=r[6],
            task_type=r[7],
            input_tokens=int(r[8]),
            output_tokens=int(r[9]),
            cache_read_tokens=int(r[10]),
            cache_write_tokens=int(r[11]),
            reasoning_tokens=int(r[12]),
            total_tokens=int(r[13]),
            cost_usd=r[14],
            latency_ms=float(r[15]),
            success=bool(r[16]),
            error_type=r[17],
            streamed=bool(r[18]),
            deployment=r[19],
            metadata=dict(meta or {}),
            estimated=bool(r[21]),
            endpoint=r[22],
        )

    def _day_expr(self) -> str:
        return "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def _hour_expr(self) -> str:
        return "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')"

    def _meta_expr(self, key: str) -> str:
        return f"(metadata ->> '{key}')"

    def _sum_cost_expr(self) -> str:
        return "SUM(cost_usd)"
