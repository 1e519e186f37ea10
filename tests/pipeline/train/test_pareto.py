"""The Pareto front (accuracy up, GFLOPs down) and the champion choice within a budget."""

import itertools
import random

import pytest

from pipeline.train.pareto import best_within_budget, dominates, pareto_front


def brute_force_front(points):
    return sorted(i for i, p in enumerate(points)
                  if not any(dominates(q, p) for j, q in enumerate(points) if j != i))


def test_front_is_exactly_the_non_dominated_points():
    rng = random.Random(0)
    for n in range(0, 30):
        # Coarse values so ties in accuracy and cost happen often.
        points = [(rng.randint(0, 5) / 5, rng.randint(0, 5) * 0.1) for _ in range(n)]
        assert sorted(pareto_front(points)) == brute_force_front(points), points


def test_front_members_do_not_dominate_each_other_and_are_ordered_by_cost():
    points = [(0.5, 1.0), (0.7, 2.0), (0.6, 2.5), (0.9, 4.0), (0.9, 5.0), (0.4, 0.5)]
    front = pareto_front(points)
    assert front == [5, 0, 1, 3]
    for a, b in itertools.permutations(front, 2):
        assert not dominates(points[a], points[b])
    costs = [points[i][1] for i in front]
    assert costs == sorted(costs)


def test_equal_models_are_all_on_the_front():
    assert pareto_front([(0.5, 1.0), (0.5, 1.0), (0.4, 1.0)]) == [0, 1]


def test_champion_is_the_most_accurate_model_within_the_budget():
    points = [(0.5, 1.0), (0.7, 2.0), (0.9, 4.0), (0.7, 1.5)]
    assert best_within_budget(points, None) == 2
    assert best_within_budget(points, 3.0) == 3  # equal accuracy: the cheaper one
    assert best_within_budget(points, 1.0) == 0


def test_a_budget_nothing_fits_is_a_value_error_naming_the_cheapest_cost():
    with pytest.raises(ValueError, match="cheapest needs 1"):
        best_within_budget([(0.5, 1.0), (0.9, 2.0)], 0.5)


def test_non_finite_values_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        pareto_front([(float("nan"), 1.0)])
