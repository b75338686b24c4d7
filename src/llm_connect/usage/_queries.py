"""The ledger's read side: the columns, queries and group-by totals shared by the SQLite and PostgreSQL
ledgers (a mixin over the dialect hooks ``_connect``, ``_from_row``, ``_ts_param``, ``_day_expr``,
``_hour_expr``, ``_meta_expr`` and ``_sum_cost_expr``, and the parameter marker ``_P``).

:class:`CallFilter` narrows every read (tenant, time window, model, status, estimated, API key, request id);
:meth:`LedgerQueries.calls` pages through rows newest first, :meth:`LedgerQueries.call` reads one, and
:meth:`LedgerQueries.totals` groups (optionally per hour or day: a time series)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..errors import LLMUsageError
from .events import UsageEvent
from .tracker import NONE_KEY

__all__ = ["BUCKETS", "COLUMNS", "GROUP_BYS", "TOKEN_COLS", "CallFilter", "LedgerQueries"]

#: the token columns of the ledger table (summed by totals())
TOKEN_COLS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
)
#: the ledger table's columns, in row order
COLUMNS = (
    "request_id",
    "ts",
    "provider",
    "model",
    "tenant_id",
    "agent",
    "thread_id",
    "task_type",
    *TOKEN_COLS,
    "cost_usd",
    "latency_ms",
    "success",
    "error_type",
    "streamed",
    "deployment",
    "metadata",
    "estimated",
    "endpoint",
)
#: accepted values of ``totals(group_by=...)`` (``key``: the gateway API key's name, ``team``: its team)
GROUP_BYS = ("tenant", "agent", "model", "provider", "day", "thread", "task_type", "endpoint", "key", "team")
#: accepted values of ``totals(bucket=...)``: UTC hours (``YYYY-MM-DDTHH``) or days (``YYYY-MM-DD``)
BUCKETS = ("hour", "day")
#: the metadata keys the gateway writes for the API key and its team (see server.engine)
_META_KEYS = {"key": "api_key", "team": "team"}


@dataclass(frozen=True, slots=True)
class CallFilter:
    """Which ledger rows a read covers; None leaves a field open.

    ``model`` matches the model (``gpt-4o``) or ``provider:model``; ``success`` False selects failed calls;
    ``request_id`` matches the row's own id or the gateway request id it was made for (``x-request-id``)."""

    tenant_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    success: bool | None = None
    estimated: bool | None = None
    api_key: str | None = None
    request_id: str | None = None

    def narrowed(self, **fields: Any) -> CallFilter:
        """This filter with the given fields set (a None value keeps the field as it is)."""
        given = {k: v for k, v in fields.items() if v is not None}
        return replace(self, **given) if given else self


class LedgerQueries(ABC):
    """Reads of a ledger table (see the module docstring)."""

    #: the SQL parameter marker of the dialect
    _P = "?"
    table: str

    @abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection (autocommit off / explicit transactions)."""

    @abstractmethod
    def _from_row(self, row: Sequence[Any]) -> UsageEvent: ...

    @abstractmethod
    def _ts_param(self, ts: datetime) -> Any: ...

    @abstractmethod
    def _day_expr(self) -> str: ...

    @abstractmethod
    def _hour_expr(self) -> str:
        """The UTC hour of ``ts`` as ``YYYY-MM-DDTHH`` text."""

    @abstractmethod
    def _meta_expr(self, key: str) -> str:
        """The text value of ``metadata[key]`` (``key`` is a plain identifier)."""

    @abstractmethod
    def _sum_cost_expr(self) -> str: ...

    @contextmanager
    def _reader(self) -> Iterator[Any]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def _where(self, f: CallFilter) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        p = self._P

        def add(clause: str, *values: Any) -> None:
            clauses.append(clause)
            params.extend(values)

        if f.tenant_id is not None:
            add(f"tenant_id = {p}", f.tenant_id)
        if f.since is not None:
            add(f"ts >= {p}", self._ts_param(f.since))
        if f.until is not None:
            add(f"ts < {p}", self._ts_param(f.until))
        if f.model is not None:
            add(f"(model = {p} OR provider || ':' || model = {p})", f.model, f.model)
        if f.success is not None:
            add("success" if f.success else "NOT success")
        if f.estimated is not None:
            add("estimated" if f.estimated else "NOT estimated")
        if f.api_key is not None:
            add(f"{self._meta_expr('api_key')} = {p}", f.api_key)
        if f.request_id is not None:
            add(f"(request_id = {p} OR {self._meta_expr('gateway_request_id')} = {p})", f.request_id, f.request_id)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def query(
        self,
        tenant_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        limit: int | None = None,
    ) -> list[UsageEvent]:
        """Events in time order, filtered by tenant and ``since <= timestamp < until``."""
        where, params = self._where(CallFilter(tenant_id, since, until))
        sql = f"SELECT {', '.join(COLUMNS)} FROM {self.table}{where} ORDER BY ts, request_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._reader() as conn:
            cur = conn.execute(sql, params)
            return [self._from_row(r) for r in cur.fetchall()]

    def calls(self, match: CallFilter | None = None, *, limit: int = 50, offset: int = 0) -> list[UsageEvent]:
        """The rows ``match`` selects, newest first: ``limit`` of them after skipping ``offset``."""
        where, params = self._where(match or CallFilter())
        sql = (
            f"SELECT {', '.join(COLUMNS)} FROM {self.table}{where} ORDER BY ts DESC, request_id DESC "
            f"LIMIT {max(0, int(limit))} OFFSET {max(0, int(offset))}"
        )
        with self._reader() as conn:
            return [self._from_row(r) for r in conn.execute(sql, params).fetchall()]

    def call(self, request_id: str) -> UsageEvent | None:
        """The row of one usage event (its own ``request_id``), or None."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM {self.table} WHERE request_id = {self._P}"
        with self._reader() as conn:
            row = conn.execute(sql, [request_id]).fetchone()
        return None if row is None else self._from_row(row)

    def count(self) -> int:
        with self._reader() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def _group_expr(self, group_by: str) -> str:
        exprs = {
            "tenant": f"COALESCE(tenant_id, '{NONE_KEY}')",
            "agent": f"COALESCE(agent, '{NONE_KEY}')",
            "thread": f"COALESCE(thread_id, '{NONE_KEY}')",
            "task_type": f"COALESCE(task_type, '{NONE_KEY}')",
            "endpoint": f"COALESCE(endpoint, '{NONE_KEY}')",
            "model": "provider || ':' || model",
            "provider": "provider",
            "day": self._day_expr(),
            **{g: f"COALESCE({self._meta_expr(k)}, '{NONE_KEY}')" for g, k in _META_KEYS.items()},
        }
        try:
            return exprs[group_by]
        except KeyError:
            raise LLMUsageError(f"group_by must be one of {', '.join(GROUP_BYS)}, not {group_by!r}") from None

    def totals(
        self,
        group_by: str = "tenant",
        tenant_id: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket: str | None = None,
        match: CallFilter | None = None,
    ) -> list[dict[str, Any]]:
        """One row per group, ordered by key: ``key``, ``requests``, ``failures``, the token sums,
        ``cost_usd`` (exact Decimal over priced events; None when the group used tokens and none of them at a
        known price), ``unpriced`` (events that used tokens at an unknown price), ``estimated`` (events billed
        on an estimate), ``avg_latency_ms``. Missing tenants/agents are grouped under ``"-"``; days are UTC
        ``YYYY-MM-DD``.

        With ``bucket`` (``hour`` or ``day``) there is one row per bucket and group, ordered by bucket then
        key, each with its ``bucket`` (``YYYY-MM-DDTHH`` / ``YYYY-MM-DD``, UTC): a time series. ``match``
        narrows the rows further (``tenant_id``, ``since`` and ``until`` given here take precedence)."""
        key = self._group_expr(group_by)
        if bucket is not None and bucket not in BUCKETS:
            raise LLMUsageError(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
        where, params = self._where((match or CallFilter()).narrowed(tenant_id=tenant_id, since=since, until=until))
        token_sums = ", ".join(f"SUM({c})" for c in TOKEN_COLS)
        lead, group, order = f"{key} AS k", "k", "k"
        if bucket is not None:
            lead = f"{key} AS k, {self._hour_expr() if bucket == 'hour' else self._day_expr()} AS b"
            group, order = "b, k", "b, k"
        sql = (
            f"SELECT {lead}, COUNT(*), SUM(CASE WHEN success THEN 0 ELSE 1 END), {token_sums}, "
            f"{self._sum_cost_expr()}, SUM(CASE WHEN cost_usd IS NULL AND total_tokens > 0 THEN 1 ELSE 0 END), "
            f"AVG(latency_ms), SUM(CASE WHEN estimated THEN 1 ELSE 0 END) "
            f"FROM {self.table}{where} GROUP BY {group} ORDER BY {order}"
        )
        with self._reader() as conn:
            rows = conn.execute(sql, params).fetchall()
        out: list[dict[str, Any]] = []
        for r in rows:
            d: dict[str, Any] = {"key": str(r[0])}
            if bucket is not None:
                d["bucket"] = str(r[1])
                r = (r[0], *r[2:])
            d["requests"], d["failures"] = int(r[1]), int(r[2] or 0)
            for i, c in enumerate(TOKEN_COLS):
                d[c] = int(r[3 + i] or 0)
            cost = r[3 + len(TOKEN_COLS)]
            d["unpriced"] = int(r[4 + len(TOKEN_COLS)] or 0)
            if cost is not None:
                d["cost_usd"] = Decimal(str(cost))
            else:  # nothing priced: unknown if tokens were used at an unknown price, else nothing to pay
                d["cost_usd"] = None if d["unpriced"] else Decimal(0)
            d["avg_latency_ms"] = float(r[5 + len(TOKEN_COLS)] or 0.0)
            d["estimated"] = int(r[6 + len(TOKEN_COLS)] or 0)
            out.append(d)
        return out

    async def aquery(self, *args: Any, **kwargs: Any) -> list[UsageEvent]:
        """:meth:`query` in a worker thread."""
        return await asyncio.to_thread(self.query, *args, **kwargs)

    async def atotals(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """:meth:`totals` in a worker thread."""
        return await asyncio.to_thread(self.totals, *args, **kwargs)

    async def acalls(self, *args: Any, **kwargs: Any) -> list[UsageEvent]:
        """:meth:`calls` in a worker thread."""
        return await asyncio.to_thread(self.calls, *args, **kwargs)

    async def acall(self, request_id: str) -> UsageEvent | None:
        """:meth:`call` in a worker thread."""
        return await asyncio.to_thread(self.call, request_id)
