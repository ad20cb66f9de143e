"""Judgements: validating a submission against what its lease offered, storing it whole
(idempotent on its key), and corrections of one's own judgement.

Lock order, as everywhere: the item row first, then its lease.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import Comparison, Item, Judgement, Lease
from annotation.services.leases import daily_cap_check, lease_check_for_action
from annotation.states import item_settle
from annotation.store import queue_store
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.models import RATING_MAX, RATING_MIN, RankingProtocol


@dataclass
class JudgementInput:
    comparisons: list[dict]
    ranking: list[list[int]] | None
    winner: int
    rating: int
    layout: dict | None
    time_spent_ms: int


def _validate_layout(layout) -> dict:
    def vec(name, n):
        value = layout.get(name)
        if not isinstance(value, list) or len(value) != n or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) < 1e6 for v in value
        ):
            raise ValidationFailed(f"layout.{name} must be a list of {n} finite numbers.", code="invalid_layout")
        return [float(v) for v in value]

    if not isinstance(layout, dict):
        raise ValidationFailed("layout must be an object with rotation, translation and scale.", code="invalid_layout")
    rotation = vec("rotation", 4)
    norm = sum(v * v for v in rotation) ** 0.5
    if norm < 1e-6:
        raise ValidationFailed("layout.rotation must be a non-zero quaternion (w, x, y, z).", code="invalid_layout")
    scale = vec("scale", 3)
    if min(scale) <= 0:
        raise ValidationFailed("layout.scale must be positive.", code="invalid_layout")
    return {"rotation": [v / norm for v in rotation], "translation": vec("translation", 3), "scale": scale}


def judgement_validate(*, lease: Lease, data: JudgementInput) -> list[dict]:
    """Check a judgement against what the lease offered; returns the comparison rows to store."""
    order = list(lease.order)
    offered = set(order)
    if not RATING_MIN <= data.rating <= RATING_MAX:
        raise ValidationFailed(f"rating must be between {RATING_MIN} and {RATING_MAX}.", code="invalid_rating")
    if data.winner not in offered:
        raise ValidationFailed(f"winner {data.winner} is not a candidate of this item.", code="invalid_candidate")
    rows = []
    if lease.protocol == RankingProtocol.KING_OF_THE_HILL:
        comps = data.comparisons or []
        if len(comps) != len(order) - 1:
            raise ValidationFailed(
                f"A king-of-the-hill run over {len(order)} candidates has {len(order) - 1} comparisons; "
                f"got {len(comps)}.",
                code="invalid_run",
            )
        king = order[0]
        for k, comp in enumerate(comps, start=1):
            challenger = order[k]
            king_left = bool(lease.sides[k - 1])
            left, right = (king, challenger) if king_left else (challenger, king)
            for cid in (comp["left"], comp["right"]):
                if cid not in offered:
                    raise ValidationFailed(f"Candidate {cid} is not a candidate of this item.",
                                           code="invalid_candidate", details={"comparison": k})
            if (comp["left"], comp["right"]) != (left, right):
                raise ValidationFailed(
                    f"Comparison {k} must show {left} on the left and {right} on the right "
                    f"(king {king} against candidates[{k}] = {challenger}); got {comp['left']} vs {comp['right']}.",
                    code="invalid_run",
                    details={"comparison": k, "expected": {"left": left, "right": right}},
                )
            outcome = comp["outcome"]
            if outcome == "left":
                king = left
            elif outcome == "right":
                king = right
            rows.append({"index": k, "left_id": left, "right_id": right, "outcome": outcome,
                         "decided_ms": comp.get("decided_ms")})
        if data.winner != king:
            raise ValidationFailed(
                f"The run's last king is {king}, but winner is {data.winner}.",
                code="invalid_run", details={"expected_winner": king},
            )
        if data.ranking:
            raise ValidationFailed("ranking is for the full_ranking protocol; send null.", code="invalid_run")
    else:
        ranking = data.ranking
        if not ranking:
            raise ValidationFailed("This project ranks fully: send 'ranking', groups of ids, best first.",
                                   code="invalid_ranking")
        flat = [cid for group in ranking for cid in group]
        if any(not group for group in ranking) or len(flat) != len(set(flat)) or set(flat) != offered:
            raise ValidationFailed(
                "ranking must hold every candidate of the item exactly once, in non-empty groups.",
                code="invalid_ranking", details={"candidates": sorted(offered)},
            )
        if data.winner not in ranking[0]:
            raise ValidationFailed("winner must be in the first (best) group of the ranking.",
                                   code="invalid_ranking")
        if data.comparisons:
            raise ValidationFailed("comparisons are for king_of_the_hill; send [] with a full ranking.",
                                   code="invalid_ranking")
    return rows


def _existing_for_key(annotator, key: str, item: Item) -> Judgement | None:
    found = Judgement.objects.filter(annotator=annotator, key=key).first()
    if found is not None and found.item_id != item.pk:
        raise Conflict(f"Key '{key}' was already used for item {found.item_id}; generate a new key per judgement.",
                       code="key_reused")
    return found


def judgement_submit(
    *, item: Item, annotator, lease: Lease | None, key: str, data: JudgementInput,
    supersedes: Judgement | None = None,
) -> tuple[Judgement, bool]:
    """Store one whole judgement. Returns (judgement, created); a retried key returns the first one.

    Without `supersedes`: needs the caller's lease on the item; a late submission (lease expired)
    is accepted if the item still has a free slot, else Conflict(lease_lost).
    With `supersedes`: a correction of the caller's own accepted judgement of this item.
    A new judgement comes with its comparisons loaded (`judgement.comparisons.all()` reads nothing).
    """
    project = item.project
    if supersedes is not None:
        if supersedes.annotator_id != annotator.pk or supersedes.item_id != item.pk:
            raise NotFound(f"You have no judgement {supersedes.pk} of item {item.pk}.")
        lease = supersedes.lease
    elif lease is None:
        raise ValidationFailed("Send the lease you hold for this item.", code="lease_required")
    if lease.item_id != item.pk or lease.annotator_id != annotator.pk:
        raise NotFound(f"You hold no lease {lease.pk} on item {item.pk}.")
    rows = judgement_validate(lease=lease, data=data)
    layout = None
    alpha = item.round.quality_threshold
    if data.layout is not None:
        if not lease.layout_stage:
            raise ValidationFailed("This project has no layout stage: send layout null.", code="invalid_layout")
        layout = _validate_layout(data.layout)
    elif lease.layout_stage and data.rating >= alpha:
        raise ValidationFailed("The layout stage is on: send the adjusted layout of the winner.",
                               code="layout_required")
    now = timezone.now()
    store = queue_store()
    try:
        with transaction.atomic():
            item, lease = store.item_and_lease_lock(lease, read=item, winner=data.winner)
            if supersedes is not None or lease.state != Lease.State.ACTIVE:
                # A retry finds its lease closed (or, racing, waited for the lock while the first
                # try committed): the stored judgement is the answer. An open lease carries no
                # judgement yet, so the first try needs no look-up; the unique key guards reuse.
                existing = _existing_for_key(annotator, key, item)
                if existing is not None:
                    return existing, False
            if supersedes is not None:
                supersedes = Judgement.objects.select_for_update().get(pk=supersedes.pk)
                if supersedes.status != Judgement.Status.ACCEPTED:
                    raise Conflict(f"Judgement {supersedes.pk} is {supersedes.status}; only an accepted "
                                   "judgement can be corrected.", code="not_correctable")
            else:
                daily_cap_check(project=project, annotator=annotator, now=now)
                lease_check_for_action(item, lease, now)
            fields = dict(
                project=project, item=item, annotator=annotator, lease=lease, key=key, supersedes=supersedes,
                protocol=lease.protocol, ranking=data.ranking, winner_id=data.winner, rating=data.rating,
                below_threshold=data.rating < alpha, layout=layout, model_layout=item.winner_layout,
                time_spent_ms=data.time_spent_ms,
                gold_correct=(data.winner == item.gold_candidate_id) if item.is_gold and item.gold_candidate_id
                else None,
                created_at=now,
            )
            if supersedes is None:  # closes the lease as submitted
                judgement = store.judgement_insert(fields, rows, layout_json=item.winner_layout_json)
            else:  # a correction: its lease was closed by the judgement it corrects
                judgement = Judgement.objects.create(**fields)
                comparisons = Comparison.objects.bulk_create(Comparison(judgement=judgement, **row) for row in rows)
                judgement._prefetched_objects_cache = {"comparisons": comparisons}
            ratings = None
            if supersedes is not None:
                supersedes.status = Judgement.Status.SUPERSEDED
                supersedes.save(update_fields=["status"])
            else:
                item.judgements_done += 1
                if item.judgements_done == 1:
                    ratings = [data.rating]  # the only accepted judgement is this one
            item_settle(item, project, ratings=ratings)
            return judgement, True
    except IntegrityError:
        # Lost a race on (annotator, key) or on the lease, or the key was used for another item.
        existing = Judgement.objects.filter(annotator=annotator, key=key).first()
        if existing is not None and existing.item_id == item.pk:
            return existing, False
        if existing is not None:
            raise Conflict(f"Key '{key}' was already used for item {existing.item_id}; generate a new key per "
                           "judgement.", code="key_reused") from None
        raise Conflict("This lease already carries a judgement; to correct it send 'supersedes'.",
                       code="lease_closed") from None
