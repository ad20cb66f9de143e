"""bench/export.py, small: the bench's shape (6 candidates, two king-of-the-hill judgements of 5
comparisons per item, every photo and mesh distinct) at 300 items, referenced Parquet: its JSON
line keeps its keys and the snapshot weighs at most 1.2 times the unique assets it holds."""
import pytest
from django.db import connection

from tests.subprocesses import bench_run


def test_the_export_bench_shape_stores_each_asset_once():
    if connection.vendor != "postgresql":
        pytest.skip("bench/export.py fills PostgreSQL by COPY")
    _, figures = bench_run("export.py", "--items", "300",
                           bench_db=f"{connection.settings_dict['NAME']}_bench_export")
    assert {"pairs_per_s", "peak_rss_mb", "pairs", "items", "build_s", "cpu_s", "bytes",
            "bytes_over_unique_assets"} <= figures.keys()
    assert figures["pairs"] == 3000 and figures["assets"] == "referenced"
    assert 0 < figures["bytes_over_unique_assets"] <= 1.2  # below 1: zstd shrinks the GLBs
