"""Benchmark of ingest (issue 18, item 2): SA-1B-shaped photos through the `ingest` service,
in one process and on Celery workers (`manage.py ingest --queue`: one task per batch).

    .venv/bin/python bench/ingest.py [--photos 80] [--runs 3] [--batch-size 8]
    BENCH_PROFILE=/tmp/ingest.prof .venv/bin/python bench/ingest.py --runs 1   # cProfile of the in-process run

The photos are generated: 2250x1500 JPEGs of a photo's size in bytes (about 1.1 MB), each with
a <stem>.json of 100 masks as SAM's automatic mask generator writes them (compressed RLE from
pycocotools; blobs from a few hundred pixels to a third of the photo, some with holes or a
detached piece). A pool of masks is drawn once and each photo takes 100 of it (masks
deduplicate per photo only); the photos' bytes all differ. Each run imports the folder into a
new project of the bench's own database (`engine_bench_ingest`, dropped at the end), so that
nothing is a duplicate. Configurations: in one process (the command without --queue), one
worker process (`celery worker --concurrency 1`) and two (`--concurrency 2`), Redis broker
(BENCH_BROKER_URL, default redis://127.0.0.1:6379/7). A worker run is timed from the job's
start to the moment it is done, workers already started. Medians of the runs; the load
average is printed with them (the machine may be shared). Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DB_NAME = "engine_bench_ingest"
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/7")


WIDTH, HEIGHT = 2250, 1500


def _blob(rng, draw: ImageDraw.ImageDraw, cx: float, cy: float, radius: float, fill: int) -> None:
    n = int(rng.integers(24, 96))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    wobble = 1 + 0.35 * np.convolve(rng.normal(size=n + 6), np.ones(7) / 7, mode="valid")[:n]
    rx, ry = radius * rng.uniform(0.5, 1.5), radius * rng.uniform(0.5, 1.5)
    pts = [(cx + rx * w * np.cos(a), cy + ry * w * np.sin(a)) for a, w in zip(angles, wobble)]
    draw.polygon(pts, fill=fill)


def sam_mask(rng) -> np.ndarray:
    """One SAM-like binary mask of HEIGHT x WIDTH."""
    canvas = Image.new("L", (WIDTH, HEIGHT), 0)
    draw = ImageDraw.Draw(canvas)
    radius = float(np.exp(rng.uniform(np.log(12), np.log(520))))  # log-uniform: many small, a few large
    cx, cy = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
    _blob(rng, draw, cx, cy, radius, 255)
    if rng.random() < 0.3:  # a hole
        _blob(rng, draw, cx, cy, radius * 0.3, 0)
    if rng.random() < 0.3:  # a detached fragment
        _blob(rng, draw, cx + radius * 1.8, cy + rng.uniform(-1, 1) * radius, radius * 0.25, 255)
    if radius > 60:  # a ragged outline, as a segmenter's is
        canvas = canvas.filter(ImageFilter.GaussianBlur(3)).point(lambda v: 255 if v > 127 else 0)
    mask = np.asarray(canvas) > 0
    if not mask.any():
        mask[HEIGHT // 2, WIDTH // 2] = True
    return mask


def mask_pool(n: int, seed: int = 0) -> list[dict]:
    """n SA-1B annotations' segmentation and geometry (pycocotools-encoded), drawn once."""
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(n):
        m = sam_mask(rng)
        rle = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
        pool.append({
            "segmentation": {"size": [HEIGHT, WIDTH], "counts": rle["counts"].decode()},
            "area": int(coco_mask.area(rle)),
            "bbox": [float(v) for v in coco_mask.toBbox(rle)],
        })
    return pool


def photo_jpeg(rng) -> bytes:
    """A 2250x1500 JPEG of a photo's size in bytes (a smooth scene plus sensor noise, quality 90)."""
    low = rng.integers(0, 256, size=(15, 23, 3), dtype=np.uint8)
    base = Image.fromarray(low).resize((WIDTH, HEIGHT), Image.BICUBIC)
    arr = np.asarray(base, dtype=np.int16) + rng.integers(-12, 13, size=(HEIGHT, WIDTH, 1), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_sa1b(root: Path, n_photos: int, *, masks_per_photo: int = 100, pool: list[dict] | None = None,
               seed: int = 0, start: int = 0) -> Path:
    """root/sa_<i>.jpg + root/sa_<i>.json for i in [start, start + n_photos)."""
    root.mkdir(parents=True, exist_ok=True)
    pool = pool if pool is not None else mask_pool(max(2 * masks_per_photo, 50), seed)
    rng = np.random.default_rng(seed + 1 + start)
    for i in range(start, start + n_photos):
        stem = f"sa_{i}"
        (root / f"{stem}.jpg").write_bytes(photo_jpeg(rng))
        picks = rng.choice(len(pool), size=masks_per_photo, replace=False)
        annotations = [
            {"id": int(i * 1000 + k), **pool[p], "predicted_iou": round(float(rng.uniform(0.85, 1.0)), 4),
             "stability_score": round(float(rng.uniform(0.9, 1.0)), 4),
             "point_coords": [[float(rng.uniform(0, WIDTH)), float(rng.uniform(0, HEIGHT))]],
             "crop_box": [0.0, 0.0, float(WIDTH), float(HEIGHT)]}
            for k, p in enumerate(picks)
        ]
        doc = {"image": {"image_id": i, "file_name": f"{stem}.jpg", "width": WIDTH, "height": HEIGHT},
               "annotations": annotations}
        (root / f"{stem}.json").write_text(json.dumps(doc))
    return root


# ------------------------------------------------------------------ the runs
def worker_start(concurrency: int, log: Path) -> subprocess.Popen:
    """A Celery worker on the default queue with `concurrency` pool processes; returns once it is ready."""
    path = os.pathsep.join(filter(None, [str(harness.ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "engine", "worker", "-Q", "default", "--concurrency",
         str(concurrency), "--pool", "prefork", "-l", "INFO", "-n", f"benchingest{os.getpid()}-{concurrency}@%h",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=harness.ROOT, env=os.environ | {"PYTHONPATH": path}, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    deadline = time.monotonic() + 60
    while b" ready." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"The worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return proc


def worker_stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of a process group (Linux /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def new_project(tag: str):
    from engine.models import Project

    n = Project.objects.count()
    return Project.objects.create(name=f"bench {tag} {n}", slug=f"bench-{tag}-{n}")


def run_in_process(folder: Path) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds of this process, images, masks) of the import in this process."""
    from engine.ingest.readers import read_source
    from engine.ingest.services import ingest_items

    project = new_project("inprocess")
    t0, c0 = time.perf_counter(), time.process_time()
    summary = ingest_items(project=project, items=read_source(folder, "sa1b").entries)
    return time.perf_counter() - t0, time.process_time() - c0, summary.images_imported, summary.masks_imported


def run_on_workers(folder: Path, worker: subprocess.Popen, batch_size: int) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds of the worker's processes, images, masks) of the import as a job."""
    from engine.ingest import jobs
    from engine.models import IngestJob

    project = new_project("workers")
    t0, c0 = time.perf_counter(), group_cpu_seconds(worker.pid)
    job, _ = jobs.ingest_job_start(project=project, path=folder, fmt="sa1b", batch_size=batch_size)
    deadline = time.monotonic() + 600
    while IngestJob.objects.filter(pk=job.pk, state=IngestJob.State.RUNNING).exists():
        if worker.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"The worker did not finish ingest job {job.pk} (exit status {worker.poll()}).")
        time.sleep(0.02)
    seconds, cpu = time.perf_counter() - t0, group_cpu_seconds(worker.pid) - c0
    progress = jobs.ingest_job_progress(job=job)
    return seconds, cpu, progress["images_imported"], progress["masks_imported"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=80)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    media = Path(tempfile.mkdtemp(prefix="bench-ingest-media-"))
    folder = Path(tempfile.mkdtemp(prefix="bench-ingest-sa1b-"))
    try:
        t0 = time.perf_counter()
        write_sa1b(folder, args.photos, pool=mask_pool(300))
        made = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in folder.glob("*.jpg")) / args.photos / 1e6
        print(f"{args.photos} photos of {WIDTH}x{HEIGHT} ({size:.2f} MB JPEG), 100 masks each: made in {made:.1f} s")
        with harness.own_database(DB_NAME) as url:
            harness.django_setup(database_url=url, environ={
                "MEDIA_ROOT": str(media), "CELERY_BROKER_URL": BROKER, "LOG_LEVEL": "WARNING",
                "VAR_DIR": str(media / "var")})
            figures = measure(args, folder, media)
    finally:
        shutil.rmtree(media, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
    harness.print_figures(figures)


def measure(args, folder: Path, media: Path) -> dict:
    from engine.celery import app

    with app.connection_for_write() as conn:  # what an earlier, interrupted run left in the queue
        conn.default_channel.queue_purge("default")
    results: dict[str, list[tuple[float, int, int]]] = {}
    profile = os.environ.get("BENCH_PROFILE")
    load_before = os.getloadavg()
    for _ in range(args.runs):
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        results.setdefault("in process", []).append(run_in_process(folder))
        if profile:
            profiler.disable()
            profiler.dump_stats(profile)
    for concurrency in (1, 2):
        worker = worker_start(concurrency, media / f"worker{concurrency}.log")
        try:
            for _ in range(args.runs):
                results.setdefault(f"{concurrency} worker{'s' * (concurrency > 1)}", []).append(
                    run_on_workers(folder, worker, args.batch_size))
        finally:
            worker_stop(worker)
    load_after = os.getloadavg()

    print(f"\n{'configuration':<14} {'photos/s':>9} {'masks/s':>9} {'photos/CPU-s':>13} {'runs (s)':>22}")
    medians = {}
    for name, runs in results.items():
        assert all(r[2] == args.photos and r[3] == 100 * args.photos for r in runs), (name, runs)
        seconds = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        medians[name] = (args.photos / seconds, 100 * args.photos / seconds, args.photos / cpu)
        print(f"{name:<14} {medians[name][0]:>9.1f} {medians[name][1]:>9.0f} {medians[name][2]:>13.1f} "
              f"{', '.join(f'{r[0]:.2f}' for r in runs):>22}")
    one, two = medians["1 worker"], medians["2 workers"]
    print(f"\n2 workers / 1 worker: {two[0] / one[0]:.2f}x on {os.cpu_count()} cores; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min); medians of {args.runs} runs. "
          "photos/CPU-s: per CPU second of the importing processes (the worker's pool included), "
          "what one unshared core would do, PostgreSQL's own work left out")
    return {
        "photos": args.photos, "masks_per_photo": 100, "runs": args.runs, "batch_size": args.batch_size,
        "photos_per_s": round(one[0], 2), "masks_per_s": round(one[1], 1),
        "photos_per_s_2_workers": round(two[0], 2), "masks_per_s_2_workers": round(two[1], 1),
        "speedup_2_workers": round(two[0] / one[0], 3),
        "photos_per_cpu_s": round(one[2], 2), "photos_per_cpu_s_2_workers": round(two[2], 2),
        "in_process_photos_per_s": round(medians["in process"][0], 2),
        "in_process_masks_per_s": round(medians["in process"][1], 1),
        "in_process_photos_per_cpu_s": round(medians["in process"][2], 2),
        "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)], "cpus": os.cpu_count(),
    }


if __name__ == "__main__":
    main()
