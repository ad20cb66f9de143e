"""Helpers for annotation tests: driving a king-of-the-hill run over HTTP."""
from __future__ import annotations

import uuid

import pytest

from annotation.king_of_the_hill import run_build


def judgement_body(payload: dict, *, rating: int = 4, prefer=None, key: str | None = None, **extra) -> dict:
    """A valid king-of-the-hill submission for a next-item payload. `prefer(king, challenger)` ->
    'a' | 'b' | 'equal' (default: 'equal', the first candidate stays king)."""

    def decide(m):
        return {"a": m.king, "b": m.challenger}.get(prefer(m.king, m.challenger)) if prefer else None

    comps, winner = run_build(payload["item"], decide, decided_ms=1500)
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
