"""The candidate order and sides of a lease, drawn from its seed (plain Python, replayable).

`ORDER_KEYS` uniform keys (the candidate of rank r in id order gets key r) and ORDER_KEYS - 1
coin flips. The same draw runs here (for replay and for the portable store) and inside the
PostgreSQL lease statement (the keys and flips are its parameters), so that the statement can
order the candidates of the item it picks.
"""
from __future__ import annotations

import random

ORDER_KEYS = 64  # Project.candidates_per_item is at most 64; further candidates go last, by id


def lease_draw(seed: int) -> tuple[list[float], list[bool]]:
    """The keys and coin flips of a lease with this seed."""
    rng = random.Random(seed)
    return [rng.random() for _ in range(ORDER_KEYS)], [rng.random() < 0.5 for _ in range(ORDER_KEYS - 1)]


def lease_order(candidate_ids: list[int], seed: int) -> tuple[list[int], list[bool]]:
    """The order and sides a lease with this seed shows for these candidates."""
    keys, flips = lease_draw(seed)
    ids = sorted(candidate_ids)
    ranked = sorted((keys[r] if r < ORDER_KEYS else float("inf"), cid) for r, cid in enumerate(ids))
    return [cid for _, cid in ranked], flips[: max(0, len(ids) - 1)]
