"""Benchmark of the console's pages and the API calls they make (issue 15 item 9), on the database
of bench/dashboard.py: 1M judgements of 100,000 items by 100 annotators over 30 days, three
checkpoints in a lineage, three rounds. Not a test: run it by hand.

    .venv/bin/python bench/console.py [--judgements 1000000] [--items 100000] [--calls 7] [--keep]

It builds its database (`engine_bench_console`) with bench/dashboard.py's loader (COPY; minutes for
1M judgements) unless one from an earlier `--keep` run holds the same data, in which case it only
migrates it; then refreshes the rollups and fits the Elo ratings (beat's task, as production runs
it every minute), adds what the dashboard's data lacks (two
built DPO snapshots and an SFT one with their files' manifests and a dataset card, a training run
with its loss history), and times, as the project's lead through Django's test client, every
console page and every API call those pages make: the median of `--calls` calls after one warm-up
call (also reported). It prints a table, then one JSON line (its last line) with "max_page_ms".
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time

import harness

import dashboard

DB_NAME = os.environ.get("BENCH_CONSOLE_DB", "engine_bench_console")
DB_URL = harness.database_url(DB_NAME)
LIMIT_MS = 300


def loaded(judgements: int, items: int) -> bool:
    """Whether the database exists and holds an earlier run's data of the same size."""
    if not harness.sql("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)):
        return False
    try:
        rows = harness.sql("SELECT (SELECT count(*) FROM annotation_judgement), (SELECT count(*) FROM annotation_item)",
                           url=DB_URL)
    except Exception:  # noqa: BLE001 - a database without the tables: load it again
        return False
    return rows == [(judgements, items)]


def extras() -> dict:
    """What the console shows that the dashboard's data lacks: snapshots and a training run."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from engine.exports.models import Snapshot
    from engine.models import Project, Round, TrainingRun
    from modelzoo.models import Checkpoint

    project = Project.objects.get(slug="bench")
    Snapshot.objects.filter(project=project).delete()
    TrainingRun.objects.filter(project=project).delete()
    card = ("---\nlicense: other\npretty_name: Bench DPO snapshot\n---\n\n# Bench DPO snapshot\n\n"
            "Preference pairs, pairing `winner_beat`.\n\n```python\nfrom datasets import load_dataset\n```\n")
    readme = default_storage.save("bench/README.md", ContentFile(card.encode()))
    snapshots = []
    for k, (kind, rounds, rows) in enumerate([("dpo", [1], 640_000), ("dpo", [1, 2], 1_200_000),
                                              ("sft", [1, 2], 380_000)]):
        files = [{"path": "README.md", "size": len(card), "sha256": f"{k:064x}", "storage_name": readme}]
        files += [{"path": f"data/train-{i:06d}.parquet", "size": 900_000_000 + i, "sha256": f"{k * 100 + i:064x}",
                   "storage_name": "bench/none"} for i in range(rows // 200_000)]
        snapshots.append(Snapshot.objects.create(
            project=project, kind=kind, format="parquet", state=Snapshot.State.DONE,
            definition={"kind": kind, "format": "parquet", "filters": {"rounds": rounds}, "pairing": "winner_beat",
                        "watermark": {"judgement_max": rows, "artist_max": 0}},
            definition_sha256=f"{k:064x}", rows_total=rows, rows_done=rows, items_total=rows // 8,
            items_done=rows // 8, manifest={"files": files, "counts": {"rows": rows, "items": rows // 8, "ties": 0}},
            built_at=dashboard.START + dt.timedelta(days=10 * (k + 1)),
            created_at=dashboard.START + dt.timedelta(days=10 * (k + 1))))
    Round.objects.filter(project=project, index=1).update(dpo_snapshot=snapshots[0])
    Round.objects.filter(project=project, index=2).update(dpo_snapshot=snapshots[1], sft_snapshot=snapshots[2],
                                                          checkpoint_produced=Checkpoint.objects.get(pk=3))
    losses = {"sft": [{"step": s, "loss": 1.0 / (1 + s / 100)} for s in range(0, 2000, 25)],
              "dpo": [{"step": s, "loss": 0.69 - s / 10_000} for s in range(0, 1000, 25)]}
    TrainingRun.objects.create(project=project, round=Round.objects.get(project=project, index=2), stage="both",
                               parent_id=2, state=TrainingRun.State.RUNNING,
                               progress={"stage": "dpo", "step": 975, "steps": 1000, "fraction": 0.975,
                                         "losses": losses})
    return {"snapshots": [s.pk for s in snapshots]}


def median_ms(client, url: str, calls: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    first = client.get(url)
    cold = (time.perf_counter() - t0) * 1000
    assert first.status_code == 200, (url, first.status_code, first.content[:300])
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, url
    return statistics.median(times), cold, len(first.content)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--judgements", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--comparisons", type=int, default=2, help="comparisons per judgement")
    ap.add_argument("--calls", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the database for the next run (which then skips the load)")
    args = ap.parse_args()

    reuse = loaded(args.judgements, args.items)
    if not reuse:
        harness.sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        harness.sql(f"CREATE DATABASE {DB_NAME}")
    try:
        result = measure(args, reuse)
    finally:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            harness.sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    harness.print_figures(result)
    return 0


def measure(args, reuse: bool) -> dict:
    import tempfile

    migrate_s = harness.django_setup(database_url=DB_URL, environ={
        "CACHE_URL": os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/11"),
        "MEDIA_ROOT": os.environ.get("MEDIA_ROOT", tempfile.mkdtemp(prefix="bench-console-")),
        "ALLOWED_HOSTS": os.environ.get("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")})
    print(f"migrated in {migrate_s:.1f} s", flush=True)
    load_s = None
    if reuse:
        print(f"reusing {DB_NAME}: {args.judgements} judgements already loaded", flush=True)
    else:
        dashboard.DB_URL = DB_URL  # the dashboard's loader, into this bench's database
        counts = dashboard.load(args.items, args.judgements, args.comparisons)
        load_s = counts["load_seconds"]
        print(f"loaded in {load_s} s", flush=True)

    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client

    from annotation.models import Judgement
    from engine.stats import tasks

    cache.clear()
    t0 = time.perf_counter()
    tasks.rollups_refresh()  # beat's task: the first run builds the rollups, every run fits the Elo ratings
    print(f"rollups refreshed and Elo fitted in {time.perf_counter() - t0:.1f} s", flush=True)
    ids = extras()

    client = Client()
    client.force_login(get_user_model().objects.get(username="lead"))
    recent = Judgement.objects.filter(project__slug="bench").order_by("-created_at", "-id").values_list("pk", flat=True)
    judgement = recent[0]
    dpo_new, dpo_old = ids["snapshots"][1], ids["snapshots"][0]
    c, a = "/console/projects/bench/", "/api/v1/projects/bench/"
    pages = [
        c + "rounds/", c + "rounds/2/", c + "rounds/3/",
        c + "review/", c + "review/?annotator=annotator007", c + "review/?annotator=annotator007&status=rejected",
        c + f"review/judgements/{judgement}/",
        c + "snapshots/", c + f"snapshots/{dpo_new}/", c + f"snapshots/{dpo_old}/",
        c + "checkpoints/",
    ]
    api_calls = [
        a + "generation-jobs/?round=3&page_size=20", a + "generation-jobs/3/",
        f"/api/v1/judgements/{judgement}/replay",
        f"/api/v1/snapshots/{dpo_new}/", f"/api/v1/snapshots/{dpo_new}/changes/",
        a + "training-runs/", a + "checkpoints/",
    ]
    # Not called by the console (its pages read the rollups): the rounds API, which counts exactly.
    others = [a + "rounds/"]
    rows = []
    print(f"\n{'URL':<72} {'median':>9}  {'first call':>10}  bytes", flush=True)
    for kind, urls in (("page", pages), ("api", api_calls), ("other", others)):
        for url in urls:
            med, cold, size = median_ms(client, url, args.calls)
            rows.append((kind, url, med, cold, size))
            flag = "  OVER" if med > LIMIT_MS and kind != "other" else ""
            print(f"{url:<72} {med:7.1f} ms  {cold:8.1f} ms  {size}{flag}", flush=True)
    other_rows = [r for r in rows if r[0] == "other"]
    rows = [r for r in rows if r[0] != "other"]
    worst = max(rows, key=lambda r: r[2])
    return {
        "judgements": args.judgements, "items": args.items, "pages": len(pages), "api_calls": len(api_calls),
        "calls_per_url": args.calls, "max_page_ms": round(worst[2], 1), "slowest": worst[1],
        "max_console_page_ms": round(max(r[2] for r in rows if r[0] == "page"), 1),
        "max_api_call_ms": round(max(r[2] for r in rows if r[0] == "api"), 1),
        "median_ms": round(statistics.median(r[2] for r in rows), 1),
        "max_first_call_ms": round(max(r[3] for r in rows), 1), "limit_ms": LIMIT_MS,
        "over_limit": [r[1] for r in rows if r[2] > LIMIT_MS], "load_s": load_s, "reused_database": reuse,
        "rounds_api_ms": round(other_rows[0][2], 1),
    }


if __name__ == "__main__":
    sys.exit(main())
