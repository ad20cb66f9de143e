"""bench/annotation_queue.py, small: 64 annotators through gunicorn against PostgreSQL lose,
duplicate and double-lease nothing, and the bench keeps printing the figures the issue asks for."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"lease_query_p99_ms", "next_p50_ms", "next_p99_ms", "submits_per_s", "double_leases", "lost_judgements"}


@pytest.mark.slow
def test_the_queue_bench_runs_and_counts_nothing_lost_under_load():
    if connection.vendor != "postgresql":
        pytest.skip("bench/annotation_queue.py measures PostgreSQL")
    db = connection.settings_dict
    admin_url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "annotation_queue.py"), "--items", "3000",
         "--history", "100", "--skip-lease-query", "--duration", "2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "BENCH_ADMIN_URL": admin_url, "BENCH_DB": "engine_bench_test"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert KEYS <= figures.keys()
    assert figures["submits_per_s"] > 0 and figures["next_p99_ms"] > 0
    assert (figures["double_leases"], figures["lost_judgements"], figures["duplicated_judgements"],
            figures["counter_mismatches"], figures["http_errors"]) == (0, 0, 0, 0, 0)
    assert any(line.startswith("saturation judgements/s") for line in lines)  # the readable table
