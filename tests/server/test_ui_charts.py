"""The dashboard's chart geometry (pure): stacked bars per bucket, round axis steps, "other" for the tail."""

from __future__ import annotations

import pytest

from llm_connect.server.ui.charts import PALETTE, nice_step, stacked_bars


@pytest.mark.parametrize(("top", "step"), [(0.00029, 0.0001), (164, 50), (1000, 250), (7, 2), (0, 1.0)])
def test_nice_steps(top: float, step: float) -> None:
    assert nice_step(top) == pytest.approx(step)


def test_bars_stack_per_bucket_and_scale_to_the_axis() -> None:
    c = stacked_bars(["h1", "h2", "h3"], {"h1": {"a": 30, "b": 10}, "h3": {"b": 50}}, fmt=str)
    assert not c.empty and [t.label for t in c.yticks] == ["0", "20", "40", "60"]
    heights = {(b.title.split(":")[0]): b.height for b in c.bars}
    assert heights["b · h3"] == pytest.approx(c.plot_height * 50 / 60)
    assert heights["a · h1"] + heights["b · h1"] == pytest.approx(c.plot_height * 40 / 60)
    h1 = [b for b in c.bars if "h1" in b.title]
    assert h1[0].y == pytest.approx(h1[1].y + h1[1].height)  # stacked: the second sits on the first
    assert [name for _, name, _ in c.legend] == ["b", "a"] and c.total == "90.0"


def test_the_tail_folds_into_other_and_order_fixes_colours() -> None:
    values = {"d": {f"g{i}": float(i + 1) for i in range(12)}}
    c = stacked_bars(["d"], values, fmt=str, max_groups=3)
    assert [name for _, name, _ in c.legend] == ["g11", "g10", "g9", "other (9)"]
    assert c.legend[-1][0] == PALETTE[-1]
    a = stacked_bars(["d"], {"d": {"x": 1.0, "y": 5.0}}, fmt=str, order=["x", "y"])
    b = stacked_bars(["d"], {"d": {"x": 9.0, "y": 1.0}}, fmt=str, order=["x", "y"])
    assert [lg[:2] for lg in a.legend] == [lg[:2] for lg in b.legend] == [(PALETTE[0], "x"), (PALETTE[1], "y")]


def test_no_data_is_an_empty_chart() -> None:
    assert stacked_bars(["a", "b"], {}, fmt=str).empty
