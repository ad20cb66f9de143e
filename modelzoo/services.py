"""Writes of the model zoo: the checkpoint registry (weights stored under their sha256, lineage,
the committed bootstrap) and a project's checkpoint mix. Generation over a round's items is
`engine.rounds.generate`."""
from __future__ import annotations

import io
import json
import logging
import pickle
from pathlib import Path

from django.db import transaction
from django.db.models import Exists, OuterRef

from engine.errors import NotFound, ValidationFailed
from engine.files import sha256_bytes, store_content_addressed
from engine.models import Project
from modelzoo.generators.base import GeneratorError
from modelzoo.generators.registry import backend_names, weights_check
from modelzoo.models import Checkpoint, CheckpointShare, ProjectCheckpoint
from modelzoo.selectors import checkpoints_for_project

log = logging.getLogger(__name__)

BOOTSTRAP_DIR = Path(__file__).resolve().parent / "checkpoints"
BOOTSTRAP_FILE = BOOTSTRAP_DIR / "bootstrap.pt"
BOOTSTRAP_RECORD = BOOTSTRAP_DIR / "bootstrap.json"
#: What a ranker checkpoint's `backend` says: the code that runs it (`modelzoo.ranker`).
RANKER_BACKEND = "ranker"


def ranker_check(data: bytes) -> None:
    """ValueError unless `data` are ranker weights (torch imported here: not in every web process)."""
    from modelzoo.ranker.model import RankerNet

    RankerNet.check(io.BytesIO(data))


# ------------------------------------------------------------------ registry
@transaction.atomic
def checkpoint_register(*, name: str, version: str, backend: str, data: bytes | None = None,
                        parent: Checkpoint | None = None, config: dict | None = None, recipe: dict | None = None,
                        evaluation: dict | None = None, lineage: dict | None = None,
                        project: Project | None = None, public: bool = False,
                        created_by=None, role: str = Checkpoint.Role.GENERATOR) -> tuple[Checkpoint, bool]:
    """Register a checkpoint; its weights (if any) go to storage under their sha256.

    Idempotent: the same (name, version) with the same weights returns the existing record;
    with other weights it is refused (versions are immutable). New weights are loaded once by their
    backend's check (`registry.weights_check`) and refused (`invalid_weights`) when it cannot load them.

    `project`: the project it is registered for, which it is shared with (None: the system, e.g.
    the bootstrap, which is `public`). With a project, an existing record is returned only when that
    project may already see it; otherwise the name and version are taken, and the record stays hidden.
    """
    if role == Checkpoint.Role.RANKER:
        if backend != RANKER_BACKEND or not data:
            raise ValidationFailed(f"A ranker runs on the '{RANKER_BACKEND}' backend and needs its weights file.",
                                   code="invalid_ranker")
    elif role != Checkpoint.Role.GENERATOR:
        raise ValidationFailed(f"Unknown role '{role}'; use one of: {', '.join(Checkpoint.Role.values)}.")
    elif backend not in backend_names():
        raise ValidationFailed(f"Unknown backend '{backend}'; use one of: {', '.join(backend_names())}.")
    if backend == "builtin" and not data:
        raise ValidationFailed("A builtin checkpoint needs its weights file.")
    if backend == "http" and not (config or {}).get("url"):
        raise ValidationFailed("An http checkpoint needs config {\"url\": \"http://host:port\"} of its server.")
    sha = sha256_bytes(data) if data else ""
    existing = Checkpoint.objects.filter(name=name, version=version).first()
    if existing is not None and project is not None and not checkpoints_for_project(project).filter(
            pk=existing.pk).exists():
        raise ValidationFailed(
            f"Checkpoint {name}:{version} is already registered, and not for project '{project.slug}'; register a "
            "new version (or, if it is one project's checkpoint, a lead there can share it).", code="checkpoint_exists")
    if existing is not None:
        if existing.sha256 != sha or existing.backend != backend or existing.role != role:
            raise ValidationFailed(
                f"Checkpoint {name}:{version} already exists with other weights; register a new version.",
                code="checkpoint_exists")
        return existing, False
    if data and role == Checkpoint.Role.RANKER:
        try:
            ranker_check(data)
        except (ValueError, RuntimeError, pickle.UnpicklingError, EOFError) as exc:
            raise ValidationFailed(f"The file is not a usable ranker: {exc}. Nothing was stored.",
                                   code="invalid_weights") from None
    elif data:  # loaded once here, so that a worker never meets weights its backend cannot load
        try:
            weights_check(backend, data)
        except GeneratorError as exc:
            raise ValidationFailed(f"The file is not a usable '{backend}' checkpoint: {exc}. Nothing was stored.",
                                   code="invalid_weights") from None
    file_name = store_content_addressed(folder="checkpoints", sha256=sha, extension="pt", data=data) if data else ""
    checkpoint = Checkpoint.objects.create(
        name=name, version=version, backend=backend, parent=parent, file=file_name, sha256=sha,
        config=config or {}, recipe=recipe or {}, evaluation=evaluation or {}, lineage=lineage or {},
        public=public, created_by=created_by, role=role,
    )
    if project is not None:
        CheckpointShare.objects.create(checkpoint=checkpoint, project=project, shared_by=created_by)
    return checkpoint, True


def checkpoint_share(*, checkpoint: Checkpoint, project: Project, shared_by=None) -> tuple[CheckpointShare, bool]:
    """Let `project` see `checkpoint` and put it in its mix (idempotent: the share and whether it is new).
    Who may share is the API's selectors' question: a lead of `project` who already sees the checkpoint."""
    return CheckpointShare.objects.get_or_create(checkpoint=checkpoint, project=project,
                                                 defaults={"shared_by": shared_by})


@transaction.atomic
def project_mix_set(*, project: Project, mix: list[tuple[Checkpoint, float]]) -> list[ProjectCheckpoint]:
    """Make `mix` (checkpoints with relative shares of the N candidates) current for `project`."""
    if not mix:
        raise ValidationFailed("Give at least one checkpoint with a positive share.")
    if any(share <= 0 for _, share in mix):
        raise ValidationFailed("Every share must be positive.")
    if len({c.pk for c, _ in mix}) != len(mix):
        raise ValidationFailed("A checkpoint appears twice in the mix.")
    rankers = [str(c) for c, _ in mix if c.role == Checkpoint.Role.RANKER]
    if rankers:
        raise ValidationFailed(f"{', '.join(rankers)} is a ranker: it scores candidates and cannot generate them; "
                               "put generator checkpoints in the mix.", code="not_a_generator")
    Project.objects.select_for_update().filter(pk=project.pk).first()
    ProjectCheckpoint.objects.filter(project=project).delete()
    # Shared for good: a checkpoint the project generated with stays usable after the mix moves on.
    CheckpointShare.objects.bulk_create([CheckpointShare(checkpoint=c, project=project) for c, _ in mix],
                                        ignore_conflicts=True)
    return ProjectCheckpoint.objects.bulk_create(
        [ProjectCheckpoint(project=project, checkpoint=c, share=float(s)) for c, s in mix])


def bootstrap_register(*, make_current: bool = True) -> tuple[Checkpoint, int]:
    """Register the committed bootstrap checkpoint (idempotent), public: every project may use it,
    and make it current for every project without a mix. Returns the checkpoint and how many projects got it."""
    if not BOOTSTRAP_FILE.exists():
        raise NotFound(f"No bootstrap checkpoint at {BOOTSTRAP_FILE}; train it with the pretrain command.")
    record = json.loads(BOOTSTRAP_RECORD.read_text()) if BOOTSTRAP_RECORD.exists() else {}
    data = BOOTSTRAP_FILE.read_bytes()
    sha = sha256_bytes(data)
    checkpoint = Checkpoint.objects.filter(sha256=sha, backend="builtin").first()
    if checkpoint is not None:  # re-store the weights if the media folder was wiped (no-op otherwise)
        store_content_addressed(folder="checkpoints", sha256=sha, extension="pt", data=data)
        if not checkpoint.public:
            Checkpoint.objects.filter(pk=checkpoint.pk).update(public=True)
            checkpoint.public = True
    else:
        checkpoint, _ = checkpoint_register(
            name=str(record.get("name", "builtin")), version=str(record.get("version", f"bootstrap-{sha[:8]}")),
            backend="builtin", data=data,  # the record's "config" is the network's, kept in the recipe
            recipe={k: v for k, v in record.items() if k != "evaluation"},
            evaluation=record.get("evaluation", {}), lineage={"bootstrap": True}, public=True,
        )
    made_current = 0
    if make_current:
        for project in Project.objects.exclude(Exists(ProjectCheckpoint.objects.filter(project=OuterRef("pk")))):
            project_mix_set(project=project, mix=[(checkpoint, 1.0)])
            made_current += 1
    return checkpoint, made_current
