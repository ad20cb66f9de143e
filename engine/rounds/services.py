"""Writes of rounds: open (generation starts), close (SFT and DPO snapshots are cut), and the
round's trained checkpoint joining the project's mix for the next round.

A round's life: open -> (generate, annotate) -> closed with its snapshots -> a checkpoint is
trained on them (`engine.rounds.train`) and registered as `checkpoint_produced`; it becomes
current for the next round at `share` of the candidates, the older checkpoints keep the rest,
so comparisons between checkpoints keep measuring progress (Bradley-Terry, `engine.stats`).
"""
from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from engine import services as engine_services
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.exports import services as export_services
from engine.exports.models import Snapshot
from engine.models import ObjectMask, Project, Round
from engine.rounds.generate import generation_job_start
from engine.rounds.selectors import masks_without_items
from modelzoo.generators.registry import seeds_are_ranks
from modelzoo.models import ProjectCheckpoint
from modelzoo.services import project_mix_set

log = logging.getLogger(__name__)

#: Share of the candidates the newest checkpoint generates in the next round.
DEFAULT_NEW_SHARE = 0.5
#: DPO pairs of a round: the winner against every candidate it beat (SAM 3D's recipe).
DEFAULT_PAIRING = "winner_beat"


def _mix_now(project: Project) -> list[dict]:

    return [{"checkpoint": pc.checkpoint_id, "share": pc.share}
            for pc in ProjectCheckpoint.objects.filter(project=project).order_by("checkpoint_id")]


def round_open(*, project: Project, quality_threshold: int | None = None, mask_ids: list[int] | None = None,
               image_ids: list[int] | None = None, generate: bool = True, steps: int | None = None,
               candidates_per_item: int | None = None, mix: list[tuple] | None = None,
               pre_rank: dict | None = None, created_by=None) -> Round:
    """Open the project's next round and start generating candidates for `mask_ids` and the masks
    of `image_ids` (default: every mask that has no item yet in any round). `mix`, when given,
    [(checkpoint, share)], becomes the project's mix first; the mix is recorded on the round.
    `pre_rank` ({ranker, generate, shown, random}, `generate.pre_rank_check`): M candidates per item,
    annotators see the ranker's top N and R drawn from the rest."""

    with transaction.atomic():
        if mix:
            project_mix_set(project=project, mix=mix)
        mix = _mix_now(project)
        if generate and not mix:
            raise ValidationFailed(f"Project '{project.slug}' has no current checkpoint; set its mix first "
                                   "(python manage.py generate --help, or PUT .../checkpoints/).",
                                   code="no_checkpoint")
        if image_ids:
            found = dict(ObjectMask.objects.filter(image__project=project, image_id__in=image_ids)
                         .values_list("pk", "image_id"))
            missing = sorted(set(image_ids) - set(found.values()))
            if missing:
                raise ValidationFailed(f"Images {missing} are not in project '{project.slug}' or have no masks.",
                                       code="no_masks")
            mask_ids = sorted(set(mask_ids or []) | set(found))
        rnd = engine_services.round_open(project=project, quality_threshold=quality_threshold)
        rnd.mix = mix
        rnd.save(update_fields=["mix"])
        if generate:
            if mask_ids is None:
                mask_ids = list(masks_without_items(project=project).values_list("pk", flat=True))
            if not mask_ids:
                raise ValidationFailed("No new masks to generate for: ingest more images, or pass mask ids.",
                                       code="no_masks")
            generation_job_start(project=project, created_by=created_by, mask_ids=mask_ids, steps=steps,
                                 candidates_per_item=candidates_per_item, pre_rank=pre_rank)
    log.info("round %s of %s opened (mix %s)", rnd.index, project.slug, mix)
    return rnd


def round_get(*, project: Project, index: int | None = None) -> Round:

    qs = project.rounds.all()
    rnd = qs.filter(index=index).first() if index is not None else qs.order_by("-index").first()
    if rnd is None:
        raise NotFound(f"Project '{project.slug}' has no round {index if index is not None else ''}".strip() + ".")
    return rnd


def round_close(*, round: Round, export: bool = True, format: str = "parquet", pairing: str = DEFAULT_PAIRING,
                build: str = "inline", created_by=None) -> Round:
    """Close an open round and cut its SFT and DPO snapshots (filters: this round only).

    `build`: "inline" builds the files now (command line, simulation), "enqueue" hands them
    to the Celery export task (API). A round without judgements closes without snapshots.
    """

    with transaction.atomic():
        rnd = Round.objects.select_for_update().get(pk=round.pk)
        if rnd.state == Round.State.CLOSED:
            raise Conflict(f"Round {rnd.index} of '{rnd.project.slug}' is already closed.", code="round_closed")
        rnd.state = Round.State.CLOSED
        rnd.closed_at = timezone.now()
        rnd.save(update_fields=["state", "closed_at"])
    if not export:
        return rnd
    snapshots = {}
    for kind in ("sft", "dpo"):
        try:
            snap, _ = export_services.snapshot_define(
                project=rnd.project, kind=kind, format=format, filters={"rounds": [rnd.index]},
                pairing=pairing if kind == "dpo" else None, created_by=created_by)
        except ValidationFailed as exc:
            if exc.code != "empty_selection":
                raise
            log.warning("round %s: no %s data (%s)", rnd.index, kind, exc.message)
            continue
        if snap.state != Snapshot.State.DONE:
            if build == "inline":
                snap = export_services.snapshot_build(snapshot_id=snap.pk)
            else:
                transaction.on_commit(lambda s=snap: export_services.snapshot_build_enqueue(snapshot=s))
        snapshots[kind] = snap
    Round.objects.filter(pk=rnd.pk).update(sft_snapshot=snapshots.get("sft"), dpo_snapshot=snapshots.get("dpo"))
    rnd.refresh_from_db()
    return rnd


def mix_with_new(*, old: list[tuple], new, share: float) -> list[tuple]:
    """The next mix: `new` at `share` of the models' part, the older checkpoints keep the rest of it
    in their proportions. A library backend (retrieval: its seed is a rank in a shape library that no
    round trains) keeps its own share: what it offers does not age with the model's checkpoints."""
    if not 0 < share <= 1:
        raise ValidationFailed("'share' must be in (0, 1].", code="invalid_share")
    total = sum(s for _, s in old)  # with `new`'s own share, if it is in the mix already
    old = [(c, s) for c, s in old if c.pk != new.pk]
    if not old or total <= 0:
        return [(new, 1.0)]
    library = [(c, s / total) for c, s in old if seeds_are_ranks(c.backend)]
    models = [(c, s) for c, s in old if not seeds_are_ranks(c.backend)]
    models_part = 1 - sum(s for _, s in library)
    if models_part <= 1e-9:  # only library backends so far: the first model joins them at `share`
        return [(new, share)] + [(c, (1 - share) * s) for c, s in library]
    if share == 1 or not models:
        return [(new, models_part)] + library
    models_total = sum(s for _, s in models)
    older = [(c, (1 - share) * models_part * s / models_total) for c, s in models]
    return [(new, share * models_part)] + older + library


@transaction.atomic
def round_checkpoint_set(*, round: Round, checkpoint, share: float = DEFAULT_NEW_SHARE) -> Round:
    """Record the checkpoint trained on `round` and make it current for the next round, mixed
    with the project's previous checkpoints (the newest at `share`)."""

    project = round.project
    old = [(pc.checkpoint, pc.share) for pc in
           ProjectCheckpoint.objects.filter(project=project).select_related("checkpoint").order_by("checkpoint_id")]
    project_mix_set(project=project, mix=mix_with_new(old=old, new=checkpoint, share=share))
    Round.objects.filter(pk=round.pk).update(checkpoint_produced=checkpoint)
    round.refresh_from_db()
    return round
