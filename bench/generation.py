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

The same jobs at 4 steps also go through a real Celery worker started as `make run` starts it
(`celery -A engine worker -B -Q default,model --concurrency 1`, the laptop's filesystem broker in
a temporary VAR_DIR, this bench's database and media), each right after an in-process run:
`worker_candidates_per_s` is a job's candidates over the time from its start (enqueue on commit)
to its `finished_at`, written by the worker, so broker latency counts;
`worker_share_of_inprocess_4steps` the median ratio of the pairs (a shared machine's load moves
less within a pair); `worker_idle_cpu_percent` the worker's processes' CPU (the main process, its
pool child and beat) over 10 s with nothing queued: what polling the broker costs.
--no-worker skips this part.

Medians over --repeats runs. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
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
    parser.add_argument("--no-worker", action="store_true", help="Skip the part through a Celery worker.")
    args = parser.parse_args()

    # The laptop's broker, in a folder of this run's own: the worker's part enqueues there.
    harness.django_setup(settings=os.environ.get("DJANGO_SETTINGS_MODULE", "engine.settings"), environ={
        "DEBUG": os.environ.get("DEBUG", "1"),
        "MEDIA_ROOT": os.environ.get("MEDIA_ROOT") or tempfile.mkdtemp(prefix="bench-media-"),
        "VAR_DIR": tempfile.mkdtemp(prefix="bench-var-"), "CELERY_BROKER_URL": "filesystem://"})
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

    enqueue = generate.job_items_enqueue
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

    rows, summary, worker_rates = [], {}, []
    worker = None if args.no_worker else worker_start()
    try:
        if worker:  # its start and the model's load in its pool child, before anything is timed
            generate.job_items_enqueue = enqueue
            worker_job_rate(worker, project=project, steps=4)
            generate.job_items_enqueue = lambda *, job_item_ids: None
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
                if worker and steps == 4:  # paired with the in-process run: the same load on the machine
                    generate.job_items_enqueue = enqueue
                    worker_rates.append((worker_job_rate(worker, project=project, steps=steps), 1 / per["total"]))
                    generate.job_items_enqueue = lambda *, job_item_ids: None
            med = {k: statistics.median(r[k] for r in runs[1:]) for k in runs[0]}
            rows.append((steps, med))
            summary[steps] = med
        worker_idle = worker_idle_cpu(worker) if worker else None
    finally:
        if worker:
            worker_stop(worker)
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
    figures = {
        "candidates_per_s_1step": round(1 / summary[1]["total"], 2),
        "candidates_per_s_4steps": round(1 / summary[4]["total"], 2),
        "candidates_per_s_25steps": round(1 / summary[25]["total"], 2),
        "engine_overhead_ms": round(1000 * summary[4]["overhead"], 2),
        "engine_glue_ms": round(engine_only, 2),
        "split_ms_4steps": {k: round(1000 * v, 2) for k, v in summary[4].items()},
    }
    if worker:
        rate = statistics.median(w for w, _ in worker_rates[1:])
        share = statistics.median(w / i for w, i in worker_rates[1:])  # pairs: the same moment's load
        print(f"through make run's Celery worker (filesystem broker), 4 steps: {rate:.1f} cand/s; "
              f"{share:.0%} of the in-process run before it (median of the pairs); the worker's CPU "
              f"while idle: {worker_idle:.1f}% of a core")
        figures["worker_candidates_per_s"] = round(rate, 2)
        figures["worker_share_of_inprocess_4steps"] = round(share, 3)
        figures["worker_idle_cpu_percent"] = round(worker_idle, 2)
    harness.print_figures(figures)


def worker_start() -> subprocess.Popen:
    """A Celery worker as `make run` starts it, in its own process group (its pool child and beat)."""
    path = os.pathsep.join(filter(None, [str(harness.ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "engine", "worker", "-B", "-Q", "default,model",
         "--concurrency", "1", "-l", "WARNING"],
        cwd=harness.ROOT, env=os.environ | {"PYTHONPATH": path}, start_new_session=True)


def worker_job_rate(worker: subprocess.Popen, *, project, steps: int) -> float:
    """Candidates per second of one job of the project's items through the worker: from the job's
    start (its tasks are enqueued on commit) to its `finished_at`, both in the database."""
    from annotation.models import Item
    from engine.rounds import generate
    from modelzoo.models import Candidate, GenerationJob

    Candidate.objects.filter(item__project=project).delete()
    Item.objects.filter(project=project).delete()
    job = generate.generation_job_start(project=project, steps=steps)
    deadline = time.monotonic() + 300
    while not GenerationJob.objects.filter(pk=job.pk, state=GenerationJob.State.FINISHED).exists():
        if worker.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"The worker did not finish generation job {job.pk} (exit status {worker.poll()}).")
        time.sleep(0.02)
    job.refresh_from_db()
    return job.total_candidates / (job.finished_at - job.started_at).total_seconds()


def worker_idle_cpu(worker: subprocess.Popen, seconds: float = 10.0) -> float:
    """Percent of a core the worker's processes use with nothing queued: what polling costs."""
    time.sleep(2)  # the last task's ack and the pool's bookkeeping
    cpu, t0 = _group_cpu_seconds(worker.pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (_group_cpu_seconds(worker.pid) - cpu) / (time.monotonic() - t0)


def worker_stop(worker: subprocess.Popen) -> None:
    os.killpg(worker.pid, signal.SIGTERM)  # a warm shutdown of the worker, its pool child and beat
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def _group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of a process group (Linux /proc)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp, ..., utime, stime (proc(5))
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


if __name__ == "__main__":
    main()
