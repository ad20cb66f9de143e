"""Benchmark of candidate generation with the built-in model (not a timed test).

    DATABASE_URL=postgres://... .venv/bin/python bench/generation.py [--items 6] [--repeats 3]

For 1, 4 and 25 sampling steps it runs the engine's real per-item path
(`generate.job_item_generate`: load the photo and mask, the model, meshing, GLB + compact
GLB encoding, preview, content-addressed storage, the database writes and the item's state
change) in-process on a throwaway project, N = 8 seeds per item, and reports candidates per
second end to end with the time split per candidate into

    model      network forward passes (the generator's "model" timing)
    meshing    marching cubes, cleanup, vertex colours (generator)
    preview    the preview PNG (generator)
    glb        GLB + compact GLB encoding (engine)
    storage    content-addressed writes of the three files (engine)
    database   everything else of the engine: reads, inserts, the item's transition

"engine overhead" is everything but the model: meshing, preview, GLB, storage, database.
Medians over --repeats runs. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import harness


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--checkpoint", help="A builtin weights file (default: the committed bootstrap).")
    args = parser.parse_args()

    harness.django_setup(settings=os.environ.get("DJANGO_SETTINGS_MODULE", "engine.settings"), environ={
        "DEBUG": os.environ.get("DEBUG", "1"),
        "MEDIA_ROOT": os.environ.get("MEDIA_ROOT") or tempfile.mkdtemp(prefix="bench-media-")})
    from django.db import connection

    from engine.files import sha256_bytes, store_content_addressed
    from engine.ingest.services import ingest_item
    from engine.ingest.validation import ItemInput, MaskInput
    from engine.models import Project
    from engine.rounds import generate
    from modelzoo import services
    from modelzoo.models import Candidate, Checkpoint, GenerationJobItem
    from modelzoo.weights import generator_for_checkpoint
    from tests.engine.builders import box_mask, photo_bytes

    generate.job_items_enqueue = lambda *, job_item_ids: None  # in-process: no broker needed
    slug = f"bench-{os.getpid()}"
    project = Project.objects.create(name=slug, slug=slug, candidates_per_item=args.n)
    width, height = 320, 240
    for i in range(args.items):
        x0 = 40 + 10 * i
        ingest_item(project=project, item=ItemInput(
            name=f"p{i}.png", image_bytes=photo_bytes(width, height, seed=i),
            masks=[MaskInput(source_name="m", array=box_mask(width, height, box=(x0, 50, x0 + 140, 200)))]))
    if args.checkpoint:
        data = Path(args.checkpoint).read_bytes()
        sha = sha256_bytes(data)
        store_content_addressed(folder="checkpoints", sha256=sha, extension="pt", data=data)  # fresh media
        checkpoint = Checkpoint.objects.filter(sha256=sha).first() or services.checkpoint_register(
            name="bench", version=sha[:12], backend="builtin", data=data)[0]
    elif services.BOOTSTRAP_FILE.exists():
        checkpoint, _ = services.bootstrap_register(make_current=False)
    else:
        sys.exit("No bootstrap checkpoint (modelzoo/checkpoints/bootstrap.pt) to benchmark; pass --checkpoint.")
    services.project_mix_set(project=project, mix=[(checkpoint, 1.0)])
    generator = generator_for_checkpoint(checkpoint)  # load once, as a worker does

    rows, summary = [], {}
    try:
        for steps in (1, 4, 25):
            runs = []
            for _ in range(args.repeats + 1):  # the first run warms up caches and is dropped
                Candidate.objects.filter(item__project=project).delete()
                from annotation.models import Item

                Item.objects.filter(project=project).delete()
                job = generate.generation_job_start(project=project, steps=steps)
                ids = list(job.job_items.values_list("pk", flat=True))
                started = time.perf_counter()
                for pk in ids:
                    generate.job_item_generate(job_item_id=pk)
                wall = time.perf_counter() - started
                cands = list(Candidate.objects.filter(item__project=project).values_list("timings", flat=True))
                assert len(cands) == len(ids) * args.n
                assert not GenerationJobItem.objects.filter(job=job).exclude(state="done").exists()
                per = {k: sum(t.get(k, 0.0) for t in cands) / len(cands)
                       for k in ("model", "meshing", "preview", "glb_encoding", "storage")}
                per["total"] = wall / len(cands)
                per["database"] = max(per["total"] - sum(per[k] for k in ("model", "meshing", "preview",
                                                                           "glb_encoding", "storage")), 0.0)
                per["overhead"] = per["total"] - per["model"]
                runs.append(per)
            med = {k: statistics.median(r[k] for r in runs[1:]) for k in runs[0]}
            rows.append((steps, med))
            summary[steps] = med
    finally:
        project.delete()
        connection.close()

    cols = ["model", "meshing", "preview", "glb_encoding", "storage", "database", "overhead", "total"]
    print(f"built-in model, N={args.n} per item, {args.items} items, medians of {args.repeats} runs "
          f"(ms per candidate), {os.cpu_count()} cores, {getattr(generator, 'threads', '?')} torch thread(s) "
          f"per worker process, database {connection.vendor}")
    print(f"{'steps':>5} {'cand/s':>8} " + " ".join(f"{c:>12}" for c in cols))
    for steps, med in rows:
        print(f"{steps:>5} {1 / med['total']:>8.1f} " + " ".join(f"{1000 * med[c]:>12.2f}" for c in cols))
    engine_only = statistics.median(
        1000 * (m["glb_encoding"] + m["storage"] + m["database"]) for _, m in rows)
    print(f"engine overhead (everything but the model) at 4 steps: {1000 * summary[4]['overhead']:.2f} ms; "
          f"of which GLB+storage+database (the Django/Celery glue): {engine_only:.2f} ms")
    harness.print_figures({
        "candidates_per_s_1step": round(1 / summary[1]["total"], 2),
        "candidates_per_s_4steps": round(1 / summary[4]["total"], 2),
        "candidates_per_s_25steps": round(1 / summary[25]["total"], 2),
        "engine_overhead_ms": round(1000 * summary[4]["overhead"], 2),
        "engine_glue_ms": round(engine_only, 2),
        "split_ms_4steps": {k: round(1000 * v, 2) for k, v in summary[4].items()},
    })


if __name__ == "__main__":
    main()
