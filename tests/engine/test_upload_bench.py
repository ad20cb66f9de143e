"""bench/upload.py, small: a zip through the chunked upload API served by gunicorn, while another
client's requests are answered (the full 2 GB run's figures are in docs/console.md)."""
import pytest

from tests.subprocesses import bench_run

pytestmark = [pytest.mark.slow, pytest.mark.postgresql, pytest.mark.django_db]


def test_upload_bench_runs_small():
    lines, figures = bench_run("upload.py", "--mib", "24", "--chunk-mb", "4", bench_db="engine_bench_upload_test")
    assert figures["upload_bytes"] > 24 * 2**20 and figures["chunks"] == 7
    assert figures["complete_ms"] > 0 and figures["probe_requests"] >= 1
    assert any(line.startswith("one chunk (PUT)") for line in lines)
