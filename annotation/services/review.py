"""A lead's review: rejecting a judgement, reopening a flagged or skipped item, gold items."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from annotation.models import ItemState, Item, Judgement
from annotation.states import COUNTERS, item_settle, item_transition
from engine.errors import Conflict, ValidationFailed


@transaction.atomic
def judgement_reject(*, judgement: Judgement, reviewer, reason: str = "") -> Judgement:
    """A lead rejects a judgement: it leaves exports and its item gets the slot back."""
    item = Item.objects.select_for_update(of=("self",)).select_related("project", "round").get(pk=judgement.item_id)
    judgement = Judgement.objects.select_for_update().get(pk=judgement.pk)
    if judgement.status == Judgement.Status.REJECTED:
        return judgement
    if judgement.status != Judgement.Status.ACCEPTED:
        raise Conflict(f"Judgement {judgement.pk} is {judgement.status}; reject the judgement that replaced it.",
                       code="not_reviewable")
    judgement.status = Judgement.Status.REJECTED
    judgement.reviewed_by = reviewer
    judgement.review_reason = reason[:2000]
    judgement.reviewed_at = timezone.now()
    judgement.save(update_fields=["status", "reviewed_by", "review_reason", "reviewed_at"])
    item.judgements_done -= 1
    item.claims -= 1
    item_settle(item, item.project)
    return judgement


@transaction.atomic
def judgement_restore(*, judgement: Judgement, reviewer) -> Judgement:
    """A lead takes a rejection back: the judgement counts again (exports, QC) and takes a slot of
    its item again. Its item may then hold more judgements than the overlap asks: it stays done."""
    item = Item.objects.select_for_update(of=("self",)).select_related("project", "round").get(pk=judgement.item_id)
    judgement = Judgement.objects.select_for_update().get(pk=judgement.pk)
    if judgement.status == Judgement.Status.ACCEPTED:
        return judgement
    if judgement.status != Judgement.Status.REJECTED:
        raise Conflict(f"Judgement {judgement.pk} is {judgement.status}; only a rejected judgement can be restored.",
                       code="not_restorable")
    judgement.status = Judgement.Status.ACCEPTED
    judgement.reviewed_by = reviewer
    judgement.review_reason = ""
    judgement.reviewed_at = timezone.now()
    judgement.save(update_fields=["status", "reviewed_by", "review_reason", "reviewed_at"])
    item.judgements_done += 1
    item.claims += 1
    item_settle(item, item.project)
    return judgement


@transaction.atomic
def item_reopen(*, item: Item, reason: str = "") -> Item:
    """A lead puts a flagged or skipped item back in the queue."""
    item = Item.objects.select_for_update(of=("self",)).select_related("project", "round").get(pk=item.pk)
    if item.state not in (ItemState.FLAGGED, ItemState.SKIPPED):
        raise Conflict(f"Item {item.pk} is {item.state}; only flagged or skipped items can be reopened.",
                       code="not_reopenable")
    item.skips = 0
    item_transition(item=item, to=ItemState.READY, reason=reason, also=COUNTERS)
    item_settle(item, item.project)
    return item


@transaction.atomic
def item_set_gold(*, item: Item, candidate_id: int | None) -> Item:
    """Make an item gold with a known best candidate, or (None) an ordinary item again."""
    item = Item.objects.select_for_update().get(pk=item.pk)
    if candidate_id is not None and not item.candidates.filter(pk=candidate_id).exists():
        raise ValidationFailed(f"Candidate {candidate_id} is not a candidate of item {item.pk}.",
                               code="invalid_candidate")
    item.is_gold = candidate_id is not None
    item.gold_candidate_id = candidate_id
    item.save(update_fields=["is_gold", "gold_candidate"])
    return item
