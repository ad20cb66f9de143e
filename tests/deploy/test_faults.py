"""The soak with faults, short (tests/topology_soak.py; bench/faults.py runs the full three
minutes): annotators over HTTP, a generation job and a snapshot build while a gunicorn worker, the
S3 endpoint, the model worker (generating), Redis, the default worker (building the snapshot) and
PostgreSQL are killed with -9; nothing is lost, duplicated or stuck, and what the killed workers
held comes back through the lost-work sweep without anyone starting it again."""
from __future__ import annotations

import pytest

from tests.topology_soak import problems, soak

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]


def test_annotation_generation_and_a_snapshot_survive_killed_processes():
    result = soak(duration_s=36, annotators=8, items=1200, generate=20, think_s=0.3)
    check = result["check"]
    assert problems(result) == [], result
    assert len(result["faults"]) == 6, result["faults"]
    assert {k: v for k, v in result["restarts"].items() if v} == {
        "s3": 1, "worker-model": 1, "redis": 1, "worker-default": 1, "postgres": 1}
    assert check["lost_judgements"] == 0 and check["duplicated_judgements"] == 0 and check["judgements"] > 0
    assert check["generated_candidates"] == 2 * result["job"]["items"]
    assert check["generated_items_not_2_candidates"] == 0 and result["stuck_generation_items"] == 0
    assert check["stuck_items"] == 0 and check["active_leases"] == 0
    # The item the model worker held and the build the default worker held were sent again by the sweep.
    held = {f["fault"].split(" ")[3]: f.get("tasks_in_flight", 0) for f in result["faults"] if "worker" in f["fault"]}
    assert held["model"] >= 1 and check["generation_requeues"] >= 1, (held, check["generation_job_items"])
    (snapshot,) = check["snapshots"]
    assert held["default"] == 1 and snapshot["requeues"] == 1, (held, snapshot)
    assert snapshot["state"] == "done" and snapshot["verified"] and snapshot["rebuilt_identical"]
