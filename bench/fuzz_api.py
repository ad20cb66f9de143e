"""Fuzz the whole API against its OpenAPI schema (/api/v1/schema/) with schemathesis, as a lead
and as an annotator, in-process against the WSGI app on a database of its own.

Checks: no 5xx (not_a_server_error), and every answer documented with the documented body
(status_code_conformance, response_schema_conformance). Positive and negative data.
Prints a table of operations (examples, statuses, findings), then each finding with the request
that triggers it, then one JSON line: operations, examples, server_errors, schema_violations.

    .venv/bin/python bench/fuzz_api.py [--examples 25] [--seed 0] [--only SUBSTRING]
"""
from __future__ import annotations

import argparse
import time

import harness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=25, help="generated requests per operation, mode and role")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="only operations whose label contains this")
    parser.add_argument("--positive-only", action="store_true")
    args = parser.parse_args()

    with harness.own_database("bench_fuzz_api") as url:
        harness.django_setup(database_url=url, environ={"ALLOWED_HOSTS": "localhost", "VAR_DIR": "/tmp/bench-fuzz-var"})
        from django.conf import settings

        settings.MEDIA_ROOT = "/tmp/bench-fuzz-var/media"
        from tests.api_fuzz import connections_kept, fuzz_data, fuzz_operation, load_schema, operations

        data = fuzz_data()
        runs = []
        t0 = time.perf_counter()
        with connections_kept():
            for role, token in data["tokens"].items():
                for operation in operations(load_schema(token)):
                    if args.only and args.only not in operation.label:
                        continue
                    runs.append(fuzz_operation(operation, role=role, token=token, path_values=data["path"],
                                               max_examples=args.examples, seed=args.seed,
                                               negative=not args.positive_only))
        elapsed = time.perf_counter() - t0

    findings = [f for run in runs for f in run.findings]
    print(f"{'operation':<62} {'role':<10} {'examples':>8}  statuses{'':<22} findings")
    for run in runs:
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(run.statuses.items()))
        print(f"{run.operation:<62} {run.role:<10} {run.examples:>8}  {statuses:<30} "
              f"{', '.join(sorted({f.check for f in run.findings})) or '-'}")
    for f in findings:
        print(f"\n== {f.operation} as {f.role}: {f.check} (HTTP {f.status})\n{f.message}\n{f.request}")
    server_errors = [f for f in findings if f.status >= 500]
    harness.print_figures({
        "operations": len({run.operation for run in runs}),
        "runs": len(runs),
        "examples": sum(run.examples for run in runs),
        "server_errors": len(server_errors),
        "schema_violations": len(findings) - len(server_errors),
        "operations_failing": sorted({f.operation for f in findings}),
        "seconds": round(elapsed, 1),
    })


if __name__ == "__main__":
    main()
