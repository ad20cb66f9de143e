"""The team deployment under faults, full form (issue 18, item 4): three minutes of 32 simulated
annotators over HTTP, a generation job on queue "model" and a snapshot build on "default", while
a gunicorn worker, the S3 endpoint, the model worker (while it generates), Redis, the default
worker (while it builds the snapshot) and PostgreSQL are killed with -9 (all but the gunicorn
worker restarted: its master forks another). What the killed workers held comes back through
beat's lost-work sweep. The deployment is docker/compose.yaml's as local processes
(tests/topology.py): its own PostgreSQL and Redis on free loopback ports, moto's S3 server (made
durable), gunicorn with 2 workers, Celery workers on `model` and `default`, beat.
tests/deploy/test_faults.py runs it short.

    .venv/bin/python bench/faults.py [--duration 180] [--annotators 32] [--items 20000] [--generate 150]

It prints a table (the faults, what the clients saw, what the database holds afterwards), then
one JSON line with the counts (its last line). Exit status 1 when a promise was broken: a
confirmed judgement lost, one stored twice, a candidate missing or doubled, a snapshot not built
or not matching its manifest, an item stuck, a 5xx other than 503.
"""
from __future__ import annotations

import argparse
import sys

import harness  # noqa: F401  (the repository on sys.path)

from tests.topology_soak import problems, soak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=180.0, help="Seconds the annotators work.")
    ap.add_argument("--annotators", type=int, default=32)
    ap.add_argument("--items", type=int, default=20_000, help="Ready items seeded (the queue should last).")
    ap.add_argument("--generate", type=int, default=150,
                    help="Items the generation job makes candidates for (it should still run at the model kill).")
    ap.add_argument("--think", type=float, default=0.5, help="Seconds an annotator waits at most before submitting.")
    args = ap.parse_args()

    result = soak(duration_s=args.duration, annotators=args.annotators, items=args.items, generate=args.generate,
                  think_s=args.think, log=lambda m: print(m, flush=True))
    c, seen = result["check"], result["clients"]
    found = problems(result)
    rows = [(f["fault"], f"at {f['at_s']:.0f} s", f"back after {f['back_after_s']} s"
             + (f", it held {f['tasks_in_flight']}" if "tasks_in_flight" in f else ""))
            for f in result["faults"]]
    errors = {k: v for k, v in seen.items() if k not in ("judged", "retries") and (not k.isdigit() or int(k) >= 400)}
    rows += [
        ("judgements confirmed to clients", str(result["confirmed"]),
         f"{result['confirmed'] / result['run_s']:.1f}/s over {result['run_s']:.0f} s"),
        ("client errors and retries", str(seen.get("retries", 0)),
         ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "none"),
        ("judgements lost / duplicated", f"{c['lost_judgements']} / {c['duplicated_judgements']}",
         f"{c['judgements']} stored; counter mismatches {c['counter_mismatch']}, claims {c['claims_mismatch']}"),
        ("items stuck / active leases", f"{c['stuck_items']} / {c['active_leases']}",
         f"after {result['settle_s']:.0f} s of settling; items {c['items']}"),
        ("generated candidates", f"{c['generated_candidates']} of {2 * result['job']['items']}",
         f"items without exactly 2: {c['generated_items_not_2_candidates']}; still pending: "
         f"{result['stuck_generation_items']}; sent again by the sweep: {c['generation_requeues']}"),
    ]
    for s in c["snapshots"]:
        rows.append((f"snapshot {s['id']}", s["state"], f"{s['rows']} rows, {s['files']} files, sha256 manifest "
                     f"verified {s['verified']}, rebuilt identical {s['rebuilt_identical']}, "
                     f"sent again by the sweep {s['requeues']}"))
    rows.append(("broken promises", str(len(found)), "; ".join(found) or "none"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'what'.ljust(width)}  {'value':<16}  notes")
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:<16}  {note}")
    harness.print_figures({
        "duration_s": args.duration, "annotators": args.annotators, "faults": len(result["faults"]),
        "confirmed": result["confirmed"], "stored": c["judgements"], "lost_judgements": c["lost_judgements"],
        "duplicated_judgements": c["duplicated_judgements"], "stuck_items": c["stuck_items"],
        "active_leases_after": c["active_leases"], "generated_candidates": c["generated_candidates"],
        "planned_candidates": 2 * result["job"]["items"], "stuck_generation_items": result["stuck_generation_items"],
        "generation_requeues": c["generation_requeues"], "snapshot_requeues": [s["requeues"] for s in c["snapshots"]],
        "snapshots_verified": sum(bool(s["verified"] and s["rebuilt_identical"]) for s in c["snapshots"]),
        "client_answers": seen, "settle_s": result["settle_s"], "restarts": result["restarts"],
        "revivals": result["revivals"], "problems": found,
    })
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
