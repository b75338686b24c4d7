"""Usage reports: a rich table of ledger totals and a PNG chart of daily spend (``llm-connect usage``).

rich and matplotlib are imported only when a report is made.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import LLMConfigurationError, LLMError
from ._queries import TOKEN_COLS

if TYPE_CHECKING:
    from rich.table import Table

    from .ledger import Ledger

__all__ = ["format_usd", "render_table", "usage_command", "write_chart"]

_LABELS = {"tenant": "tenant", "agent": "agent", "model": "provider:model", "day": "day (UTC)"}


#: costs are shown exactly up to this many decimal places (token prices make sub-cent calls the rule)
_COST_PLACES = 10
_COST_QUANTUM = Decimal(1).scaleb(-_COST_PLACES)


def format_usd(d: Decimal | None) -> str:
    """A USD amount for people: exact to 10 decimal places, trailing zeros dropped, never a float;
    ``"unknown"`` for None (no price known). An amount too small for 10 places keeps 3 significant digits."""
    if d is None:
        return "unknown"
    d = Decimal(d)
    if d == 0:
        return "0"
    q = d.quantize(_COST_QUANTUM) if d.as_tuple().exponent < -_COST_PLACES else d  # type: ignore[operator]
    if q == 0:
        return f"{d:.2e}"
    text = f"{q:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def render_table(rows: Sequence[Mapping[str, Any]], *, group_by: str = "key", title: str | None = None) -> Table:
    """A rich Table of :meth:`Ledger.totals` rows, with a total line at the bottom."""
    from rich.table import Table

    table = Table(title=title, show_footer=bool(rows), header_style="bold")
    sums: dict[str, Any] = {
        k: sum((r.get(k, 0) for r in rows), start=0)
        for k in ("requests", "failures", *TOKEN_COLS, "unpriced", "estimated")
    }
    known = [Decimal(r["cost_usd"]) for r in rows if r.get("cost_usd") is not None]
    total_cost = sum(known, start=Decimal(0)) if known or not sums["unpriced"] else None
    columns = [
        (_LABELS.get(group_by, group_by), "left", "total"),
        ("requests", "right", f"{sums['requests']:,}"),
        ("failed", "right", f"{sums['failures']:,}"),
        ("input tok", "right", f"{sums['input_tokens']:,}"),
        ("cache read", "right", f"{sums['cache_read_tokens']:,}"),
        ("cache write", "right", f"{sums['cache_write_tokens']:,}"),
        ("output tok", "right", f"{sums['output_tokens']:,}"),
        ("reasoning", "right", f"{sums['reasoning_tokens']:,}"),
        ("cost USD", "right", format_usd(total_cost)),
        ("unpriced", "right", f"{sums['unpriced']:,}"),
        ("estimated", "right", f"{sums['estimated']:,}"),
        ("avg ms", "right", ""),
    ]
    for header, justify, footer in columns:
        table.add_column(header, justify=justify, footer=footer)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            str(r.get("key", "")),
            f"{r.get('requests', 0):,}",
            f"{r.get('failures', 0):,}",
            f"{r.get('input_tokens', 0):,}",
            f"{r.get('cache_read_tokens', 0):,}",
            f"{r.get('cache_write_tokens', 0):,}",
            f"{r.get('output_tokens', 0):,}",
            f"{r.get('reasoning_tokens', 0):,}",
            format_usd(None if r.get("cost_usd") is None else Decimal(r["cost_usd"])),
            f"{r.get('unpriced', 0):,}",
            f"{r.get('estimated', 0):,}",
            f"{float(r.get('avg_latency_ms') or 0):.0f}",
        )
    return table


def write_chart(ledger: Ledger, path_png: str | os.PathLike[str], tenant_id: str | None = None, **filters: Any) -> Path:
    """Write a PNG bar chart of spend (USD) per UTC day; days without calls show as 0.

    ``filters`` (``since``, ``until``) go to :meth:`Ledger.totals`. Returns the path written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.dates import DateFormatter, DayLocator
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise LLMConfigurationError("usage charts need matplotlib: pip install 'llm-connect[charts]'") from exc

    rows = ledger.totals(group_by="day", tenant_id=tenant_id, **filters)
    spend = {date.fromisoformat(r["key"]): r["cost_usd"] or Decimal(0) for r in rows}  # unknown: not drawn
    requests = {date.fromisoformat(r["key"]): r["requests"] for r in rows}
    days: list[date] = []
    if spend:
        d, last = min(spend), max(spend)
        while d <= last:
            days.append(d)
            d += timedelta(days=1)

    fig = Figure(figsize=(10, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    who = f"tenant {tenant_id}" if tenant_id else "all tenants"
    ax.set_title(f"LLM spend per day (USD), {who}")
    if days:
        values = [float(spend.get(d, 0)) for d in days]
        ax.bar(days, values, width=0.8, color="#4C72B0")
        ax.xaxis.set_major_locator(DayLocator(interval=max(1, len(days) // 12)))
        ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
        ax.margins(y=0.15)
        ax.set_ylabel("USD")
        ax.set_ylim(bottom=0, top=max(values) * 1.15 or 1.0)  # spend is never negative
        ax.set_xlabel("day (UTC)")
        total = sum((spend.get(d, Decimal(0)) for d in days), start=Decimal(0))
        n = sum(requests.values())
        ax.text(0.01, 0.97, f"total {format_usd(total)} USD, {n:,} calls", transform=ax.transAxes, va="top")
        fig.autofmt_xdate()
    else:
        ax.text(0.5, 0.5, "no usage recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
    out = Path(path_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _notes(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the cost column does not say: calls at an unknown price, calls billed on an estimate."""
    out = []
    unpriced = sum(int(r.get("unpriced") or 0) for r in rows)
    estimated = sum(int(r.get("estimated") or 0) for r in rows)
    if unpriced:
        out.append(f"{unpriced:,} call(s) used tokens at an unknown price: not in the cost (configure pricing)")
    if estimated:
        out.append(f"{estimated:,} call(s) billed on an estimate (a stream that ended early, a reply without usage)")
    return out


def usage_command(
    db: str | None,
    by: str = "tenant",
    chart: str | None = None,
    tenant: str | None = None,
    *,
    out: TextIO | None = None,
) -> int:
    """``llm-connect usage``: print the totals table of the ledger at ``db`` and optionally write a chart.

    ``db`` is a SQLite path or a postgresql:// URL (None: the default SQLite path). Returns an exit code:
    0 ok, 1 no ledger at that path, 2 bad arguments or a database error.
    """
    from rich.console import Console

    from ..paths import default_ledger_url
    from .ledger import GROUP_BYS, Ledger

    stream = out or sys.stdout
    # a pipe or file gets the full table width instead of rich's 80-column default
    console = Console(file=stream, width=None if stream.isatty() else 200)
    err = Console(file=out or sys.stderr)
    if by not in GROUP_BYS:
        err.print(f"error: --by must be one of {', '.join(GROUP_BYS)}, not {by!r}")
        return 2
    target = db if db is not None else default_ledger_url()
    is_url = "://" in target and not target.lower().startswith("sqlite:///")
    if not is_url:
        path = target[len("sqlite:///") :] if target.lower().startswith("sqlite:///") else target
        if not os.path.exists(path):
            err.print(f"error: no usage ledger at {path}")
            return 1
    try:
        ledger = Ledger.open(target)
        try:
            rows = ledger.totals(group_by=by, tenant_id=tenant)
            title = f"LLM usage by {by}" + (f" (tenant {tenant})" if tenant else "")
            console.print(render_table(rows, group_by=by, title=title))
            for line in _notes(rows):
                console.print(line)
            if chart:
                written = write_chart(ledger, chart, tenant_id=tenant)
                console.print(f"chart written to {written}")
        finally:
            ledger.close()
    except (LLMError, OSError) as exc:
        err.print(f"error: {exc}")
        return 2
    except Exception as exc:  # database driver errors (sqlite3.Error, psycopg.Error)
        if type(exc).__module__.split(".")[0] in ("sqlite3", "psycopg"):
            err.print(f"error: {exc}")
            return 2
        raise
    return 0
