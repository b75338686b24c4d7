"""Reports: the rich totals table, the PNG spend chart and the ``llm-connect usage`` command."""

from __future__ import annotations

import io
import re
import struct
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from llm_connect.usage import Ledger, render_table, usage_command, write_chart


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def _filled(tmp_path: Path, make_event) -> Path:
    db = tmp_path / "usage.sqlite3"
    with Ledger.open(db) as led:
        led.record_many([make_event(i) for i in range(40)])
    return db


def test_render_table_lists_groups_and_total(tmp_path: Path, make_event) -> None:
    db = _filled(tmp_path, make_event)
    rows = Ledger.open(db).totals("tenant")
    console = Console(record=True, width=200)
    console.print(render_table(rows, group_by="tenant", title="by tenant"))
    text = console.export_text()
    assert "by tenant" in text and "tenant" in text
    first_cells = [line.split("│")[1].strip() for line in text.splitlines() if line.count("│") > 2]
    assert first_cells == ["a", "b", "total"]
    total_cost = sum((r["cost_usd"] for r in rows), start=Decimal(0))
    assert total_cost == Decimal("0.10086") and "0.10086 " in text  # exact, not rounded to fixed places
    assert "40" in text  # total requests in the footer


def test_write_chart_is_a_valid_png(tmp_path: Path, make_event) -> None:
    db = _filled(tmp_path, make_event)
    led = Ledger.open(db)
    out = write_chart(led, tmp_path / "charts" / "spend.png")
    w, h = _png_size(out)
    assert (w, h) == (1000, 450)
    empty = write_chart(led, tmp_path / "none.png", tenant_id="nobody")
    assert _png_size(empty) == (1000, 450)
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[:2] == (450, 1000)


def test_usage_command(tmp_path: Path, make_event) -> None:
    db = _filled(tmp_path, make_event)
    buf = io.StringIO()
    chart = tmp_path / "c.png"
    assert usage_command(str(db), "model", str(chart), None, out=buf) == 0
    text = buf.getvalue()
    assert "openai:gpt-4o-mini" in text and "openai:gpt-4o" in text
    _png_size(chart)
    buf = io.StringIO()
    assert usage_command(str(db), "day", None, "a", out=buf) == 0
    assert "2025-03-01" in buf.getvalue() and "tenant a" in buf.getvalue()
    assert usage_command(str(db), "color", None, None, out=io.StringIO()) == 2
    assert usage_command(str(tmp_path / "missing.db"), "tenant", None, None, out=io.StringIO()) == 1
    assert not (tmp_path / "missing.db").exists()


def _cells(text: str, first: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in re.split("[│┃]", line)]
        if len(cells) > 2 and cells[1] == first:
            return cells[1:-1]
    raise AssertionError(f"no row {first!r} in\n{text}")


def test_unpriced_groups_show_unknown_and_sub_cent_costs_keep_their_digits(tmp_path: Path, make_event) -> None:
    db = tmp_path / "usage.sqlite3"
    with Ledger.open(db) as led:
        led.record_many(
            [
                make_event(1, tenant_id="priced", cost_usd=Decimal("0.0000001234"), estimated=True),
                make_event(2, tenant_id="priced", cost_usd=Decimal("0.0000000011")),
                make_event(3, tenant_id="selfhosted", cost_usd=None),
                make_event(4, tenant_id="selfhosted", cost_usd=None),
                make_event(5, tenant_id="failed", cost_usd=None, input_tokens=0, output_tokens=0, total_tokens=0),
            ]
        )
    buf = io.StringIO()
    assert usage_command(str(db), "tenant", None, None, out=buf) == 0
    text = buf.getvalue()
    header = _cells(text, "tenant")
    col = {name: header.index(name) for name in ("cost USD", "unpriced", "estimated")}
    priced, selfhosted, failed = _cells(text, "priced"), _cells(text, "selfhosted"), _cells(text, "failed")
    assert priced[col["cost USD"]] == "0.0000001245" and priced[col["estimated"]] == "1"
    assert selfhosted[col["cost USD"]] == "unknown" and selfhosted[col["unpriced"]] == "2"
    assert failed[col["cost USD"]] == "0"  # nothing used: nothing to pay, not unknown
    assert _cells(text, "total")[col["cost USD"]] == "0.0000001245"
    assert "2 call(s) used tokens at an unknown price" in text
    assert "1 call(s) billed on an estimate" in text


def test_a_table_of_only_unpriced_calls_totals_unknown(tmp_path: Path, make_event) -> None:
    db = tmp_path / "usage.sqlite3"
    with Ledger.open(db) as led:
        led.record(make_event(1, cost_usd=None))
        rows = led.totals("tenant")
    assert rows[0]["cost_usd"] is None
    console = Console(record=True, width=200)
    console.print(render_table(rows, group_by="tenant"))
    assert _cells(console.export_text(), "total")[8] == "unknown"
