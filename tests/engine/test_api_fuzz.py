"""The API against its own OpenAPI schema: a few generated requests per operation, as a lead
and as an annotator, valid and invalid data (tests/api_fuzz.py; the full run is bench/fuzz_api.py).
No 5xx, and every answer is one the schema documents."""
from __future__ import annotations

import pytest

from tests.api_fuzz import connections_kept, fuzz_data, fuzz_operation, load_schema, operations

MAX_EXAMPLES = 3

# Operations left out, each with the finding that is still open (bench/fuzz_api.py lists them).
OPEN_FINDINGS: dict[str, str] = {}


@pytest.mark.slow
def test_api_conforms_to_its_schema(db, settings):
    settings.ALLOWED_HOSTS = ["localhost"]  # schemathesis' WSGI client
    data = fuzz_data()
    findings = []
    with connections_kept():
        findings = _fuzz(data)
    assert not findings, "\n\n".join(f"{f.operation} as {f.role}: {f.check} ({f.status})\n{f.message}\n{f.request}"
                                      for f in findings)


def _fuzz(data) -> list:
    findings = []
    for role, token in data["tokens"].items():
        schema = load_schema(token)
        for operation in operations(schema):
            if operation.label in OPEN_FINDINGS:
                continue
            run = fuzz_operation(operation, role=role, token=token, path_values=data["path"],
                                 max_examples=MAX_EXAMPLES, seed=0, negative=True)
            findings += run.findings
    return findings
