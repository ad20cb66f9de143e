"""bench/annotation_queue.py, small: 64 annotators through gunicorn against PostgreSQL lose,
duplicate and double-lease nothing, and the bench keeps printing the figures the issue asks for."""
import pytest
from django.db import connection

from tests.subprocesses import bench_run

KEYS = {"lease_query_p99_ms", "next_p50_ms", "next_p99_ms", "submits_per_s", "double_leases", "lost_judgements"}


@pytest.mark.slow
def test_the_queue_bench_runs_and_counts_nothing_lost_under_load():
    if connection.vendor != "postgresql":
        pytest.skip("bench/annotation_queue.py measures PostgreSQL")
    lines, figures = bench_run("annotation_queue.py", "--items", "3000", "--history", "100", "--skip-lease-query",
                               "--duration", "2", bench_db="engine_bench_test")
    assert KEYS <= figures.keys()
    assert figures["submits_per_s"] > 0 and figures["next_p99_ms"] > 0
    assert (figures["double_leases"], figures["lost_judgements"], figures["duplicated_judgements"],
            figures["counter_mismatches"], figures["http_errors"]) == (0, 0, 0, 0, 0)
    assert any(line.startswith("saturation judgements/s") for line in lines)  # the readable table
