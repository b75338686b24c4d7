"""Reports: the rich totals table, the PNG spend chart and the ``llm-connect usage`` command."""

from __future__ import annotations

import io
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
    assert f"{total_cost:.6f}" in text
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
