"""What the benches share: the repository on sys.path, a PostgreSQL database of their own,
Django set up against it, COPY, a free port, the last line of their output (one JSON object),
and for the offline loop benches, a model's paired scores on the held-out gold set.

A bench is a plain script, `.venv/bin/python bench/<name>.py`; Python puts bench/ first on
sys.path, so `import harness` finds this module, which puts the repository after it.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

#: The server's maintenance database: where the benches create and drop their own.
ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres")


def database_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def sql(statement: str, params=None, *, url: str = ADMIN_URL) -> list[tuple]:
    """One statement in autocommit (CREATE / DROP DATABASE and VACUUM need it); its rows, if any."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


@contextmanager
def own_database(name: str, *, keep: bool = False):
    """A new, empty database for the bench (one a crashed run left behind is dropped first);
    yields its URL and drops it at the end, unless `keep`."""
    sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    sql(f"CREATE DATABASE {name}")
    try:
        yield database_url(name)
    finally:
        if not keep:
            if "django" in sys.modules:
                from django.db import connections

                connections.close_all()
            sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def django_setup(*, database_url: str | None = None, environ: dict[str, str] | None = None,
                 settings: str = "engine.settings", migrate: bool = True) -> float:
    """Set up Django against `database_url` (else $DATABASE_URL) with these environment variables
    (a SECRET_KEY and LOG_LEVEL=WARNING unless given), migrated; returns the seconds migrate took."""
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    os.environ.update(environ or {})
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DJANGO_SETTINGS_MODULE"] = settings
    import django

    django.setup()
    if not migrate:
        return 0.0
    from django.core.management import call_command

    t0 = time.perf_counter()
    call_command("migrate", verbosity=0)
    return time.perf_counter() - t0


def copy_rows(cur, table: str, columns: list[str], rows) -> int:
    """COPY rows (tuples in the order of `columns`) into a table through a psycopg cursor; their count.
    The model's NOT NULL columns that `columns` leave out get their Django default (Django keeps
    defaults in Python, not in the schema), so a field added later does not break the benches' fills."""
    extra_columns, extra_values = _model_defaults(table, columns)
    n = 0
    quoted = ", ".join(f'"{c}"' for c in [*columns, *extra_columns])
    with cur.copy(f"COPY {table} ({quoted}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row((*row, *extra_values))
            n += 1
    return n


def _model_defaults(table: str, columns: list[str]) -> tuple[list[str], list]:
    from django.apps import apps

    model = next((m for m in apps.get_models() if m._meta.db_table == table), None)
    if model is None:
        return [], []
    names, values = [], []
    for field in model._meta.concrete_fields:
        if field.column in columns or field.null or not field.has_default():
            continue
        value = field.get_default()
        names.append(field.column)
        values.append(json.dumps(value) if isinstance(value, (dict, list)) else value)
    return names, values


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout_s: float = 20.0) -> bool:
    """Wait until something listens on host:port; False if nothing did within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def print_figures(figures: dict) -> None:
    """The bench's last line: its figures as one JSON object (what scripts and tests read)."""
    print(json.dumps(figures), flush=True)


# ------------------------------------------------------------------ offline scores (plain torch)
_GOLD: dict[str, list] = {}  # domain -> [(scene, gt vertices, gt faces)], read once per process


def gold_scores(generator, n: int, domain: str = "primitives"):
    """Voxel IoU at 64^3 and chamfer distance of the generator's seed-0 candidate (4 steps) on each
    of the first n scenes of the domain's held-out gold set: arrays, paired scene by scene across
    models."""
    import numpy as np

    from modelzoo.evaluate import gold_set, score
    from modelzoo.generators.base import GenerationRequest

    scenes = _GOLD.setdefault(domain, [])
    if len(scenes) < n:
        scenes.extend((s, *s.gt_mesh(64)) for s in gold_set(n - len(scenes), start=len(scenes), domain=domain))
    iou, chamfer = [], []
    for s, gv, gf in scenes[:n]:
        c = generator.generate(GenerationRequest(image=s.image, mask=s.mask, seeds=[0], steps=4,
                                                 intrinsics=s.intrinsics))[0]
        m = score(c.vertices, c.faces, c.layout, gv, gf, s.layout)
        iou.append(m["voxel_iou@64"])
        chamfer.append(m["chamfer"])
    return np.asarray(iou), np.asarray(chamfer)


def standard_error(d) -> float:
    """Of the mean of paired differences (a numpy array)."""
    import numpy as np

    return float(d.std(ddof=1) / np.sqrt(len(d)))
