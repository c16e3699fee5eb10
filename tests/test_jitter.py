"""The backoff and jitter formulas every pause is drawn from, at the edges of the draw."""

from __future__ import annotations

import pytest

from scaleset_client._jitter import around, exponential, full, half_to_full, plus_up_to


@pytest.mark.parametrize(("failures", "expected"), [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (10_000, 30.0)])
def test_the_ceiling_doubles_from_the_base_up_to_the_cap(failures: int, expected: float) -> None:
    assert exponential(failures, 0.5, 30.0) == expected


@pytest.mark.parametrize(("formula", "draw", "expected"), [
    (lambda d: full(10.0, d), 0.0, 0.0), (lambda d: full(10.0, d), 0.5, 5.0),
    (lambda d: half_to_full(10.0, d), 0.0, 5.0), (lambda d: half_to_full(10.0, d), 0.99, 9.95),
    (lambda d: around(10.0, 0.2, d), 0.0, 8.0), (lambda d: around(10.0, 0.2, d), 0.5, 10.0),
    (lambda d: around(10.0, 0.2, d), 0.99, 11.96), (lambda d: plus_up_to(3.0, 0.5, d), 0.5, 3.25),
], ids=["full at 0", "full at half", "half-to-full at 0", "half-to-full at 0.99", "around at 0",
        "around at half", "around at 0.99", "plus up to at half"])
def test_each_spread_at_the_edges_of_the_draw(formula: object, draw: float, expected: float) -> None:
    assert formula(draw) == pytest.approx(expected)  # type: ignore[operator]
