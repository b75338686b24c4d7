"""The ledger's read side: the columns, queries and group-by totals shared by the SQLite and PostgreSQL
ledgers (a mixin over the dialect hooks ``_connect``, ``_from_row``, ``_ts_param``, ``_day_expr`` and
``_sum_cost_expr``, and the parameter marker ``_P``)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..errors import LLMUsageError
from .events import UsageEvent
from .tracker import NONE_KEY

__all__ = ["COLUMNS", "GROUP_BYS", "TOKEN_COLS", "LedgerQueries"]

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
#: accepted values of ``totals(group_by=...)``
GROUP_BYS = ("tenant", "agent", "model", "provider", "day", "thread", "task_type", "endpoint")


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
    def _sum_cost_expr(self) -> str: ...

    @contextmanager
    def _reader(self) -> Iterator[Any]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def _where(self, tenant_id: str | None, since: datetime | None, until: datetime | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if tenant_id is not None:
            clauses.append(f"tenant_id = {self._P}")
            params.append(tenant_id)
        if since is not None:
            clauses.append(f"ts >= {self._P}")
            params.append(self._ts_param(since))
        if until is not None:
            clauses.append(f"ts < {self._P}")
            params.append(self._ts_param(until))
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
        where, params = self._where(tenant_id, since, until)
        sql = f"SELECT {', '.join(COLUMNS)} FROM {self.table}{where} ORDER BY ts, request_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._reader() as conn:
            cur = conn.execute(sql, params)
            return [self._from_row(r) for r in cur.fetchall()]

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
    ) -> list[dict[str, Any]]:
        """One row per group, ordered by key: ``key``, ``requests``, ``failures``, the token sums,
        ``cost_usd`` (exact Decimal over priced events; None when the group used tokens and none of them at a
        known price), ``unpriced`` (events that used tokens at an unknown price), ``estimated`` (events billed
        on an estimate), ``avg_latency_ms``. Missing tenants/agents are grouped under ``"-"``; days are UTC
        ``YYYY-MM-DD``."""
        key = self._group_expr(group_by)
        where, params = self._where(tenant_id, since, until)
        token_sums = ", ".join(f"SUM({c})" for c in TOKEN_COLS)
        sql = (
            f"SELECT {key} AS k, COUNT(*), SUM(CASE WHEN success THEN 0 ELSE 1 END), {token_sums}, "
            f"{self._sum_cost_expr()}, SUM(CASE WHEN cost_usd IS NULL AND total_tokens > 0 THEN 1 ELSE 0 END), "
            f"AVG(latency_ms), SUM(CASE WHEN estimated THEN 1 ELSE 0 END) "
            f"FROM {self.table}{where} GROUP BY k ORDER BY k"
        )
        with self._reader() as conn:
            rows = conn.execute(sql, params).fetchall()
        out: list[dict[str, Any]] = []
        for r in rows:
            d: dict[str, Any] = {"key": str(r[0]), "requests": int(r[1]), "failures": int(r[2] or 0)}
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
