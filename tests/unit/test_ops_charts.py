"""The /ops page's sparklines: scaled to the peak, gaps for minutes without data, labels escaped."""

from __future__ import annotations

import re

from services.api.charts import sparkline


def points(svg: str) -> list[list[tuple[float, float]]]:
    return [[tuple(map(float, p.split(","))) for p in run.split()]
            for run in re.findall(r'<polyline points="([^"]*)"', svg)]


def test_scaled_to_the_peak_left_to_right() -> None:
    svg = str(sparkline([0, 5, 10], label="stored", width=100, height=24))
    [run] = points(svg)
    assert [x for x, _ in run] == [0.0, 50.0, 100.0]
    assert run[0][1] == 22.0 and run[2][1] == 2.0  # zero at the bottom, the peak at the top (2 px margins)
    assert "stored: peak 10" in svg


def test_none_leaves_a_gap_and_a_lone_point_is_a_dot() -> None:
    svg = str(sparkline([1, 2, None, 3, None, None, 4, 5], label="lag", unit=" s"))
    assert len(points(svg)) == 2
    assert svg.count("<circle") == 1 and "lag: peak 5 s" in svg


def test_no_data_draws_nothing_and_says_so() -> None:
    svg = str(sparkline([None, None], label="lag"))
    assert points(svg) == [] and "<circle" not in svg and "lag: no data" in svg
    flat = points(str(sparkline([0, 0, 0], label="failed", height=24)))
    assert all(y == 22.0 for _, y in flat[0])


def test_labels_are_escaped() -> None:
    svg = str(sparkline([1], label='<script>"x"</script>'))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
