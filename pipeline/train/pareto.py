"""The accuracy/computation Pareto front of a set of trained models (pure Python).

A model is on the front when no other model is at least as accurate *and* at most as costly with
one of the two strictly better. Used by the sweep report (which trials to highlight and register)
and by the registry (the `champion`: the most accurate model within a GFLOPs budget).
"""

from __future__ import annotations

import math
from typing import Sequence


def _check(points: Sequence[tuple[float, float]]) -> None:
    for i, (acc, cost) in enumerate(points):
        if not (math.isfinite(acc) and math.isfinite(cost)):
            raise ValueError(f"point {i} = ({acc!r}, {cost!r}): accuracy and cost must be finite numbers")


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """`a` (accuracy, cost) dominates `b`: no worse on both, strictly better on one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (accuracy up, cost down) points, ordered by cost then accuracy.

    Exact duplicates are all kept (neither dominates the other), so equal models are all shown.
    Sort-and-sweep, O(n log n): walking by increasing cost, a point is on the front iff it is at
    least as accurate as every cheaper one (and strictly more than those strictly cheaper).
    """
    _check(points)
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    front: list[int] = []
    best_acc = -math.inf  # best accuracy among strictly cheaper points
    i = 0
    while i < len(order):
        # Points of equal cost: only the most accurate of them (and its duplicates) can survive.
        j = i
        cost = points[order[i]][1]
        while j < len(order) and points[order[j]][1] == cost:
            j += 1
        group = order[i:j]
        top = points[group[0]][0]
        if top > best_acc:
            front.extend(k for k in group if points[k][0] == top)
            best_acc = top
        i = j
    return front


def best_within_budget(points: Sequence[tuple[float, float]], budget: float | None) -> int:
    """Index of the most accurate point whose cost is <= `budget` (ties: the cheaper, then the first).

    `budget` None means no limit. Raises ValueError when nothing fits, naming the cheapest cost.
    """
    _check(points)
    if not points:
        raise ValueError("no models to choose from")
    fits = [i for i, (_, cost) in enumerate(points) if budget is None or cost <= budget]
    if not fits:
        cheapest = min(cost for _, cost in points)
        raise ValueError(f"no model fits the GFLOPs budget {budget}; the cheapest needs {cheapest:.6g} "
                         f"(raise the budget to at least that)")
    return min(fits, key=lambda i: (-points[i][0], points[i][1], i))
