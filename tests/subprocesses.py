"""The project's processes started by tests against the test database: a Celery worker of a
test app (`tests.modelzoo_engine.worker_app`: a 5 s Redis visibility timeout, so a killed
worker's task comes back soon) or of the project's app as deployed, and management commands."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

from engine.celery import app

ROOT = Path(__file__).resolve().parents[1]


def child_process_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that uses this test's database and media folder."""
    db = connection.settings_dict
    return os.environ | {
        "DJANGO_SETTINGS_MODULE": "engine.settings_test",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "INGEST_UPLOAD_DIR": str(settings.INGEST_UPLOAD_DIR),
        "PYTHONPATH": str(ROOT),
    } | extra


def celery_worker_start(log_path: Path, *, broker: str, queue: str, concurrency: int, name: str,
                        app: str = "tests.modelzoo_engine.worker_app", extra_args: list[str] = (),
                        env: dict[str, str] | None = None) -> subprocess.Popen:
    """A worker of `app` on `queue` in its own process group (kill it with os.killpg), logging to
    `log_path`; `extra_args` (e.g. -B for beat inside it) and `env` are added."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queue,
         "--concurrency", str(concurrency), "--pool", "prefork", "-l", "INFO", "-n", f"{name}{os.getpid()}@%h",
         "--without-gossip", "--without-mingle", "--without-heartbeat", *extra_args],
        cwd=ROOT, env=child_process_env(CELERY_BROKER_URL=broker, **(env or {})), stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT, start_new_session=True)


def process_group_kill(proc: subprocess.Popen) -> None:
    """kill -9 the process and its children (a worker's pool), no goodbye; wait for it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def broker_purge(broker: str, queue: str) -> None:
    """Empty `queue` of a Redis broker, and the tasks a killed worker left unacknowledged."""
    with app.connection_for_write(broker) as conn:
        conn.default_channel.queue_purge(queue)
        conn.default_channel.client.delete("unacked", "unacked_index")


def bench_run(script: str, *args: str, bench_db: str, env: dict[str, str] | None = None) -> tuple[list[str], dict]:
    """Run bench/<script> on a PostgreSQL database of its own (created and dropped by the bench)
    beside the test database; its output lines and the figures of its last line (one JSON object).
    `env`: more of the bench's environment (the name of its database where it reads another variable)."""
    db = connection.settings_dict
    admin_url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/postgres"
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True, timeout=300, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "BENCH_ADMIN_URL": admin_url, "BENCH_DB": bench_db,
             **{k: os.environ[k] for k in ("CACHE_URL", "VAR_DIR") if k in os.environ}, **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    return lines, json.loads(lines[-1])
