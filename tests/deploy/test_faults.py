"""The soak with faults, short (tests/topology_soak.py; bench/faults.py runs the full three
minutes): annotators over HTTP, a generation job and a snapshot build while a gunicorn worker, the
model worker, Redis and PostgreSQL are killed with -9; nothing is lost, duplicated or stuck."""
from __future__ import annotations

import pytest

from tests.topology_soak import problems, soak

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]


def test_annotation_generation_and_a_snapshot_survive_killed_processes():
    result = soak(duration_s=36, annotators=8, items=1200, generate=20, think_s=0.3)
    check = result["check"]
    assert problems(result) == [], result
    # Known (docs/operations.md): a task the killed model worker held waits in Redis until the
    # broker's visibility timeout; the soak then starts generation again, as an operator would.
    model_kill = next(f for f in result["faults"] if "model" in f["fault"])
    assert result["stuck_generation_items"] <= model_kill["tasks_in_flight"]
    assert len(result["faults"]) == 4 and result["restarts"]["postgres"] == 1 and result["restarts"]["redis"] == 1
    assert check["lost_judgements"] == 0 and check["duplicated_judgements"] == 0 and check["judgements"] > 0
    assert check["generated_candidates"] == 2 * result["job"]["items"]
    assert check["stuck_items"] == 0 and check["active_leases"] == 0
