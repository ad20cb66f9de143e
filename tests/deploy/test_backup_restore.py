"""Backup and restore of the team deployment (docs/operations.md), on its own PostgreSQL, Redis and
S3 endpoint (tests/topology.py): pg_dump of the database plus a copy of the bucket, restored into a
new database and a new bucket, from which the same snapshot definition rebuilds byte-identical."""
from __future__ import annotations

import json
import time

import pytest

from tests.topology import Topology
from tests.topology_world import Annotator

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]


def wait_snapshot_done(topo: Topology, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        counts = topo.python("tests.topology_world", "check")
        snaps = counts["snapshots"]
        if snaps and snaps[-1]["state"] in ("done", "failed") or time.monotonic() > deadline:
            return counts
        time.sleep(1.0)


def test_pg_dump_and_bucket_restore_rebuild_the_snapshot_byte_identical(tmp_path):
    with Topology() as topo:
        topo.start_postgres()
        topo.start_redis()
        topo.start_s3()
        topo.migrate()
        topo.start_web()
        topo.start_worker("default")
        world = topo.python("tests.topology_world", "seed", "--annotators", "2", "--items", "8", "--generate", "0")
        for k, token in enumerate(world["tokens"]):
            Annotator(topo.base_url, token, seed=k).run(time.monotonic() + 60, stop_when_empty=True)
        topo.python("tests.topology_world", "snapshot")
        before = wait_snapshot_done(topo)
        original = before["snapshots"][-1]
        assert original["state"] == "done" and original["verified"], original
        assert before["judgements"] == 8

        # Backup: the database (pg_dump's custom format) and every object of the bucket.
        topo.pg_dump(tmp_path / "engine.dump")
        n_objects = topo.bucket_download("engine", tmp_path / "bucket")
        assert n_objects >= 2 + 4 + original["files"]  # photo and thumbnail, the GLBs, the snapshot's files

        # Restore into a new database and a new bucket; the first one stays untouched.
        topo.pg_restore(tmp_path / "engine.dump", "engine_restored")
        assert topo.bucket_upload(tmp_path / "bucket", "engine-restored") == n_objects
        restored_env = topo.env(DATABASE_URL=topo.database_url("engine_restored"), S3_BUCKET="engine-restored")
        after = topo.python("tests.topology_world", "check", env=restored_env)
        assert after["judgements"] == before["judgements"] and after["items"] == before["items"]
        assert after["snapshots"][-1]["verified"]  # the restored bucket holds the snapshot's files

        rebuilt = topo.python("tests.topology_world", "snapshot-rebuild", "--snapshot", str(original["id"]),
                              env=restored_env)
        assert rebuilt["verified"]
        assert json.dumps(rebuilt["manifest"], sort_keys=True) == json.dumps(original["manifest"], sort_keys=True)
        assert rebuilt["snapshot"] != original["id"]  # built anew, not the restored row
