"""A 2 GB import through the chunked upload API, served by gunicorn as in production (issue 15,
item 2: "a 2 GB upload neither times out nor holds a web worker").

    .venv/bin/python bench/upload.py [--mib 1907] [--chunk-mb 8]

It writes a stored zip of --mib MiB (1907 MiB: 2.0 GB, under the default INGEST_MAX_ZIP_BYTES of 2 GiB) (a folder layout: a few large photos' worth of random
bytes, which the checks at completion read only the zip's directory of), starts gunicorn with ONE
worker process of two threads on a database of its own, then:
  1. uploads the zip as the console's Import page does: POST uploads/, one PUT per chunk with its
     Content-Range, POST complete/ (202: the import job, which no worker runs here);
  2. meanwhile, a second client asks GET /api/v1/projects/ five times a second: with one worker
     process, its answers show whether the upload holds the web worker.
Figures: each chunk's request time (median, p99, max), the upload's MB/s, the completion's time,
the probe's latency while uploading. The machine is shared (2 cores, other sessions' work):
read the figures as this machine's, the medians over the run.
It prints a table, then one JSON line (its last line).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import harness

DB_NAME = os.environ.get("BENCH_DB", "engine_bench_upload")


def write_zip(path: Path, megabytes: int) -> int:
    """A stored zip of about `megabytes` MiB: images/big<i>.png of random bytes (100 MB each at
    most) with a small mask each; the zip's directory is all that completion reads."""
    block = os.urandom(1 << 20)
    left = megabytes
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        i = 0
        while left > 0:
            part = min(left, 100)
            with archive.open(f"images/big{i}.png", "w", force_zip64=True) as out:
                for k in range(part):
                    out.write(block[k % 64:] + block[:k % 64])
            archive.writestr(f"masks/big{i}/object.png", b"\x89PNG")
            left -= part
            i += 1
    return path.stat().st_size


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Client:
    def __init__(self, port: int, key: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Token {key}"}

    def call(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict | None, float]:
        t0 = time.perf_counter()
        self.conn.request(method, path, body=body, headers=self.headers | (headers or {}))
        response = self.conn.getresponse()
        raw = response.read()
        elapsed = (time.perf_counter() - t0) * 1000
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return response.status, data, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=1907, help="size of the zip, MiB (1907: 2.0 GB)")
    parser.add_argument("--chunk-mb", type=int, default=8, help="the page's chunk size, MB")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    t0 = time.perf_counter()
    zip_path = work / "photos.zip"
    size = write_zip(zip_path, args.mib)
    print(f"zip of {size / 1e6:,.0f} MB written in {time.perf_counter() - t0:.1f} s")

    with harness.own_database(DB_NAME) as url:
        env_extra = {"INGEST_UPLOAD_DIR": str(work / "uploads"), "MEDIA_ROOT": str(work / "media")}
        harness.django_setup(database_url=url, environ=env_extra)
        from django.contrib.auth import get_user_model

        from engine import services

        lead = get_user_model().objects.create_user("lead", password="x", is_staff=True)
        project = services.project_create(name="Upload bench", created_by=lead)
        _, key = services.token_create(user=lead, name="bench")
        port = harness.free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "engine.wsgi:application", "-c", "engine/gunicorn_conf.py"],
            cwd=harness.ROOT, stdout=subprocess.DEVNULL, stderr=open(work / "gunicorn.log", "wb"),
            env=os.environ | env_extra | {"WEB_BIND": f"127.0.0.1:{port}", "WEB_WORKERS": "1", "WEB_THREADS": "2",
                                          "ALLOWED_HOSTS": "127.0.0.1", "DATABASE_URL": url})
        try:
            if not harness.wait_for_port("127.0.0.1", port, 60):
                raise SystemExit("gunicorn did not start:\n" + (work / "gunicorn.log").read_text()[-2000:])
            base = f"/api/v1/projects/{project.slug}/"
            warm = Client(port, key)
            for _ in range(3):
                warm.call("GET", "/api/v1/projects/")

            probe_ms: list[float] = []
            stop = threading.Event()

            def probe():
                client = Client(port, key)
                while not stop.is_set():
                    status, _, ms = client.call("GET", "/api/v1/projects/")
                    if status == 200:
                        probe_ms.append(ms)
                    stop.wait(0.2)

            uploader = Client(port, key)
            status, upload, create_ms = uploader.call(
                "POST", f"{base}uploads/", json.dumps({"files": [{"path": "photos.zip", "size": size}]}),
                {"Content-Type": "application/json"})
            assert status == 201, upload
            watcher = threading.Thread(target=probe, daemon=True)
            watcher.start()
            chunk = args.chunk_mb * 1024 * 1024
            chunk_ms: list[float] = []
            t_upload = time.perf_counter()
            with open(zip_path, "rb") as f:
                offset = 0
                while offset < size:
                    data = f.read(chunk)
                    status, body, ms = uploader.call(
                        "PUT", f"{base}uploads/{upload['id']}/files/0", data,
                        {"Content-Type": "application/octet-stream",
                         "Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{size}"})
                    assert status == 200, body
                    chunk_ms.append(ms)
                    offset += len(data)
            upload_s = time.perf_counter() - t_upload
            status, job, complete_ms = uploader.call("POST", f"{base}uploads/{upload['id']}/complete/")
            assert status == 202 and job["state"] == "preparing", job
            stop.set()
            watcher.join()
        finally:
            server.terminate()
            server.wait(timeout=30)
    staged = sum(p.stat().st_size for p in (work / "uploads").rglob("*") if p.is_file())
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    assert staged == size, (staged, size)
    figures = {
        "upload_bytes": size, "chunks": len(chunk_ms), "chunk_mb": args.chunk_mb,
        "chunk_ms_median": round(statistics.median(chunk_ms), 1), "chunk_ms_p99": round(percentile(chunk_ms, 0.99), 1),
        "chunk_ms_max": round(max(chunk_ms), 1), "upload_s": round(upload_s, 1),
        "upload_mb_per_s": round(size / 1e6 / upload_s, 1), "create_ms": round(create_ms, 1),
        "complete_ms": round(complete_ms, 1), "probe_requests": len(probe_ms),
        "probe_ms_median": round(statistics.median(probe_ms), 1) if probe_ms else None,
        "probe_ms_p99": round(percentile(probe_ms, 0.99), 1) if probe_ms else None,
    }
    print()
    print(f"{'upload':<34}{size / 1e6:>10,.0f} MB in {figures['chunks']} chunks of {args.chunk_mb} MB")
    print(f"{'one chunk (PUT), median / p99 / max':<34}{figures['chunk_ms_median']:>10} / {figures['chunk_ms_p99']} / "
          f"{figures['chunk_ms_max']} ms")
    print(f"{'whole upload':<34}{figures['upload_s']:>10} s  ({figures['upload_mb_per_s']} MB/s)")
    print(f"{'declare (POST uploads/)':<34}{figures['create_ms']:>10} ms")
    print(f"{'complete (POST complete/ -> 202)':<34}{figures['complete_ms']:>10} ms")
    print(f"{'GET projects/ meanwhile, med / p99':<34}{figures['probe_ms_median']!s:>10} / {figures['probe_ms_p99']} ms"
          f"  ({figures['probe_requests']} requests; gunicorn: 1 process x 2 threads)")
    print("(a shared 2-core machine: other sessions' work shows in the tails)")
    harness.print_figures(figures)


if __name__ == "__main__":
    main()
