"""bench/export.py, small: the bench's shape (6 candidates, two king-of-the-hill judgements of 5
comparisons per item, every photo and mesh distinct) at 300 items, referenced Parquet: its JSON
line keeps its keys and the snapshot weighs at most 1.2 times the unique assets it holds."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def test_the_export_bench_shape_stores_each_asset_once():
    if connection.vendor != "postgresql":
        pytest.skip("bench/export.py fills PostgreSQL by COPY")
    db = connection.settings_dict
    admin_url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "export.py"), "--items", "300"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "BENCH_ADMIN_URL": admin_url, "BENCH_DB": f"{db['NAME']}_bench_export",
             **{k: os.environ[k] for k in ("CACHE_URL", "VAR_DIR") if k in os.environ}},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"pairs_per_s", "peak_rss_mb", "pairs", "items", "build_s", "cpu_s", "bytes",
            "bytes_over_unique_assets"} <= figures.keys()
    assert figures["pairs"] == 3000 and figures["assets"] == "referenced"
    assert 0 < figures["bytes_over_unique_assets"] <= 1.2  # below 1: zstd shrinks the GLBs
