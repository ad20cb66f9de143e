"""Benchmark of the DPO export (issues 6 and 18). Not a test: run it by hand.

    .venv/bin/python bench/export.py [--items 100000] [--format parquet|webdataset] \
        [--assets referenced|embedded] [--out DIR]
    BENCH_PROFILE=/tmp/export.prof .venv/bin/python bench/export.py --items 10000   # cProfile of the build

Creates its own database (`engine_bench_export`, dropped at the end), fills it with COPY:
`items` items of 6 candidates each, two accepted king-of-the-hill judgements per item of 5
strict comparisons each (10 recorded pairs per item: 1,000,000 pairs for 100,000 items), then
builds the DPO snapshot (pairing "recorded") through the same service the Celery task calls,
and reports pairs per second, the process's peak RSS, and the snapshot's bytes over the unique
assets it holds (`bytes_over_unique_assets`). Every item has its own photo (a 64x48 PNG of
random pixels, about 9 KB) and every candidate its own GLB (a tetrahedron, about 1.1 KB), stored
content-addressed as ingest and generation store them: 700,000 distinct assets for 100,000
items. Small meshes are the hard case for the ratio (the rows' own columns weigh more beside
them). Prints a table, then one JSON line (its last line).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import harness

DB_NAME = os.environ.get("BENCH_DB", "engine_bench_export")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy_rows(conn, model, rows, fields):
    with conn.cursor() as cur:
        harness.copy_rows(cur, model._meta.db_table, [model._meta.get_field(f).column for f in fields], rows)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--format", default="parquet", choices=["parquet", "webdataset"])
    parser.add_argument("--assets", default="referenced", choices=["referenced", "embedded"])
    parser.add_argument("--out", help="copy the snapshot's files here (to compare builds across code changes)")
    args = parser.parse_args()
    # Media on tmpfs where there is one: 700,000 small file creations on this VM's disk take ~1.7 ms
    # each (20 minutes of fill); the build reads them back from the page cache either way.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    media = tempfile.mkdtemp(prefix="bench-export-media-", dir=shm)
    try:
        with harness.own_database(DB_NAME) as url:
            harness.django_setup(database_url=url, environ={"MEDIA_ROOT": media, "DEBUG": "1", "LOG_LEVEL": "WARNING"})
            figures = measure(args)
    finally:
        shutil.rmtree(media, ignore_errors=True)
    harness.print_figures(figures)


def measure(args) -> dict:
    """Fill the database by COPY, build the snapshot; the figures of the JSON line (the table printed)."""
    n_items, n_cands, per_j = args.items, 6, 5
    import numpy as np
    from django.db import connection
    from django.utils import timezone

    from annotation.models import Comparison, Item, Judgement, Lease
    from engine import masks as mask_codec
    from engine.exports import services
    from engine.models import Image, ObjectMask, Project, Round
    from modelzoo import mesh
    from modelzoo.models import Candidate, Checkpoint
    from django.contrib.auth import get_user_model
    from tests.engine.builders import box_mask, photo_bytes

    t0 = time.perf_counter()
    from django.conf import settings

    media = Path(settings.MEDIA_ROOT)
    unique = {"n": 0, "bytes": 0}

    def store(folder: str, extension: str, data: bytes) -> tuple[str, str]:
        """Write a file as engine.files names it (content-addressed), straight to MEDIA_ROOT: 700k
        files through the storage API would take longer than the build."""
        sha = hashlib.sha256(data).hexdigest()
        name = f"{folder}/{sha[:2]}/{sha}.{extension}"
        path = media / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        unique["n"] += 1
        unique["bytes"] += len(data)
        return name, sha

    faces = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]], dtype=np.uint32)
    tetra = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)

    def candidate_glb(cid: int, k: int) -> str:
        v = tetra * (0.1 + 0.05 * k)
        v[0, 0] = cid  # a distinct mesh per candidate (float32 holds integers to 2**24 exactly)
        return store("candidates", "glb", mesh.glb_bytes(v, faces))[0]

    def images():
        for i in range(1, n_items + 1):
            name, sha = store("images", "png", photo_bytes(seed=i))
            yield (i, project.pk, name, sha, 64, 48, "png", "", "", "", None, f"p{i}.png", "{}", now)
    rle = mask_codec.encode(box_mask(64, 48))
    users = [get_user_model().objects.create(username=f"annotator{i}") for i in range(2)]
    project = Project.objects.create(name="Bench", slug="bench", quality_threshold=3, overlap=2)
    rnd = Round.objects.create(project=project, index=1, quality_threshold=3)
    ckpt = Checkpoint.objects.create(name="builtin", version="v1", backend="builtin")
    now = timezone.now()
    layout = json.dumps({"rotation": [1, 0, 0, 0], "translation": [0, 0, -2], "scale": [1, 1, 1]})
    connection.ensure_connection()
    conn = connection.connection
    copy_rows(conn, Image, images(),
              ["id", "project", "file", "sha256", "width", "height", "format", "thumbnail", "depth",
               "pointmap", "intrinsics", "source_name", "source", "created_at"])
    copy_rows(conn, ObjectMask, ((i, i, rle, f"{i:064x}", "[10, 10, 20, 15]", 300, "cup", "{}", now)
                                 for i in range(1, n_items + 1)),
              ["id", "image", "rle_counts", "rle_sha256", "bbox", "area", "label", "provenance", "created_at"])
    copy_rows(conn, Item, ((i, project.pk, rnd.pk, i, "done", "", False, 2, 2, 0, False, now, now)
                           for i in range(1, n_items + 1)),
              ["id", "project", "round", "mask", "state", "state_reason", "is_gold", "judgements_done",
               "claims", "skips", "hard_case", "created_at", "updated_at"])
    copy_rows(conn, Candidate, (((i - 1) * n_cands + k + 1, i, ckpt.pk, 1000 * i + k, 4,
                                 candidate_glb((i - 1) * n_cands + k + 1, k), "", "", layout, 4, 4, "{}", now)
                                for i in range(1, n_items + 1) for k in range(n_cands)),
              ["id", "item", "checkpoint", "seed", "steps", "glb", "glb_compact", "preview", "layout",
               "num_vertices", "num_faces", "timings", "created_at"])
    copy_rows(conn, Lease, ((2 * (i - 1) + a + 1, project.pk, i, users[a].pk, "submitted", 1, "[]", "[]",
                             "king_of_the_hill", False, now, now, now)
                            for i in range(1, n_items + 1) for a in range(2)),
              ["id", "project", "item", "annotator", "state", "seed", "order", "sides", "protocol",
               "layout_stage", "created_at", "expires_at", "closed_at"])

    def runs():
        for i in range(1, n_items + 1):
            base = (i - 1) * n_cands + 1
            for a in range(2):
                jid = 2 * (i - 1) + a + 1
                king, comps = base, []
                for k in range(1, per_j + 1):
                    challenger = base + k
                    challenger_wins = (i + k + a) % 3 == 0
                    comps.append((jid, k, king, challenger, "right" if challenger_wins else "left"))
                    if challenger_wins:
                        king = challenger
                yield jid, i, a, king, comps

    copy_rows(conn, Judgement, ((jid, project.pk, i, users[a].pk, jid, f"k{jid}", "king_of_the_hill", None,
                                 king, 4, False, None, layout, 9000, None, "accepted", "", now)
                                for jid, i, a, king, _ in runs()),
              ["id", "project", "item", "annotator", "lease", "key", "protocol", "ranking", "winner", "rating",
               "below_threshold", "layout", "model_layout", "time_spent_ms", "gold_correct", "status",
               "review_reason", "created_at"])
    copy_rows(conn, Comparison, ((jid * 8 + k, jid, k, left, right, outcome, 900)
                                 for jid, _i, _a, _king, comps in runs() for (jid, k, left, right, outcome) in comps),
              ["id", "judgement", "index", "left", "right", "outcome", "decided_ms"])
    with connection.cursor() as cur:
        cur.execute("ANALYZE")
    t_fill = time.perf_counter() - t0
    rss_before = rss_mb()

    t1, cpu1 = time.perf_counter(), time.process_time()
    snapshot, _ = services.snapshot_define(project=project, kind="dpo", format=args.format, assets=args.assets)
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        cProfile.runctx("services.snapshot_build(snapshot_id=snapshot.pk)", globals(), locals(),
                        os.environ["BENCH_PROFILE"])  # the profile file
    snapshot = services.snapshot_build(snapshot_id=snapshot.pk)
    t_build = time.perf_counter() - t1
    cpu_build = time.process_time() - cpu1  # this process only (PostgreSQL's share not included)
    pairs = snapshot.rows_total
    files = snapshot.manifest["files"]
    size = sum(f["size"] for f in files)
    peak = rss_mb()
    over = size / unique["bytes"]
    if args.out:
        from django.core.files.storage import default_storage

        for entry in files:
            target = Path(args.out) / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            with default_storage.open(entry["storage_name"], "rb") as handle:
                target.write_bytes(handle.read())
    rate = pairs / t_build
    print(f"{'items':<28}{n_items:>14,}")
    print(f"{'judgements':<28}{2 * n_items:>14,}")
    print(f"{'comparisons':<28}{2 * per_j * n_items:>14,}")
    print(f"{'fill by COPY (s)':<28}{t_fill:>14.1f}")
    print(f"{'DPO pairs exported':<28}{pairs:>14,}")
    print(f"{'build (s)':<28}{t_build:>14.1f}")
    print(f"{'pairs per second':<28}{rate:>14,.0f}")
    print(f"{'build CPU, this process (s)':<28}{cpu_build:>14.1f}")
    print(f"{'snapshot':<28}{args.format + ', ' + args.assets:>14}")
    print(f"{'files / total MB':<28}{len(files):>8} / {size / 1e6:,.1f}")
    print(f"{'unique assets / MB':<28}{unique['n']:>8,} / {unique['bytes'] / 1e6:,.1f}")
    print(f"{'bytes over unique assets':<28}{over:>14.3f}")
    print(f"{'peak RSS before build (MB)':<28}{rss_before:>14.0f}")
    print(f"{'peak RSS (MB)':<28}{peak:>14.0f}")
    connection.close()
    return {"pairs_per_s": round(rate), "peak_rss_mb": round(peak), "pairs": pairs, "items": n_items,
            "build_s": round(t_build, 2), "cpu_s": round(cpu_build, 2), "bytes": size,
            "bytes_over_unique_assets": round(over, 4), "unique_asset_bytes": unique["bytes"],
            "format": args.format, "assets": args.assets}


if __name__ == "__main__":
    main()
