"""The Bradley-Terry fit recovers known ratings from synthetic comparisons."""
import numpy as np
import pytest

from engine.stats.bradley_terry import expected_score, fit_ratings, win_rate

TRUE = {"bootstrap": 1000.0, "round1": 1120.0, "round2": 1250.0, "other": 880.0}


def simulate(n: int, tie_rate: float = 0.1, seed: int = 1):
    """Comparisons whose expected score (a tie counting half) is the model's P(a beats b)."""
    rng = np.random.default_rng(seed)
    names = list(TRUE)
    out = []
    for _ in range(n):
        a, b = rng.choice(names, size=2, replace=False)
        if rng.random() < tie_rate:
            out.append((a, b, 0.5))
        else:
            p = expected_score(TRUE[a], TRUE[b])
            p_win_given_decided = np.clip((p - tie_rate / 2) / (1 - tie_rate), 0, 1)
            out.append((a, b, 1.0 if rng.random() < p_win_given_decided else 0.0))
    return out


def test_fit_recovers_known_ratings_within_their_intervals():
    ratings = {r.model: r for r in fit_ratings(simulate(12000), anchor="bootstrap", bootstrap_rounds=100)}
    assert ratings["bootstrap"].rating == pytest.approx(1000.0)
    for name, true in TRUE.items():
        r = ratings[name]
        assert r.ci_low - 1e-6 <= true <= r.ci_high + 1e-6, (name, r)
        assert abs(r.rating - true) < 30
    order = [r.model for r in fit_ratings(simulate(12000), anchor="bootstrap", bootstrap_rounds=0)]
    assert order == ["round2", "round1", "bootstrap", "other"]


def test_intervals_shrink_with_more_comparisons():
    few = {r.model: r for r in fit_ratings(simulate(400), anchor="bootstrap", bootstrap_rounds=100)}
    many = {r.model: r for r in fit_ratings(simulate(8000), anchor="bootstrap", bootstrap_rounds=100)}
    width = lambda r: r.ci_high - r.ci_low  # noqa: E731
    assert width(many["round2"]) < width(few["round2"]) / 2


def test_a_model_that_always_wins_gets_a_finite_high_rating():
    ratings = {r.model: r for r in fit_ratings([("new", "old", 1.0)] * 50, anchor="old", bootstrap_rounds=20)}
    assert np.isfinite(ratings["new"].rating) and ratings["new"].rating > 1400


def test_win_rate_against_parent_counts_ties_as_half():
    comparisons = [("child", "parent", 1.0)] * 5 + [("parent", "child", 1.0)] + [("child", "parent", 0.5)] * 2
    result = win_rate(comparisons, "child", "parent")
    assert result["wins"] == 5 and result["losses"] == 1 and result["ties"] == 2
    assert result["ratio"] == 5.0 and result["win_rate"] == pytest.approx(6 / 8)


def test_no_comparisons_no_ratings():
    assert fit_ratings([]) == []
