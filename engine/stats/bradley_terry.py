"""Bradley-Terry ratings on the Elo scale from pairwise comparisons, as Chatbot Arena does.

P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400)). Ratings are fitted by maximum
likelihood (ties count as half a win for each side), anchored so that one model sits at
1000, with bootstrap 95% confidence intervals from resampling the comparisons.
Plain numpy/scipy: no Django.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

SCALE = 400.0
BASE = 10.0
ANCHOR_RATING = 1000.0
# A whisper of L2 on the ratings keeps the fit finite when one model won every comparison
# (the pure MLE is then at infinity); it moves well-measured ratings by well under 1 point.
RIDGE = 1e-6


@dataclass(frozen=True)
class Rating:
    model: Hashable
    rating: float
    ci_low: float
    ci_high: float
    comparisons: int


def _aggregate(comparisons: Iterable[tuple[Hashable, Hashable, float]]):
    """-> models, pair index arrays (i, j), wins of i over j, totals, per-model counts."""
    models: list[Hashable] = []
    index: dict[Hashable, int] = {}
    cells: dict[tuple[int, int], list[float]] = {}
    for a, b, score in comparisons:
        if a == b:
            continue
        for m in (a, b):
            if m not in index:
                index[m] = len(models)
                models.append(m)
        i, j = index[a], index[b]
        if i > j:
            i, j, score = j, i, 1.0 - score
        cell = cells.setdefault((i, j), [0.0, 0.0])
        cell[0] += score  # wins of i over j (ties add 0.5)
        cell[1] += 1.0
    pairs = np.array(list(cells), dtype=np.int64).reshape(-1, 2)
    stats = np.array(list(cells.values()), dtype=np.float64).reshape(-1, 2)
    return models, pairs, stats[:, 0], stats[:, 1]


def _fit(n_models: int, pairs: np.ndarray, wins: np.ndarray, totals: np.ndarray, anchor: int) -> np.ndarray:
    """Natural-log strengths maximising the likelihood; the anchor model fixed at 0."""
    if n_models == 1:
        return np.zeros(1)
    free = np.array([k for k in range(n_models) if k != anchor])
    i, j = pairs[:, 0], pairs[:, 1]

    def objective(x):
        theta = np.zeros(n_models)
        theta[free] = x
        diff = theta[i] - theta[j]
        p = 1.0 / (1.0 + np.exp(-diff))
        eps = 1e-12
        nll = -(wins * np.log(p + eps) + (totals - wins) * np.log(1.0 - p + eps)).sum() + RIDGE * (x @ x)
        residual = wins - totals * p  # d nll / d diff = -(residual)
        grad = np.zeros(n_models)
        np.add.at(grad, i, -residual)
        np.add.at(grad, j, residual)
        return nll, grad[free] + 2 * RIDGE * x

    result = minimize(objective, np.zeros(free.size), jac=True, method="L-BFGS-B")
    theta = np.zeros(n_models)
    theta[free] = result.x
    return theta


def _to_elo(theta: np.ndarray) -> np.ndarray:
    return ANCHOR_RATING + theta * SCALE / np.log(BASE)


def fit_ratings(
    comparisons: Iterable[tuple[Hashable, Hashable, float]],
    *,
    anchor: Hashable | None = None,
    bootstrap_rounds: int = 200,
    seed: int = 0,
) -> list[Rating]:
    """Ratings from comparisons (a, b, score): score 1 if a won, 0 if b won, 0.5 for a tie.

    `anchor` is pinned at 1000 (default: the first model seen). Intervals are the 2.5th and
    97.5th percentiles over `bootstrap_rounds` resamples of the comparisons.
    """
    models, pairs, wins, totals = _aggregate(comparisons)
    if not models:
        return []
    anchor_index = models.index(anchor) if anchor in models else 0
    point = _to_elo(_fit(len(models), pairs, wins, totals, anchor_index))
    counts = np.zeros(len(models))
    np.add.at(counts, pairs[:, 0], totals)
    np.add.at(counts, pairs[:, 1], totals)

    low, high = point.copy(), point.copy()
    if bootstrap_rounds > 0 and pairs.size:
        rng = np.random.default_rng(seed)
        # Resample whole comparisons: per cell, outcomes as (win, tie, loss) counts is not
        # recoverable from the sums, so resample wins binomially within each cell's size,
        # after resampling how many comparisons each cell gets (multinomial over cells).
        n_total = int(totals.sum())
        share = totals / totals.sum()
        win_rate = np.clip(wins / totals, 0.0, 1.0)
        samples = np.empty((bootstrap_rounds, len(models)))
        for r in range(bootstrap_rounds):
            sizes = rng.multinomial(n_total, share).astype(np.float64)
            sampled_wins = rng.binomial(sizes.astype(np.int64), win_rate).astype(np.float64)
            keep = sizes > 0
            samples[r] = _to_elo(_fit(len(models), pairs[keep], sampled_wins[keep], sizes[keep], anchor_index))
        low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    return sorted(
        (Rating(model=m, rating=float(point[k]), ci_low=float(low[k]), ci_high=float(high[k]),
                comparisons=int(counts[k])) for k, m in enumerate(models)),
        key=lambda r: -r.rating,
    )


def expected_score(rating_a: float, rating_b: float) -> float:
    """P(a beats b) under the fitted model."""
    return 1.0 / (1.0 + BASE ** ((rating_b - rating_a) / SCALE))


def win_rate(comparisons: Iterable[tuple[Hashable, Hashable, float]], model: Hashable, opponent: Hashable) -> dict:
    """How `model` fared against `opponent`: wins, ties, losses and the ratio of wins to losses."""
    wins = ties = losses = 0
    for a, b, score in comparisons:
        if {a, b} != {model, opponent}:
            continue
        s = score if a == model else 1.0 - score
        if s == 0.5:
            ties += 1
        elif s > 0.5:
            wins += 1
        else:
            losses += 1
    n = wins + ties + losses
    return {
        "wins": wins, "ties": ties, "losses": losses, "comparisons": n,
        "win_rate": (wins + 0.5 * ties) / n if n else None,
        "ratio": (wins / losses) if losses else None,
    }
