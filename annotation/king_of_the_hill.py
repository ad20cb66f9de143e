"""A king-of-the-hill run built from a next-item payload: what a client submits (plain Python).

The lease fixes the candidates' order and, for the comparison of candidates[k] (k = 1..N-1),
whether the king stands on the left (`sides[k - 1]`). The first candidate is the first king;
each challenger in turn meets the king; the better one of a strict preference is the king from
then on, "equal" keeps the king; the winner is the last king. `annotation.services` checks a
submission by the same rule. The simulated annotators, the tests and the benches build their
runs here; `decide` is the judge.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


class Match(NamedTuple):
    """One comparison as the annotator sees it: the king against the k-th candidate."""

    index: int  # k, from 1
    king: int
    challenger: int
    left: int
    right: int


class Run(NamedTuple):
    comparisons: list[dict]  # {"left", "right", "outcome": "left" | "right" | "equal", "decided_ms"}
    winner: int


def run_build(item: dict, decide: Callable[[Match], int | None], *,
              decided_ms: int | Callable[[], int] = 1500) -> Run:
    """The run over `item` (the payload's "item": its candidates in the lease's order, its sides).

    `decide(match)` returns the better candidate's id, or None for "equal". `decided_ms` is the
    time each decision took, or a function called for it after each decision.
    """
    order = [c["id"] for c in item["candidates"]]
    king, comparisons = order[0], []
    for k, challenger in enumerate(order[1:], start=1):
        left, right = (king, challenger) if item["sides"][k - 1] else (challenger, king)
        better = decide(Match(k, king, challenger, left, right))
        if better is None:
            outcome = "equal"
        elif better in (left, right):
            outcome = "left" if better == left else "right"
            king = better
        else:
            raise ValueError(f"decide() chose {better}, which is neither {left} nor {right}.")
        comparisons.append({"left": left, "right": right, "outcome": outcome,
                            "decided_ms": decided_ms() if callable(decided_ms) else decided_ms})
    return Run(comparisons, king)
