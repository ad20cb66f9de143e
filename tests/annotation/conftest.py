"""Helpers for annotation tests: driving a king-of-the-hill run over HTTP."""
from __future__ import annotations

import uuid

import pytest


def koth_run(payload: dict, prefer=None) -> tuple[list[dict], int]:
    """A valid run over the offered candidates. `prefer(a, b)` -> 'a' | 'b' | 'equal' (default: keep king)."""
    item = payload["item"]
    order = [c["id"] for c in item["candidates"]]
    sides = item["sides"]
    king, comps = order[0], []
    for k in range(1, len(order)):
        challenger = order[k]
        left, right = (king, challenger) if sides[k - 1] else (challenger, king)
        choice = prefer(king, challenger) if prefer else "equal"
        if choice == "equal":
            outcome = "equal"
        else:
            better = king if choice == "a" else challenger
            outcome = "left" if better == left else "right"
            king = better
        comps.append({"left": left, "right": right, "outcome": outcome, "decided_ms": 1500})
    return comps, king


def judgement_body(payload: dict, *, rating: int = 4, prefer=None, key: str | None = None, **extra) -> dict:
    comps, winner = koth_run(payload, prefer)
    body = {"lease": payload["lease"]["id"], "key": key or str(uuid.uuid4()), "comparisons": comps,
            "ranking": None, "winner": winner, "rating": rating, "layout": None, "time_spent_ms": 9000}
    body.update(extra)
    return body


@pytest.fixture
def next_item(api):
    def call(user, project):
        return api(user).post(f"/api/v1/projects/{project.slug}/next-item")

    return call


@pytest.fixture
def submit(api):
    def call(user, payload, **kwargs):
        body = judgement_body(payload, **kwargs)
        return api(user).post(f"/api/v1/items/{payload['item']['id']}/judgements", body, format="json")

    return call
