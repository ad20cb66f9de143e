"""Schema-driven fuzzing of /api/v1/ with schemathesis, in-process against the WSGI app.

Shared by the small run in `make test` (tests/engine/test_api_fuzz.py) and the full one
(bench/fuzz_api.py). `fuzz_data()` sets up what the fuzzer should reach: a project with
ingested photos and ready items with candidates, a lease, a lead and an annotator with tokens.
`fuzz_operation()` runs one operation's generated requests as one role and returns what failed:
a 5xx (not_a_server_error) or an answer the schema does not describe (status_code_conformance,
response_schema_conformance).
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, field

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
SCHEMA_PATH = "/api/v1/schema/"

# Path parameters given real ids (else the fuzzer only ever meets 404s); in negative mode, half
# the time. token_id always: a decoy's, else a generated id may be the fuzzer's own token, revoked
# in the middle of the run. username and role stay generated (a real pair would end a membership).
REAL_PATH_PARAMETERS = ("slug", "item_id", "lease_id", "judgement_id", "image_id", "mask_id", "candidate_id",
                        "checkpoint_id", "index", "token_id", "snapshot_id", "path", "job_id")
ALWAYS_REAL = ("token_id",)


@dataclass
class Finding:
    operation: str
    role: str
    check: str
    status: int
    request: str  # a curl command that reproduces it
    message: str = ""


@dataclass
class OperationRun:
    operation: str
    role: str
    examples: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def fuzz_data(*, items: int = 3) -> dict:
    """A project worth fuzzing; returns the tokens by role and real values of path parameters."""
    from annotation.king_of_the_hill import run_build
    from annotation.selectors import lease_payload
    from annotation.services import JudgementInput, judgement_submit
    from annotation.services.leases import lease_next
    from engine.ingest.services import ingest_item
    from engine.ingest.validation import ItemInput, MaskInput
    from engine.models import Role
    from engine.services import token_create
    from tests.annotation.factories import ready_item
    from tests.engine.builders import box_mask, mask_png, photo_bytes
    from tests.engine.factories import MembershipFactory, ProjectFactory, UserFactory

    project = ProjectFactory(slug="fuzz")
    lead, annotator = UserFactory(username="fuzz-lead"), UserFactory(username="fuzz-annotator")
    MembershipFactory(project=project, user=lead, role=Role.LEAD)
    MembershipFactory(project=project, user=annotator, role=Role.ANNOTATOR)
    outcome = ingest_item(project=project, item=ItemInput(
        name="photo.png", image_bytes=photo_bytes(), source={"format": "upload"},
        masks=[MaskInput(source_name="cup.png", label="cup", png_bytes=mask_png(box_mask()))]))
    ready = [ready_item(project, n=3) for _ in range(items)]
    judged, _ = lease_next(project=project, annotator=annotator)  # one judgement, for the judgement endpoints
    comparisons, winner = run_build(lease_payload(judged)["item"], lambda match: None, decided_ms=1500)
    judgement, _ = judgement_submit(item=judged.item, annotator=annotator, lease=judged, key="fuzz-1", data=JudgementInput(
        comparisons=comparisons, ranking=None, winner=winner, rating=4, layout=None, time_spent_ms=9000))
    lease, _ = lease_next(project=project, annotator=annotator)  # and one held lease
    values = {
        "slug": [project.slug],
        "item_id": [i.pk for i in ready],
        "lease_id": [lease.pk] if lease else [],
        "judgement_id": [judgement.pk],
        "image_id": [outcome.image.pk, *(i.mask.image_id for i in ready)],
        "mask_id": [m.pk for m in outcome.image.masks.all()],
        "candidate_id": [c.pk for i in ready for c in i.candidates.all()],
        "checkpoint_id": list({c.checkpoint_id for i in ready for c in i.candidates.all()}),
        "index": [1],
    }
    tokens = {"lead": token_create(user=lead, name="fuzz")[1], "annotator": token_create(user=annotator, name="fuzz")[1]}
    values["token_id"] = [token_create(user=user, name="decoy")[0].pk for user in (lead, annotator)]
    values.update(_built_objects(project, lead))
    return {"tokens": tokens, "path": values}


def _built_objects(project, lead) -> dict:
    """A built snapshot (its files) and a generation job, where the services allow them."""
    from engine.errors import EngineError
    from engine.exports.services import snapshot_build, snapshot_define
    from engine.rounds.generate import generation_job_start
    from modelzoo.services import checkpoint_register, project_mix_set

    values = {}
    try:
        snapshot, _ = snapshot_define(project=project, kind="sft", format="jsonl", created_by=lead)
        snapshot = snapshot_build(snapshot_id=snapshot.pk)
        values["snapshot_id"] = [snapshot.pk]
        values["path"] = [f["path"] for f in snapshot.manifest.get("files", []) if "path" in f][:5]
    except EngineError:
        pass
    try:  # the project's own checkpoint in its mix, then a generation job (its tasks are only enqueued;
        # the http backend needs no weights, and nothing listens on port 9)
        checkpoint, _ = checkpoint_register(name="fuzz", version="1", backend="http", config={"url": "http://127.0.0.1:9"},
                                            project=project, created_by=lead)
        project_mix_set(project=project, mix=[(checkpoint, 1.0)])
        values["checkpoint_id"] = [checkpoint.pk]
        values["job_id"] = [generation_job_start(project=project, created_by=lead).pk]
    except EngineError:
        pass
    return values


@contextmanager
def connections_kept():
    """As Django's test client does: no closing of connections at each request, which would
    close the test's transaction (the WSGI handler sends request_started)."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)


def load_schema(token: str):
    from django.core.wsgi import get_wsgi_application

    return schemathesis.openapi.from_wsgi(SCHEMA_PATH, get_wsgi_application(),
                                          headers={"Authorization": f"Token {token}"})


def operations(schema) -> list:
    """The schema's operations, those that end an object (a lease's release, a DELETE) last."""
    ops = [result.ok() for result in schema.get_all_operations()]
    return sorted(ops, key=lambda op: op.method.upper() == "DELETE" or op.path.endswith("/release"))


def fuzz_operation(operation, *, role: str, token: str, path_values: dict, max_examples: int, seed: int = 0,
                   negative: bool = False) -> OperationRun:
    """Up to `max_examples` generated requests to `operation` as `role` (positive data, and
    negative data too if `negative`); a failing check is recorded, not raised, so that one run
    lists every finding. Deterministic: hypothesis derandomized, real ids drawn from `seed`."""
    run = OperationRun(operation=operation.label, role=role)
    headers = {"Authorization": f"Token {token}"}
    modes = [schemathesis.GenerationMode.POSITIVE] + ([schemathesis.GenerationMode.NEGATIVE] if negative else [])
    rng = random.Random(f"{seed}:{operation.label}:{role}")
    seen: set[tuple[str, int]] = set()

    for mode in modes:
        @settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
        def one(case, real):
            positive = real or mode == schemathesis.GenerationMode.POSITIVE
            for name in REAL_PATH_PARAMETERS if positive else ALWAYS_REAL:
                if case.path_parameters and name in case.path_parameters and path_values.get(name):
                    case.path_parameters[name] = rng.choice(path_values[name])
            response = case.call(headers=headers)
            run.examples += 1
            run.statuses[response.status_code] = run.statuses.get(response.status_code, 0) + 1
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as exc:  # one per failing check
                for failure in getattr(exc, "exceptions", [exc]):
                    title = getattr(failure, "title", type(failure).__name__)
                    if (title, response.status_code) in seen:
                        continue
                    seen.add((title, response.status_code))
                    run.findings.append(Finding(
                        operation=operation.label, role=role, check=title, status=response.status_code,
                        request=case.as_curl_command(headers=headers),
                        message=(getattr(failure, "message", "") or str(failure))[:400]
                        + f"\nResponse: {response.text[:300]}"))

        one()
    return run
