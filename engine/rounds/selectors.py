"""Reads of rounds: a round's status (items per state, judgements, acceptance, snapshots,
checkpoint produced with its offline evaluation) and training runs."""
from __future__ import annotations

import builtins

from django.db.models import Count, Exists, OuterRef, Q

from annotation.models import QUEUE_STATES, Item, ItemState, Judgement
from engine.errors import NotFound
from engine.models import ObjectMask, Project, Round, TrainingRun


def _eval(checkpoint) -> dict | None:
    if checkpoint is None:
        return None
    m = (checkpoint.evaluation or {}).get("model") or {}
    return {k: m.get(k) for k in ("voxel_iou@64", "chamfer", "fscore@0.05", "rotation_error_deg")} if m else None


def _rate(num: int, den: int) -> float | None:
    return builtins.round(num / den, 4) if den else None


def round_status(*, round: Round, figures: dict | None = None) -> dict:
    """A round's status. Its judgements and acceptance are counted exactly from the judgements,
    unless `figures` gives them ({"judgements", "acceptance_rate"}: the console passes the stats
    rollups', which a page can read in milliseconds where counting a million judgements cannot)."""
    states = dict(Item.objects.filter(round=round).values_list("state").annotate(n=Count("id")))
    hard = Item.objects.filter(round=round, hard_case=True).count()
    if figures is None:
        counts = Judgement.objects.filter(item__round=round, status=Judgement.Status.ACCEPTED).aggregate(
            n=Count("id"), acceptable=Count("id", filter=Q(below_threshold=False)))
        n_j, acceptance_rate = counts["n"], _rate(counts["acceptable"], counts["n"])
    else:
        n_j, acceptance_rate = figures.get("judgements", 0), figures.get("acceptance_rate")
    done_or_hard = states.get("done", 0) + states.get("hard_case", 0)
    cp = round.checkpoint_produced
    return {
        "index": round.index, "state": round.state, "quality_threshold": round.quality_threshold,
        "opened_at": round.opened_at, "closed_at": round.closed_at, "mix": round.mix,
        "items": sum(states.values()), "items_by_state": states, "judgements": n_j,
        "acceptance_rate": acceptance_rate,
        "hard_case_rate": _rate(hard, done_or_hard),
        "hard_case_recovery": recovery_counts(round=round),
        "sft_snapshot": round.sft_snapshot_id, "dpo_snapshot": round.dpo_snapshot_id,
        "sft_rows": round.sft_snapshot.rows_total if round.sft_snapshot else None,
        "dpo_rows": round.dpo_snapshot.rows_total if round.dpo_snapshot else None,
        "checkpoint_produced": None if cp is None else {"id": cp.pk, "name": str(cp), "parent": cp.parent_id,
                                                         "evaluation": _eval(cp)},
    }


def recovery_counts(*, round: Round) -> dict:
    """How the round's hard cases fared in recovery (engine.rounds.recovery): sent, still being
    generated or judged, recovered (the recovery's winner rated at least alpha), not recovered,
    and the share recovered of those decided."""
    counts = Item.objects.filter(round=round, recovers__isnull=False).aggregate(
        sent=Count("id"),
        pending=Count("id", filter=Q(state__in=[ItemState.WAITING, ItemState.FAILED, *QUEUE_STATES])),
        recovered=Count("id", filter=Q(state=ItemState.DONE, hard_case=False)),
        not_recovered=Count("id", filter=Q(hard_case=True, state__in=[ItemState.DONE, ItemState.HARD_CASE])))
    return counts | {"recovered_share": _rate(counts["recovered"], counts["recovered"] + counts["not_recovered"])}


def masks_without_items(*, project: Project):
    """The project's masks that no round has generated for yet (what a new round takes by default)."""
    return ObjectMask.objects.filter(image__project=project).exclude(
        Exists(Item.objects.filter(mask=OuterRef("pk"))))


def rounds_status(*, project: Project, figures: dict[int, dict] | None = None) -> list[dict]:
    """Every round's status; `figures`: {round index: figures} as `round_status` takes them."""
    rounds = project.rounds.select_related("sft_snapshot", "dpo_snapshot", "checkpoint_produced").order_by("index")
    if figures is None:  # every round's judgements counted in one pass, not one per round
        counted = {row["item__round_id"]: row for row in Judgement.objects.filter(
            project=project, status=Judgement.Status.ACCEPTED).values("item__round_id").annotate(
            n=Count("id"), acceptable=Count("id", filter=Q(below_threshold=False))).order_by()}
        figures = {r.index: {"judgements": counted.get(r.pk, {}).get("n", 0),
                             "acceptance_rate": _rate(counted.get(r.pk, {}).get("acceptable", 0),
                                                      counted.get(r.pk, {}).get("n", 0))} for r in rounds}
    return [round_status(round=r, figures=figures.get(r.index, {})) for r in rounds]


def training_run_list(*, project: Project):
    return TrainingRun.objects.filter(project=project).select_related("parent", "checkpoint", "round")


def training_run_get(*, project: Project, run_id: int) -> TrainingRun:

    run = training_run_list(project=project).filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"No training run {run_id} in project '{project.slug}'.")
    return run
