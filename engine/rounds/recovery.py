"""Hard-case recovery (issue 16, part 3): a hard case (its winner rated below alpha) goes back
for more seeds before the artists see it. Each hard case of the open round gets one recovery
item: the same object in the same round, generated with M new seeds (the seeds derive from
the new item's id), pre-ranked by a ranker, its top N plus R drawn from the rest shown, and
queued for annotators like any item. While it is generated or judged the hard case stays out of
the artists' queue; once it is done, the hard case is recovered (done) if its winner is rated at
least alpha, and goes to the artists if not (annotation.states). Its candidates stay negatives;
the recovery's winner is the SFT positive.
"""
from __future__ import annotations

from django.db import transaction

from annotation.models import Item, ItemState
from engine.errors import Conflict, ValidationFailed
from engine.models import Project
from engine.rounds.generate import generation_job_create, generation_sizes, mix_current
from engine.services import round_current
from modelzoo.models import GenerationJob


def hard_cases_recover(*, project: Project, pre_rank: dict, round_index: int | None = None,
                       item_ids: list[int] | None = None, steps: int | None = None, created_by=None,
                       enqueue: bool = True) -> GenerationJob:
    """Send the open round's (`round_index`, when given, must be it) hard cases (all that have no
    recovery yet and no artist mesh, or `item_ids`) back for more seeds: one recovery item each and
    one generation job over them with `pre_rank` ({ranker, generate: M, shown: N, random: R}).
    Refused whole (nothing created) when an id is not such a hard case, or when there is none."""
    if not pre_rank:
        raise ValidationFailed("Recovery ranks its new seeds: give pre_rank with a ranker (a checkpoint id) and "
                               "generate, shown, random.", code="invalid_pre_rank")
    mix = mix_current(project)
    steps, pre_rank, n, planned = generation_sizes(project=project, steps=steps, candidates_per_item=None,
                                                   pre_rank=pre_rank)
    with transaction.atomic():
        rnd = round_current(project=project)
        if round_index is not None and rnd.index != round_index:
            raise Conflict(f"Round {round_index} is not project '{project.slug}'s open round ({rnd.index}); hard cases "
                           "are recovered in the round they came from, while it is open.", code="round_closed")
        hard = Item.objects.select_for_update(of=("self",)).filter(
            round=rnd, state=ItemState.HARD_CASE, recovers__isnull=True, recovery__isnull=True).order_by("pk")
        if item_ids is not None:
            hard = hard.filter(pk__in=item_ids)
            missing = sorted(set(item_ids) - set(hard.values_list("pk", flat=True)))
            if missing:
                raise ValidationFailed(
                    f"Items {missing} are not hard cases of round {rnd.index} of project '{project.slug}' waiting for "
                    "an artist (a recovery is sent once per hard case; artists' meshes end it).",
                    code="not_recoverable", details={"items": missing})
        originals = list(hard)
        if not originals:
            raise Conflict(f"Round {rnd.index} of project '{project.slug}' has no hard case to recover.",
                           code="nothing_to_recover")
        recoveries = Item.objects.bulk_create(
            [Item(project=project, round=rnd, mask_id=o.mask_id, recovers=o) for o in originals])
        return generation_job_create(project=project, rnd=rnd, items=recoveries, mix=mix, steps=steps, n=n,
                                     planned=planned, pre_rank=pre_rank, created_by=created_by, enqueue=enqueue)
