"""The soak with faults (issue 18, item 4): simulated annotators over HTTP, a generation job and a
snapshot build on the deployment of tests/topology.py, while its processes are killed with -9:
a gunicorn worker (its master forks another), the S3 endpoint (restarted), the Celery worker on
`model` while it generates (restarted), Redis (restarted), the Celery worker on `default` while
it builds the snapshot (restarted) and PostgreSQL (restarted). Afterwards, from the database: no
judgement a client saw confirmed is missing, none is stored twice, every planned candidate exists
once, the snapshot is built and its files match their sha256 and a fresh build of the same
definition, and no item is stuck once the leases of the annotators who stopped have expired (beat
frees them). The work the killed workers held comes back through beat's lost-work sweep
(engine.lost_work); nothing is started again by hand.

tests/deploy/test_faults.py runs it short; bench/faults.py runs the full three minutes.
"""
from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import dataclass

from tests.topology import Topology
from tests.topology_world import Annotator


@dataclass
class Fault:
    at: float  # fraction of the run
    name: str
    target: str
    pause_s: float = 0.0  # down for this long before the restart
    working: str = ""  # SQL counting the rows the target's worker holds: kill it while it holds one


GENERATING = "SELECT count(*) FROM modelzoo_generationjobitem WHERE state = 'pending' AND heartbeat_at IS NOT NULL"
BUILDING = "SELECT count(*) FROM exports_snapshot WHERE state = 'building' AND heartbeat_at IS NOT NULL"
FAULTS = [
    Fault(0.12, "kill -9 a gunicorn worker", "web-worker"),
    Fault(0.18, "kill -9 the S3 endpoint, restart", "s3", 1.0),
    Fault(0.25, "kill -9 the model worker while it generates, restart", "worker-model", 2.0, GENERATING),
    Fault(0.50, "kill -9 Redis, restart", "redis", 2.0),
    Fault(0.61, "kill -9 the default worker while it builds the snapshot, restart", "worker-default", 2.0, BUILDING),
    Fault(0.75, "kill -9 PostgreSQL, restart", "postgres", 3.0),
]
SNAPSHOT_AT = 0.6  # define a snapshot of what is judged by then, and queue its build
# Start the generation job just before the model worker's fault: on a quiet machine its items take
# a quarter of a second each, and a job started with the run was done before the kill.
GENERATE_AT = 0.2
FAULT_SPAN_S = 25.0  # the annotators work at least this long after a fault starts


def soak(*, duration_s: float, annotators: int, items: int, generate: int = 6, lease_seconds: int = 15,
         think_s: float = 0.2, faults: list[Fault] = FAULTS, settle_s: float = 150.0, log=print) -> dict:
    """Run it; returns {"faults": [...], "clients": {...}, "check": {...}, "settle_s": ...}."""
    with Topology() as topo:
        t0 = time.monotonic()
        topo.start_all()
        world = topo.python("tests.topology_world", "seed", "--annotators", str(annotators), "--items", str(items),
                            "--generate", str(generate), "--lease-seconds", str(lease_seconds))
        log(f"deployment up and seeded in {time.monotonic() - t0:.0f} s: {items} ready items, "
            f"{generate} to generate, {annotators} annotators; logs in {topo.dir}")
        clients = [Annotator(topo.base_url, token, seed=k, think_s=think_s) for k, token in enumerate(world["tokens"])]
        start = time.monotonic()
        until = start + duration_s
        threads = [threading.Thread(target=c.run, args=(until,), daemon=True) for c in clients]
        for t in threads:
            t.start()
        events = sorted([(f.at, f) for f in faults] + [(GENERATE_AT, "generate"), (SNAPSHOT_AT, "snapshot")],
                        key=lambda e: e[0])
        done_faults, snapshot, job = [], None, None
        for at, fault in events:
            time.sleep(max(0.0, start + at * duration_s - time.monotonic()))
            if fault == "generate":
                job = topo.python("tests.topology_world", "generate", "--masks", *map(str, world["generate_masks"]))
                log(f"{time.monotonic() - start:6.1f} s  generation job started: {job['items']} items")
                continue
            if fault == "snapshot":
                snapshot = topo.python("tests.topology_world", "snapshot")["snapshot"]
                log(f"{time.monotonic() - start:6.1f} s  snapshot {snapshot} defined, build queued")
                continue
            t = time.monotonic()
            for c in clients:  # annotators meet every fault, however late a loaded machine runs it
                c.until = max(getattr(c, "until", until), t + FAULT_SPAN_S)
            in_flight = None
            if fault.working:  # kill it while it holds work (up to 10 s later)
                while (in_flight := int(topo.psql(fault.working, topo.database))) == 0 and time.monotonic() < t + 10:
                    time.sleep(0.05)
            if fault.target == "web-worker":
                topo.kill_web_worker()
            else:
                topo.kill(fault.target)
                time.sleep(fault.pause_s)
                topo.restart(fault.target)
            record = {"fault": fault.name, "at_s": round(t - start, 1), "back_after_s": round(time.monotonic() - t, 1)}
            if in_flight is not None:
                record["tasks_in_flight"] = in_flight  # rows its worker held (by their heartbeat)
            done_faults.append(record)
            log(f"{record['at_s']:6.1f} s  {fault.name}: back after {record['back_after_s']} s"
                + (f" ({in_flight} task(s) running when killed)" if in_flight is not None else ""))
        for t in threads:
            t.join(duration_s + 120)
        run_s = time.monotonic() - start
        seen: dict[str, int] = {}
        acked: list[int] = []
        for c in clients:
            acked += c.acked
            for k, v in c.seen.items():
                seen[k] = seen.get(k, 0) + v
        log(f"{run_s:6.1f} s  annotators stopped: {len(acked)} judgements confirmed; answers {json.dumps(seen)}")

        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(acked, fh)
        # Settle: the generation job and the snapshot finish (what the killed workers held comes
        # back through the lost-work sweep), the stopped annotators' leases expire and beat
        # (every 30 s) frees their items.
        settle_start, check = time.monotonic(), {}
        while time.monotonic() - settle_start < settle_s:
            check = topo.python("tests.topology_world", "check", "--acked", fh.name)
            if settled(check):
                break
            time.sleep(3.0)
        settle = time.monotonic() - settle_start
        log(f"settled in {settle:.0f} s" if settled(check) else f"NOT settled after {settle:.0f} s")
        if not settled(check):  # what the next person needs to find out why: the rows, the logs, the folder
            topo.keep = True
            check["unfinished_generation_items"] = topo.psql(
                "SELECT id, state, heartbeat_at, requeues, attempts, updated_at FROM modelzoo_generationjobitem"
                " WHERE state = 'pending' ORDER BY id", topo.database).splitlines()
            for name in ("worker-model", "worker-default", "beat"):
                lines = (topo.dir / f"{name}.log").read_text(errors="replace").splitlines()
                log(f"--- last lines of {name}.log\n" + "\n".join(lines[-40:]))
            log(f"the deployment's folder is kept: {topo.dir}")
        for s in check.get("snapshots", []):
            s.pop("definition", None)
            s.pop("manifest", None)
        return {"faults": done_faults, "clients": seen, "confirmed": len(acked), "run_s": round(run_s, 1),
                "check": check, "settle_s": round(settle, 1), "settled": settled(check), "job": job,
                "stuck_generation_items": check.get("generation_job_items", {}).get("pending", 0),
                "restarts": {name: p.starts - 1 - p.revivals for name, p in topo.procs.items()},
                "revivals": {name: p.revivals for name, p in topo.procs.items() if p.revivals}}


def settled(check: dict) -> bool:
    return (bool(check.get("generation_jobs")) and all(j["state"] == "finished" for j in check["generation_jobs"])
            and bool(check.get("snapshots")) and all(s["state"] in ("done", "failed") for s in check["snapshots"])
            and check["active_leases"] == 0)


def problems(result: dict) -> list[str]:
    """What went wrong, in words; empty when the run kept every promise."""
    c, out = result["check"], []
    if not result["settled"]:
        out.append(f"not settled after {result['settle_s']} s: jobs {c.get('generation_jobs')}, "
                   f"job items {c.get('generation_job_items')}, active leases {c.get('active_leases')}, "
                   f"snapshots {[(s['id'], s['state'], s['error']) for s in c.get('snapshots', [])]}, "
                   f"pending items (id|state|heartbeat|requeues|attempts|updated): {c.get('unfinished_generation_items')}")
    for key in ("lost_judgements", "acked_twice", "duplicated_judgements", "counter_mismatch", "stuck_items",
                "claims_mismatch", "generated_items_not_2_candidates", "expired_active_leases"):
        if c.get(key):
            out.append(f"{key}: {c[key]}")
    if c.get("generated_candidates") != 2 * result["job"]["items"]:  # the job's items, rerun or not
        out.append(f"generated candidates {c.get('generated_candidates')} != 2 x {result['job']['items']}")
    for s in c.get("snapshots", []):
        if not (s["state"] == "done" and s["verified"] and s["rebuilt_identical"]):
            out.append(f"snapshot {s['id']}: {s['state']} {s['error']!r} verified={s['verified']} "
                       f"rebuilt_identical={s.get('rebuilt_identical')}")
    for code in result["clients"]:
        if code.startswith("5") and code != "503":
            out.append(f"clients saw {result['clients'][code]} x {code}")
    if result["clients"].get("gave_up"):
        out.append(f"clients gave up {result['clients']['gave_up']} times")
    if result["confirmed"] == 0:
        out.append("no judgement confirmed")
    return out
