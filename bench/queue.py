"""Benchmark of the annotation queue on PostgreSQL (issue 4). Not a test: run it by hand.

    .venv/bin/python bench/queue.py [--items 100000] [--duration 20] [--workers 3] [--threads 4]

It creates its own database (`engine_bench`, dropped at the end), fills it with ready items
(4 candidates each) by SQL, then measures:
  1. the lease query itself (SELECT ... FOR UPDATE SKIP LOCKED + the lease insert), in-process,
     10,000 leases from 8 concurrent connections (8 forked processes), at 10,000 and at the full
     item count;
  2. 64 simulated annotators through the HTTP API served by gunicorn, open loop at a fixed
     arrival rate of 100 next-item requests and 100 submissions per second together
     (each annotator: next-item, then submit half a period later; latency from the actual send,
     and from the scheduled send, which also counts client-side lateness);
  3. saturation: the same 64 annotators in a closed loop as fast as the server allows;
  4. from the database afterwards: double leases, lost and duplicated judgements.
It prints a table, then one JSON line (its last line).
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is named queue.py: keep its folder off sys.path so that `import queue` is the stdlib's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import threading
import time
import uuid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres")
DB_NAME = "engine_bench"
DB_URL = ADMIN_URL.rsplit("/", 1)[0] + "/" + DB_NAME
ANNOTATORS = 64


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


# ------------------------------------------------------------------ database
def admin_sql(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def setup_django():
    os.environ["DATABASE_URL"] = DB_URL
    os.environ.setdefault("SECRET_KEY", "bench-only-secret")
    os.environ["CACHE_URL"] = ""
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DJANGO_SETTINGS_MODULE"] = "engine.settings"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def seed_project(n_users: int):
    from engine.models import Image, Membership, ObjectMask, Project
    from engine.services import round_current, token_create
    from django.contrib.auth import get_user_model
    from modelzoo.models import Candidate, Checkpoint
    from annotation.models import Item, ItemState

    project = Project.objects.create(name="bench", slug="bench", overlap=1, gold_rate=0.0, lease_seconds=600)
    rnd = round_current(project=project)
    image = Image.objects.create(project=project, file="images/x.png", sha256="0" * 64, width=64, height=48,
                                 format="png", source_name="x.png")
    mask = ObjectMask.objects.create(image=image, rle_counts="PPYo0", rle_sha256="t" * 64, bbox=[1, 1, 5, 5],
                                     area=25, label="obj")
    item = Item.objects.create(project=project, round=rnd, mask=mask, state=ItemState.WAITING)
    ckpt = Checkpoint.objects.create(name="bench", version="1", backend="builtin")
    cand = Candidate.objects.create(item=item, checkpoint=ckpt, seed=0, steps=4, glb="c.glb", num_vertices=100,
                                    num_faces=200, layout={"rotation": [1, 0, 0, 0], "translation": [0, 0, -2],
                                                           "scale": [1, 1, 1]})
    User = get_user_model()
    tokens = []
    for i in range(n_users):
        user = User.objects.create(username=f"bench{i}")
        Membership.objects.create(project=project, user=user, role="annotator")
        tokens.append(token_create(user=user, name="bench")[1])
    return project, {"mask": mask.pk, "item": item.pk, "candidate": cand.pk}, tokens


def _copy_sql(table: str, overrides: dict[str, str], source: str, where: str) -> str:
    """INSERT INTO table (all columns but id) SELECT template columns, some replaced by expressions."""
    from django.db import connection

    with connection.cursor() as cur:
        cols = [c.name for c in connection.introspection.get_table_description(cur, table) if c.name != "id"]
    select = ", ".join(overrides.get(c, f"t.{c}") for c in cols)
    return f"INSERT INTO {table} ({', '.join(cols)}) SELECT {select} FROM {table} t, {source} WHERE {where}"


def add_items(templates: dict, first: int, count: int) -> None:
    """Items first..first+count-1 (by a counter g), each with its own mask and 4 candidates, by SQL."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(_copy_sql("engine_objectmask", {"rle_sha256": "md5(g::text) || md5((g + 7)::text)",
                                                    "label": "'g' || g"},
                              f"generate_series({first}, {first + count - 1}) g", f"t.id = {templates['mask']}"))
        cur.execute(_copy_sql("annotation_item", {"mask_id": "m.id", "state": "'ready'"},
                              "engine_objectmask m",
                              f"t.id = {templates['item']} AND m.id <> {templates['mask']} AND NOT EXISTS "
                              "(SELECT 1 FROM annotation_item x WHERE x.mask_id = m.id)"))
        cur.execute(_copy_sql("modelzoo_candidate", {"item_id": "i.id", "seed": "s"},
                              "annotation_item i, generate_series(1, 4) s",
                              f"t.id = {templates['candidate']} AND i.id <> {templates['item']} AND NOT EXISTS "
                              "(SELECT 1 FROM modelzoo_candidate x WHERE x.item_id = i.id)"))
        cur.execute(f"DELETE FROM modelzoo_candidate WHERE item_id = {templates['item']}")
        cur.execute(f"DELETE FROM annotation_item WHERE id = {templates['item']}")


def reset_queue() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("DELETE FROM annotation_comparison")
        cur.execute("DELETE FROM annotation_judgement")
        cur.execute("DELETE FROM annotation_lease")
        cur.execute("UPDATE annotation_item SET claims = 0, judgements_done = 0, state = 'ready' "
                    "WHERE claims <> 0 OR state <> 'ready'")
    vacuum()


def vacuum() -> None:
    import psycopg

    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def explain_lease_query(project) -> str:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotation.services import _PICK_SQL

    user = get_user_model().objects.get(username="bench0")
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE) " + _PICK_SQL, [project.pk, False, project.overlap, [], user.pk])
        return "\n".join(r[0] for r in cur.fetchall())


# ------------------------------------------------------------------ phase 1: the lease query
def _lease_worker(project_id: int, user_ids: list[int], n: int, offset: int, out) -> None:
    """One process, one connection: n leases, timing the pick query and the whole transaction."""
    import datetime as dt
    import random

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from annotation.models import Lease
    from annotation.services import _lease_order, _pick_item
    from annotation.states import item_transition
    from engine.models import Project

    project = Project.objects.get(pk=project_id)
    users = list(get_user_model().objects.filter(pk__in=user_ids).order_by("id"))
    q, x = [], []
    for k in range(n):
        user = users[(offset + k) % len(users)]
        t0 = time.perf_counter()
        with transaction.atomic():
            item = _pick_item(project, user, gold=False)
            t1 = time.perf_counter()
            seed = random.getrandbits(63)
            order, sides = _lease_order([c["id"] for c in item.candidate_rows], seed)
            now = timezone.now()
            Lease.objects.create(project=project, item=item, annotator=user, seed=seed, order=order,
                                 sides=sides, protocol=project.ranking_protocol,
                                 expires_at=now + dt.timedelta(seconds=600))
            item.claims += 1
            item_transition(item=item, to="in_progress", also=["claims"])
        t2 = time.perf_counter()
        q.append((t1 - t0) * 1000)
        x.append((t2 - t0) * 1000)
    connection.close()
    out.put((q, x))


def lease_query_bench(project, n_leases: int = 10_000, n_conns: int = 8) -> dict:
    """8 concurrent connections, each in its own process: threads of one process would time
    each other's Python under the GIL, not the query."""
    from django.contrib.auth import get_user_model
    from django.db import connections

    user_ids = list(get_user_model().objects.filter(username__startswith="bench").values_list("id", flat=True))
    connections.close_all()  # the children open their own; none may inherit this socket
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    per = n_leases // n_conns
    procs = [ctx.Process(target=_lease_worker, args=(project.pk, user_ids, per, t * per, out))
             for t in range(n_conns)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    wall = time.perf_counter() - start
    for p in procs:
        p.join()
    query_ms = [v for q, _ in results for v in q]
    txn_ms = [v for _, x in results for v in x]
    return {"n": len(query_ms), "query_p50": pct(query_ms, 50), "query_p99": pct(query_ms, 99),
            "txn_p50": pct(txn_ms, 50), "txn_p99": pct(txn_ms, 99), "leases_per_s": len(query_ms) / wall}


def queries_per_request(token: str) -> dict:
    """Database round trips of one next-item and one submission through the API, in-process
    (token authentication, BEGIN and COMMIT included; the next-item is the token's first use in a
    minute, so it also writes the token's last_used_at)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_HOST="127.0.0.1")
    with CaptureQueriesContext(connection) as nxt:
        payload = client.post("/api/v1/projects/bench/next-item").json()
    with CaptureQueriesContext(connection) as sub:
        r = client.post(f"/api/v1/items/{payload['item']['id']}/judgements", _judgement(payload),
                        content_type="application/json")
    assert r.status_code == 201, r.content
    if os.environ.get("BENCH_SHOW_QUERIES"):
        for name, ctx in (("next-item", nxt), ("submit", sub)):
            print(name, *(f"  {q['sql'][:150]}" for q in ctx.captured_queries), sep="\n")
    return {"next": len(nxt.captured_queries), "submit": len(sub.captured_queries)}


# ------------------------------------------------------------------ HTTP load (runs in child processes)
def _judgement(payload: dict) -> dict:
    item = payload["item"]
    order = [c["id"] for c in item["candidates"]]
    comps, king = [], order[0]
    for k in range(1, len(order)):
        left, right = (king, order[k]) if item["sides"][k - 1] else (order[k], king)
        outcome = "left" if k % 2 else "equal"
        if outcome == "left":
            king = left
        comps.append({"left": left, "right": right, "outcome": outcome, "decided_ms": 1200})
    return {"lease": payload["lease"]["id"], "key": str(uuid.uuid4()), "comparisons": comps, "ranking": None,
            "winner": king, "rating": 4, "layout": None, "time_spent_ms": 5000}


def _annotator(base, token, mode, start_at, duration, period, offset, out):
    import requests

    s = requests.Session()
    s.headers["Authorization"] = f"Token {token}"
    rec = {"next": [], "next_sched": [], "submit": [], "acked": [], "errors": 0, "late_ms": []}
    end = start_at + duration
    cycle = 0
    while True:
        if mode == "open":
            sched = start_at + offset + cycle * period
            if sched >= end:
                break
            delay = sched - time.time()
            if delay > 0:
                time.sleep(delay)
        elif time.time() >= end:
            break
        t0 = time.time()
        r = s.post(f"{base}/api/v1/projects/bench/next-item", timeout=30)
        t1 = time.time()
        rec["next"].append((t1 - t0) * 1000)
        if mode == "open":
            rec["next_sched"].append((t1 - sched) * 1000)
        if r.status_code != 200:
            rec["errors"] += r.status_code != 204
            cycle += 1
            continue
        body = _judgement(r.json())
        if mode == "open":
            delay = sched + period / 2 - time.time()
            if delay > 0:
                time.sleep(delay)
        t0 = time.time()
        r2 = s.post(f"{base}/api/v1/items/{r.json()['item']['id']}/judgements", json=body, timeout=30)
        rec["submit"].append((time.time() - t0) * 1000)
        if r2.status_code in (200, 201):
            rec["acked"].append(r2.json()["id"])
        else:
            rec["errors"] += 1
        cycle += 1
    out.append(rec)


def _client_process(base, tokens, mode, start_at, duration, period, offsets, queue):
    out: list = []
    threads = [threading.Thread(target=_annotator, args=(base, tok, mode, start_at, duration, period, off, out))
               for tok, off in zip(tokens, offsets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged = {k: [] for k in ("next", "next_sched", "submit", "acked", "late_ms")}
    merged["errors"] = 0
    for rec in out:
        for k in merged:
            merged[k] = merged[k] + rec[k] if k != "errors" else merged[k] + rec[k]
    queue.put(merged)


def http_load(base, tokens, mode, duration, rate_per_s=100.0, processes=4) -> dict:
    period = len(tokens) / rate_per_s  # each annotator: one next-item and one submit per period
    offsets = [i * period / len(tokens) for i in range(len(tokens))]
    start_at = time.time() + 1.0
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    chunks = [list(range(i, len(tokens), processes)) for i in range(processes)]
    procs = [ctx.Process(target=_client_process,
                         args=(base, [tokens[i] for i in c], mode, start_at, duration, period,
                               [offsets[i] for i in c], queue)) for c in chunks]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    merged = {k: sum((r[k] for r in results), []) for k in ("next", "next_sched", "submit", "acked")}
    merged["errors"] = sum(r["errors"] for r in results)
    merged["wall_s"] = duration
    return merged


def db_counts(acked_ids: list[int]) -> dict:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM annotation_lease "
                    "WHERE state IN ('active', 'submitted') GROUP BY item_id HAVING count(*) > 1) x")
        double_leases = cur.fetchone()[0]
        cur.execute("SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) n FROM annotation_judgement "
                    "GROUP BY item_id HAVING count(*) > 1) x")
        duplicated = cur.fetchone()[0]
        cur.execute("SELECT id FROM annotation_judgement")
        stored = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT count(*) FROM annotation_item i WHERE judgements_done <> "
                    "(SELECT count(*) FROM annotation_judgement j WHERE j.item_id = i.id AND j.status = 'accepted')")
        counter_mismatch = cur.fetchone()[0]
    lost = len(set(acked_ids) - stored)
    return {"double_leases": int(double_leases), "duplicated_judgements": int(duplicated),
            "lost_judgements": lost, "counter_mismatch": counter_mismatch, "stored": len(stored)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--duration", type=float, default=20.0, help="Seconds of each HTTP phase.")
    # Two cores also run PostgreSQL and the clients: one process per core plus one covers the
    # time a worker waits on the database; threads overlap the waits inside a worker.
    ap.add_argument("--workers", type=int, default=(os.cpu_count() or 2) + 1, help="gunicorn gthread workers.")
    ap.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker.")
    ap.add_argument("--client-processes", type=int, default=4)
    args = ap.parse_args()

    load_at_start = os.getloadavg()[0]
    admin_sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    admin_sql(f"CREATE DATABASE {DB_NAME}")
    server = None
    report: dict = {}
    try:
        setup_django()
        from django.db import connections

        project, templates, tokens = seed_project(ANNOTATORS)
        t0 = time.perf_counter()
        add_items(templates, 1, 10_000)
        vacuum()
        small = lease_query_bench(project)
        reset_queue()
        add_items(templates, 10_001, args.items - 10_000)
        vacuum()
        seed_s = time.perf_counter() - t0
        plan = explain_lease_query(project)
        large = lease_query_bench(project)
        reset_queue()
        queries = queries_per_request(tokens[0])
        reset_queue()
        connections.close_all()

        port = free_port()
        env = dict(os.environ, DATABASE_URL=DB_URL, ALLOWED_HOSTS="127.0.0.1,localhost", CONN_MAX_AGE="600",
                   LOG_LEVEL="WARNING", DEBUG="0")
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "engine.wsgi", "-b", f"127.0.0.1:{port}", "--workers",
             str(args.workers), "--worker-class", "gthread", "--threads", str(args.threads), "--log-level", "warning",
             "--keep-alive", "30"], cwd=ROOT, env=env)
        base = f"http://127.0.0.1:{port}"
        import requests

        for _ in range(100):
            try:
                requests.get(base + "/api/v1/projects/", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.2)
        open_loop = http_load(base, tokens, "open", args.duration, processes=args.client_processes)
        open_counts = db_counts(open_loop["acked"])
        reset_queue()
        connections.close_all()
        sat = http_load(base, tokens, "closed", args.duration, processes=args.client_processes)
        sat_counts = db_counts(sat["acked"])

        rows = [
            ("items in queue", f"{args.items:,}", f"seeded in {seed_s:.1f} s"),
            ("lease query p50 / p99 @10k items", f"{small['query_p50']:.2f} / {small['query_p99']:.2f} ms",
             f"whole lease txn p99 {small['txn_p99']:.2f} ms, {small['leases_per_s']:.0f} leases/s"),
            (f"lease query p50 / p99 @{args.items // 1000}k items",
             f"{large['query_p50']:.2f} / {large['query_p99']:.2f} ms",
             f"whole lease txn p99 {large['txn_p99']:.2f} ms, {large['leases_per_s']:.0f} leases/s"),
            ("queries per next-item / submit", f"{queries['next']} / {queries['submit']}",
             "in-process through the API, token auth included"),
            ("lease query plan uses item_lease_idx", str("item_lease_idx" in plan),
             "EXPLAIN ANALYZE " + next((ln.strip() for ln in plan.splitlines() if "Execution Time" in ln), "")),
            ("open loop next-item p50 / p99", f"{pct(open_loop['next'], 50):.1f} / {pct(open_loop['next'], 99):.1f} ms",
             f"{len(open_loop['next'])} requests; from scheduled send p99 {pct(open_loop['next_sched'], 99):.1f} ms"),
            ("open loop submit p50 / p99", f"{pct(open_loop['submit'], 50):.1f} / {pct(open_loop['submit'], 99):.1f} ms",
             f"{len(open_loop['submit'])} submissions, {open_loop['errors']} errors"),
            ("saturation judgements/s", f"{len(sat['acked']) / args.duration:.0f}",
             f"next p50 {pct(sat['next'], 50):.1f} ms, submit p50 {pct(sat['submit'], 50):.1f} ms, "
             f"{sat['errors']} errors"),
            ("double leases / lost / duplicated",
             f"{open_counts['double_leases'] + sat_counts['double_leases']} / "
             f"{open_counts['lost_judgements'] + sat_counts['lost_judgements']} / "
             f"{open_counts['duplicated_judgements'] + sat_counts['duplicated_judgements']}",
             f"counter mismatches {open_counts['counter_mismatch'] + sat_counts['counter_mismatch']}"),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"{'measure'.ljust(width)}  {'value':<22}  notes")
        for name, value, note in rows:
            print(f"{name.ljust(width)}  {value:<22}  {note}")
        report = {
            "items": args.items,
            "lease_query_p99_ms": round(large["query_p99"], 3),
            "lease_query_p99_ms_10k": round(small["query_p99"], 3),
            "lease_txn_p99_ms": round(large["txn_p99"], 3),
            "next_p50_ms": round(pct(open_loop["next"], 50), 2),
            "next_p99_ms": round(pct(open_loop["next"], 99), 2),
            "next_p99_ms_from_schedule": round(pct(open_loop["next_sched"], 99), 2),
            "submit_p99_ms": round(pct(open_loop["submit"], 99), 2),
            "submits_per_s": round(len(sat["acked"]) / args.duration, 1),
            "double_leases": open_counts["double_leases"] + sat_counts["double_leases"],
            "lost_judgements": open_counts["lost_judgements"] + sat_counts["lost_judgements"],
            "duplicated_judgements": open_counts["duplicated_judgements"] + sat_counts["duplicated_judgements"],
            "http_errors": open_loop["errors"] + sat["errors"],
            "queries_next_item": queries["next"],
            "queries_submit": queries["submit"],
            "gunicorn_workers": args.workers,
            "gunicorn_threads": args.threads,
            "load_avg_1m_at_start": round(load_at_start, 2),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
        }
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may not be set up
            pass
        admin_sql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
