"""Benchmark of the annotation queue on PostgreSQL (issue 4). Run it by hand for the figures;
tests/annotation/test_queue_bench.py runs it small, for its counts of double leases and lost judgements.

    .venv/bin/python bench/annotation_queue.py [--items 100000] [--history 2000] [--duration 20]
        [--workers 2] [--threads 3]

It creates its own database (`engine_bench`, or $BENCH_DB; dropped at the end) with an earlier, finished
project (2,000 items judged through the API, so that PostgreSQL plans over tables with rows in
them, as on a server that has run for a while: see `add_history`), fills the measured project with
ready items (4 candidates each) by SQL, then measures:
  1. the lease statement itself (LEASE_SQL of annotation/store/postgresql.py: the caller's leases,
     SELECT ... FOR UPDATE SKIP LOCKED, the candidate order and the lease insert, one statement), timed inside
     `services.lease_next` from Django's cursor to its result: 10,000 leases from 8 concurrent
     connections (8 forked processes, 8 annotators each), at 10,000 and at the full item count;
     also the whole lease_next call (BEGIN, the annotator's lock, the statement, the item's
     claim, COMMIT);
  2. after a 3 s warm-up (the same annotators, not measured; then the queue is reset as before
     each phase), 64 simulated annotators through the HTTP API served by gunicorn, open loop at a fixed
     arrival rate of 100 next-item requests and 100 submissions per second together: each
     annotator asks for its next item at times fixed in advance (one every 0.64 s, the 64
     spread evenly) and submits half a period later. Latency is counted from the actual send
     and from the scheduled send; the latter also counts a client that is late because its
     previous request was slow, so that a slow server cannot hide behind a waiting client;
  3. saturation: the same 64 annotators in a closed loop as fast as the server allows
     (judgements per second; latencies there are queueing, by Little's law);
  4. from the database afterwards: double leases, lost and duplicated judgements, and items whose
     counters disagree with their judgements;
  5. CPU per judgement in each HTTP phase: the gunicorn processes, the PostgreSQL backends of the
     bench database, and the load generator itself, from /proc (the machine may be shared:
     wall-clock figures then measure the machine, CPU per judgement still the code).
It prints a table, then one JSON line (its last line).

The load generator is one process: 64 coroutines, each with one keep-alive HTTP/1.1 connection
written and read by hand: 0.3-0.6 ms of CPU per judgement (next-item and submission), measured
in each run, so that it takes little from the two cores it shares with the server.

gunicorn: 2 gthread workers x 3 threads by default, for two cores. A worker's Python is about
two thirds of the CPU of a judgement and PostgreSQL the rest, so both cores need Python from
more than one process (one process runs Python on one core at a time, the GIL), and a worker
waiting for PostgreSQL needs another request to go on with: two processes, one per core, with
three threads each. More processes cost more than they gain on two cores: measured on this
machine with 64 annotators at saturation, 2x3 gave 179-270 judgements/s at 4.6-5.3 ms of
gunicorn CPU per judgement, 2x2 122-175 at 5.1-7.0, 3x2 83-131 at 5.3-7.7, 4x1 81-107 at
6.9-9.8 and 6x1 88 at 10.5 (the other core busy with someone's training, hence the spread).
Each worker loads the URLconf at boot and freezes the garbage collector's view (see
`engine/gunicorn_conf.py`).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import time
import uuid

import harness
from harness import ROOT

from annotation.king_of_the_hill import run_build

DB_NAME = os.environ.get("BENCH_DB", "engine_bench")  # created and dropped by the bench
DB_URL = harness.database_url(DB_NAME)
ANNOTATORS = 64
WORKERS, THREADS = 2, 3  # gunicorn; see the docstring
HISTORY_ITEMS = 2_000  # judged items of an earlier project (add_history)
WARM_UP_S = 3.0  # closed loop before the measured phases, then the queue is reset


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


# ------------------------------------------------------------------ database
def seed_project(n_users: int, slug: str = "bench"):
    from engine.models import Image, Membership, ObjectMask, Project
    from engine.services import round_current, token_create
    from django.contrib.auth import get_user_model
    from modelzoo.models import Candidate, Checkpoint
    from annotation.models import Item, ItemState

    project = Project.objects.create(name=slug, slug=slug, overlap=1, gold_rate=0.0, lease_seconds=600)
    rnd = round_current(project=project)
    image = Image.objects.create(project=project, file="images/x.png", sha256="0" * 64, width=64, height=48,
                                 format="png", source_name="x.png")
    mask = ObjectMask.objects.create(image=image, rle_counts="PPYo0", rle_sha256="t" * 64, bbox=[1, 1, 5, 5],
                                     area=25, label="obj")
    item = Item.objects.create(project=project, round=rnd, mask=mask, state=ItemState.WAITING)
    ckpt, _ = Checkpoint.objects.get_or_create(name="bench", version="1", backend="builtin")
    cand = Candidate.objects.create(item=item, checkpoint=ckpt, seed=0, steps=4, glb="c.glb", num_vertices=100,
                                    num_faces=200, layout={"rotation": [1, 0, 0, 0], "translation": [0, 0, -2],
                                                           "scale": [1, 1, 1]})
    User = get_user_model()
    tokens = []
    for i in range(n_users):
        user = User.objects.create(username=f"{slug}{i}")
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


def add_history(n_items: int) -> None:
    """An earlier, finished project in the same database: n_items judged through the API by one
    annotator (lease, judgement, comparisons). A server that has run for a while has such rows, and
    PostgreSQL plans by its statistics: over empty lease and judgement tables it plans sequential
    scans (its own foreign-key checks included), which get slower as the tables fill during a phase
    until autovacuum analyses them again. The measured project is reset around them."""
    from django.test import Client

    _project, templates, tokens = seed_project(1, slug="history")
    add_items(templates, 1_000_001, n_items)
    client = Client(HTTP_AUTHORIZATION=f"Token {tokens[0]}", HTTP_HOST="127.0.0.1")
    for _ in range(n_items):
        judge_next(client, "history")


def judge_next(client, slug: str) -> None:
    """One next-item and its judgement through the API, in-process (a Django test Client)."""
    payload = client.post(f"/api/v1/projects/{slug}/next-item").json()
    r = client.post(f"/api/v1/items/{payload['item']['id']}/judgements", _judgement(payload),
                    content_type="application/json")
    assert r.status_code == 201, r.content


def reset_queue() -> None:
    """The measured project's queue as seeded: its leases and judgements deleted, its items ready."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT id FROM engine_project WHERE slug = 'bench'")
        (project,) = cur.fetchone()
        cur.execute("DELETE FROM annotation_comparison WHERE judgement_id IN "
                    "(SELECT id FROM annotation_judgement WHERE project_id = %s)", [project])
        cur.execute("DELETE FROM annotation_judgement WHERE project_id = %s", [project])
        cur.execute("DELETE FROM annotation_lease WHERE project_id = %s", [project])
        cur.execute("UPDATE annotation_item SET claims = 0, judgements_done = 0, state = 'ready' "
                    "WHERE project_id = %s AND (claims <> 0 OR state <> 'ready')", [project])
    vacuum()


def vacuum() -> None:
    harness.sql("VACUUM ANALYZE", url=DB_URL)


def explain_lease_query(project) -> str:
    """EXPLAIN ANALYZE of the lease statement (it inserts a lease: rolled back)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from annotation.store.postgresql import LEASE_SQL, lease_sql_params
    from engine import db

    user = get_user_model().objects.get(username="bench0")
    params = lease_sql_params(project, user, [], gold_first=False, seed=1, now=timezone.now())
    with transaction.atomic():
        cur = db.cursor()
        cur.execute("EXPLAIN (ANALYZE) " + LEASE_SQL, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
        transaction.set_rollback(True)
    return plan


# ------------------------------------------------------------------ phase 1: the lease query
def _lease_worker(project_id: int, user_ids: list[int], n: int, out) -> None:
    """One process, one connection, its own annotators: n leases through `services.lease_next`,
    timing the lease statement (from Django's cursor to its result) and the whole call (BEGIN,
    the annotator's lock, the statement, the item's claim, COMMIT). The annotators take turns;
    after each turn their leases are closed as if judged (one untimed UPDATE), so that each may
    take the next one."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation import services
    from annotation.store.postgresql import LEASE_SQL
    from engine.models import Project

    project = Project.objects.get(pk=project_id)
    users = list(get_user_model().objects.filter(pk__in=user_ids).order_by("id"))
    statement_ms: list[float] = []

    def timed(execute, sql, params, many, context):
        if sql is not LEASE_SQL:
            return execute(sql, params, many, context)
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statement_ms.append((time.perf_counter() - t0) * 1000)

    call_ms, turn = [], []
    with connection.execute_wrapper(timed), connection.cursor() as closer:
        for k in range(n):
            t0 = time.perf_counter()
            lease, created = services.lease_next(project=project, annotator=users[k % len(users)])
            call_ms.append((time.perf_counter() - t0) * 1000)
            assert created, "the queue ran dry"
            turn.append(lease.pk)
            if len(turn) == len(users) or k == n - 1:
                closer.execute("UPDATE annotation_lease SET state = 'submitted', closed_at = now() "
                               "WHERE id = ANY(%s)", [turn])
                turn = []
    connection.close()
    out.put((statement_ms, call_ms))


def lease_query_bench(project, n_leases: int = 10_000, n_conns: int = 8) -> dict:
    """8 concurrent connections, each in its own process: threads of one process would time
    each other's Python under the GIL, not the query."""
    from django.contrib.auth import get_user_model
    from django.db import connections

    user_ids = list(get_user_model().objects.filter(username__startswith="bench").order_by("id")
                    .values_list("id", flat=True))
    connections.close_all()  # the children open their own; none may inherit this socket
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    per = n_leases // n_conns
    procs = [ctx.Process(target=_lease_worker, args=(project.pk, user_ids[t::n_conns], per, out))
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
    """The left one of odd comparisons is better, even ones are equal."""
    comps, king = run_build(payload["item"], lambda m: m.left if m.index % 2 else None, decided_ms=1200)
    return {"lease": payload["lease"]["id"], "key": str(uuid.uuid4()), "comparisons": comps, "ranking": None,
            "winner": king, "rating": 4, "layout": None, "time_spent_ms": 5000}


class _Http:
    """One keep-alive HTTP/1.1 connection, written and read by hand: the load generator shares
    the two cores with the server (its CPU per judgement is in the report)."""

    def __init__(self, host: str, port: int, token: str):
        self.host, self.port = host, port
        self.head = (f"Host: {host}:{port}\r\nAuthorization: Token {token}\r\n"
                     "Content-Type: application/json\r\nAccept: application/json\r\n").encode()
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes = b"") -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\n" + self.head
                              + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            try:
                status_line = await self.reader.readline()
                if not status_line:
                    raise ConnectionResetError("closed by the server")
            except (ConnectionError, asyncio.IncompleteReadError):
                # The server closed an idle keep-alive connection before reading this request
                # (nothing came back): send it again on a new one, once.
                self.close()
                if attempt:
                    raise
                continue
            length, close = 0, False
            while (line := await self.reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            payload = await self.reader.readexactly(length) if length else b""
            if close:
                self.close()
            return int(status_line.split()[1]), payload
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _annotator(http: _Http, mode: str, start_at: float, end: float, period: float, offset: float,
                     rec: dict) -> None:
    """One annotator: next-item, then its judgement half a period later (open loop, at times
    fixed in advance) or at once (closed loop). Latency is counted from the actual send and,
    in the open loop, also from the scheduled send (a late client counts against the server)."""
    loop = asyncio.get_running_loop()
    clock = loop.time
    cycle = 0
    while True:
        sched = start_at + offset + cycle * period
        if mode == "open":
            if sched >= end:
                break
            if sched > clock():
                await asyncio.sleep(sched - clock())
        elif clock() >= end:
            break
        t0 = clock()
        status, body = await http.post("/api/v1/projects/bench/next-item")
        t1 = clock()
        rec["next"].append((t1 - t0) * 1000)
        if mode == "open":
            rec["next_sched"].append((t1 - sched) * 1000)
            rec["late_ms"].append((t0 - sched) * 1000)
        cycle += 1
        if status != 200:
            rec["errors"] += status != 204
            if status == 204:
                await asyncio.sleep(0.05)
            continue
        payload = json.loads(body)
        judgement = json.dumps(_judgement(payload)).encode()
        if mode == "open":
            due = sched + period / 2
            if due > clock():
                await asyncio.sleep(due - clock())
        else:
            due = clock()
        t0 = clock()
        status, body = await http.post(f"/api/v1/items/{payload['item']['id']}/judgements", judgement)
        t1 = clock()
        rec["submit"].append((t1 - t0) * 1000)
        if mode == "open":
            rec["submit_sched"].append((t1 - due) * 1000)
        if status in (200, 201):
            rec["acked"].append(json.loads(body)["id"])
        else:
            rec["errors"] += 1


async def _load(host: str, port: int, tokens: list[str], mode: str, duration: float, rate_per_s: float) -> dict:
    period = len(tokens) / rate_per_s  # each annotator: one next-item and one submission per period
    rec = {"next": [], "next_sched": [], "late_ms": [], "submit": [], "submit_sched": [], "acked": [], "errors": 0}
    # Each annotator connects at its first request, as a browser does. (Connected ahead and left
    # silent, the connections would each hold one of gunicorn's gthread threads, which waits up
    # to 5 s for a new connection's first request: a start-up stall of hundreds of ms.)
    clients = [_Http(host, port, token) for token in tokens]
    loop = asyncio.get_running_loop()
    start_at = loop.time() + 0.5
    end = start_at + duration
    await asyncio.gather(*(_annotator(http, mode, start_at, end, period, k * period / len(tokens), rec)
                           for k, http in enumerate(clients)))
    rec["wall_s"] = loop.time() - start_at
    for http in clients:
        http.close()
    return rec


def http_load(host: str, port: int, tokens: list[str], mode: str, duration: float, rate_per_s: float = 100.0) -> dict:
    """64 annotators as coroutines of this process, one keep-alive connection each; returns the
    latencies, acknowledged judgement ids and this process's CPU seconds."""
    cpu0 = time.process_time()
    rec = asyncio.run(_load(host, port, tokens, mode, duration, rate_per_s))
    rec["client_cpu_s"] = time.process_time() - cpu0
    return rec


def proc_cpu_s(pids) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def server_pids(server) -> list[int]:
    """The gunicorn master and its workers."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(server.pid)], capture_output=True, text=True).stdout
    return [server.pid, *(int(p) for p in out.split())]


def backend_pids() -> list[int]:
    """PostgreSQL backends connected to the bench database (other than this process's)."""
    return [r[0] for r in harness.sql("SELECT pid FROM pg_stat_activity WHERE datname = %s", [DB_NAME])]


def measured_load(server, host, port, tokens, mode, duration) -> dict:
    """http_load, with the CPU that the gunicorn processes and the bench database's backends spent
    meanwhile (backends of persistent connections: CONN_MAX_AGE in the server's environment)."""
    pids = server_pids(server)
    before_pg = {pid: proc_cpu_s([pid]) for pid in backend_pids()}
    gunicorn0 = proc_cpu_s(pids)
    rec = http_load(host, port, tokens, mode, duration)
    rec["server_cpu_s"] = proc_cpu_s(pids) - gunicorn0
    rec["pg_cpu_s"] = sum(proc_cpu_s([pid]) - before_pg.get(pid, 0.0) for pid in backend_pids())
    return rec


def cpu_per_judgement(rec: dict) -> dict:
    n = max(1, len(rec["acked"]))
    return {k: round(1000 * rec[f"{k}_cpu_s"] / n, 2) for k in ("server", "pg", "client")}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--duration", type=float, default=20.0, help="Seconds of each HTTP phase.")
    ap.add_argument("--workers", type=int, default=WORKERS, help="gunicorn worker processes.")
    ap.add_argument("--threads", type=int, default=THREADS, help="threads per gunicorn worker (gthread).")
    ap.add_argument("--skip-lease-query", action="store_true", help="Only the HTTP phases (for tuning runs).")
    ap.add_argument("--history", type=int, default=HISTORY_ITEMS,
                    help="Judged items of the earlier project (add_history).")
    args = ap.parse_args()

    load_at_start = os.getloadavg()[0]
    with harness.own_database(DB_NAME):
        report = measure(args, load_at_start)
    harness.print_figures(report)


def measure(args, load_at_start: float) -> dict:
    """Every phase, in the bench's database; the figures of the JSON line (the table printed)."""
    server = None
    try:
        harness.django_setup(database_url=DB_URL, environ={
            "CACHE_URL": "", "ALLOWED_HOSTS": "127.0.0.1,localhost", "LOG_LEVEL": "WARNING"})
        from django.db import connections

        t0 = time.perf_counter()
        add_history(args.history)
        project, templates, tokens = seed_project(ANNOTATORS)
        small = large = None
        if not args.skip_lease_query:
            add_items(templates, 1, 10_000)
            vacuum()
            small = lease_query_bench(project)
            reset_queue()
            add_items(templates, 10_001, args.items - 10_000)
        else:
            add_items(templates, 1, args.items)
        vacuum()
        seed_s = time.perf_counter() - t0
        plan = explain_lease_query(project)
        if not args.skip_lease_query:
            large = lease_query_bench(project)
            reset_queue()
        queries = queries_per_request(tokens[0])
        reset_queue()
        connections.close_all()

        host, port = "127.0.0.1", harness.free_port()
        env = dict(os.environ, DATABASE_URL=DB_URL, ALLOWED_HOSTS="127.0.0.1,localhost", CONN_MAX_AGE="600",
                   LOG_LEVEL="WARNING", DEBUG="0")
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "engine.wsgi", "-b", f"{host}:{port}", "--workers",
             str(args.workers), "--worker-class", "gthread", "--threads", str(args.threads), "--log-level", "warning",
             "--keep-alive", "60", "--backlog", "256", "-c", str(ROOT / "engine" / "gunicorn_conf.py")], cwd=ROOT, env=env)
        harness.wait_for_port(host, port)
        time.sleep(1.0)  # the workers boot after the master listens
        # Warm-up, not measured: the workers open their database connections (a new backend
        # fills its caches) and prepare their statements, as a server running for a while has.
        http_load(host, port, tokens, "closed", WARM_UP_S)
        reset_queue()
        connections.close_all()
        open_loop = measured_load(server, host, port, tokens, "open", args.duration)
        open_counts = db_counts(open_loop["acked"])
        reset_queue()
        connections.close_all()
        sat = measured_load(server, host, port, tokens, "closed", args.duration)
        sat_counts = db_counts(sat["acked"])
        open_cpu, sat_cpu = cpu_per_judgement(open_loop), cpu_per_judgement(sat)

        def lease_row(name, r):
            if r is None:
                return (name, "skipped", "")
            return (name, f"{r['query_p50']:.2f} / {r['query_p99']:.2f} ms",
                    f"whole lease_next p99 {r['txn_p99']:.2f} ms, {r['leases_per_s']:.0f} leases/s")

        rows = [
            ("items in queue", f"{args.items:,}",
             f"seeded in {seed_s:.1f} s, after an earlier project of {args.history:,} judged items"),
            lease_row("lease statement p50 / p99 @10k items", small),
            lease_row(f"lease statement p50 / p99 @{args.items // 1000}k items", large),
            ("queries per next-item / submit", f"{queries['next']} / {queries['submit']}",
             "in-process through the API, token auth, BEGIN and COMMIT included"),
            ("lease query plan uses item_lease_idx", str("item_lease_idx" in plan),
             "EXPLAIN ANALYZE " + next((ln.strip() for ln in plan.splitlines() if "Execution Time" in ln), "")),
            ("open loop next-item p50 / p99", f"{pct(open_loop['next'], 50):.1f} / {pct(open_loop['next'], 99):.1f} ms",
             f"{len(open_loop['next'])} requests; from the scheduled send p50 / p99 "
             f"{pct(open_loop['next_sched'], 50):.1f} / {pct(open_loop['next_sched'], 99):.1f} ms "
             f"(client late p99 {pct(open_loop['late_ms'], 99):.1f} ms)"),
            ("open loop submit p50 / p99", f"{pct(open_loop['submit'], 50):.1f} / {pct(open_loop['submit'], 99):.1f} ms",
             f"{len(open_loop['submit'])} submissions, {open_loop['errors']} errors"),
            ("open loop CPU ms per judgement", f"{sum(open_cpu.values()):.1f}",
             f"gunicorn {open_cpu['server']}, PostgreSQL {open_cpu['pg']}, load generator {open_cpu['client']}"),
            ("saturation judgements/s", f"{len(sat['acked']) / sat['wall_s']:.0f}",
             f"next p50 {pct(sat['next'], 50):.1f} ms, submit p50 {pct(sat['submit'], 50):.1f} ms, "
             f"{sat['errors']} errors"),
            ("saturation CPU ms per judgement", f"{sum(sat_cpu.values()):.1f}",
             f"gunicorn {sat_cpu['server']}, PostgreSQL {sat_cpu['pg']}, load generator {sat_cpu['client']}"),
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
            "lease_query_p99_ms": large and round(large["query_p99"], 3),
            "lease_query_p99_ms_10k": small and round(small["query_p99"], 3),
            "lease_txn_p99_ms": large and round(large["txn_p99"], 3),
            "next_p50_ms": round(pct(open_loop["next"], 50), 2),
            "next_p99_ms": round(pct(open_loop["next"], 99), 2),
            "next_p99_ms_from_schedule": round(pct(open_loop["next_sched"], 99), 2),
            "submit_p99_ms": round(pct(open_loop["submit"], 99), 2),
            "submits_per_s": round(len(sat["acked"]) / sat["wall_s"], 1),
            "double_leases": open_counts["double_leases"] + sat_counts["double_leases"],
            "lost_judgements": open_counts["lost_judgements"] + sat_counts["lost_judgements"],
            "duplicated_judgements": open_counts["duplicated_judgements"] + sat_counts["duplicated_judgements"],
            "counter_mismatches": open_counts["counter_mismatch"] + sat_counts["counter_mismatch"],
            "http_errors": open_loop["errors"] + sat["errors"],
            "queries_next_item": queries["next"],
            "queries_submit": queries["submit"],
            "cpu_ms_per_judgement_saturation": sat_cpu,
            "cpu_ms_per_judgement_open_loop": open_cpu,
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
    return report


if __name__ == "__main__":
    main()
