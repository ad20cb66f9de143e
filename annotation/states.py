"""The item state machine: the one place that changes `Item.state`, and the rule that puts an
item in the state its counters say (`item_settle`)."""
from __future__ import annotations

import statistics
from collections.abc import Iterable

from django.utils import timezone

from annotation.models import Item, ItemState
from annotation.store import queue_store
from engine.errors import Conflict
from engine.models import Project

S = ItemState
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.WAITING: {S.READY, S.FAILED},
    S.FAILED: {S.WAITING, S.READY},
    S.READY: {S.IN_PROGRESS, S.DONE, S.HARD_CASE, S.FLAGGED, S.SKIPPED, S.WAITING},
    S.IN_PROGRESS: {S.READY, S.DONE, S.HARD_CASE, S.FLAGGED, S.SKIPPED},
    S.SKIPPED: {S.READY},
    S.FLAGGED: {S.READY, S.SKIPPED},
    S.HARD_CASE: {S.DONE, S.READY, S.IN_PROGRESS},
    # A lead's review (reject) can reopen an item; a correction can turn it into a hard case.
    S.DONE: {S.READY, S.IN_PROGRESS, S.HARD_CASE},
}

# Counters on Item change only under the item's row lock.
COUNTERS = ("claims", "judgements_done", "skips")


def item_transition(*, item: Item, to: str, reason: str = "", also: Iterable[str] = ()) -> Item:
    """Move `item` to state `to`, or raise Conflict if that move is not allowed.

    `also`: other fields the caller changed on the item (its counters), written in the same
    UPDATE, so that a lease or a judgement costs one write of the item row, not two. They are
    written even when the state does not change. The caller holds the row lock
    (select_for_update) when concurrent moves are possible.
    """
    fields = list(also)
    if item.state != to:
        if to not in ALLOWED_TRANSITIONS.get(item.state, set()):
            raise Conflict(
                f"Item {item.pk} cannot go from '{item.state}' to '{to}'.",
                code="invalid_state_transition",
            )
        item.state = to
        item.state_reason = reason
        fields += ["state", "state_reason"]
    if fields:
        item.updated_at = timezone.now()
        queue_store().item_update(item, (*dict.fromkeys(fields), "updated_at"))
    return item


def item_counters_save(item: Item) -> None:
    """Write the item's counters alone (its state stays)."""
    item.updated_at = timezone.now()
    queue_store().item_update(item, (*COUNTERS, "updated_at"))


def item_settle(item: Item, project: Project, *, ratings: list[int] | None = None) -> None:
    """Put an item (row locked by the caller) in the state its counters say, writing the
    counters in the same UPDATE.

    Items a person took out of the queue (flagged, skipped) or without candidates keep their
    state; only their counters are written. `ratings`: the accepted ratings of the item when the
    caller knows them already (saves reading them back). An item whose median rating is below
    the round's alpha is a hard case, done once an artist's mesh exists or once its recovery item
    (engine.rounds.recovery) is done and not a hard case itself.
    """
    if item.state not in (ItemState.READY, ItemState.IN_PROGRESS, ItemState.DONE, ItemState.HARD_CASE):
        item_counters_save(item)
        return
    active = item.claims - item.judgements_done
    if not item.is_gold and item.judgements_done >= project.overlap:
        if ratings is None:
            ratings = queue_store().accepted_ratings(item.pk)
        alpha = item.round.quality_threshold
        hard = bool(ratings) and statistics.median(ratings) < alpha
        also = [*COUNTERS, "hard_case"] if item.hard_case != hard else COUNTERS
        item.hard_case = hard
        if hard and not queue_store().artist_mesh_exists(item.pk):
            item_transition(item=item, to=ItemState.HARD_CASE, reason=f"median rating below alpha={alpha}",
                            also=also)
        else:
            item_transition(item=item, to=ItemState.DONE, reason="artist mesh" if hard else "", also=also)
    else:
        item_transition(item=item, to=ItemState.IN_PROGRESS if active > 0 else ItemState.READY, also=COUNTERS)
    if item.recovers_id:
        _recovered_follow(item)


RECOVERED = "recovered by item"


def _recovered_follow(recovery: Item) -> None:
    """The hard case a recovery item judges again follows it: done (recovered) once the recovery is
    done with its winner rated at least alpha, a hard case again (the artists' queue) if that
    stops being so (a judgement rejected in review). Locked after the recovery item, always."""
    original = Item.objects.select_for_update().get(pk=recovery.recovers_id)
    recovered = recovery.state == ItemState.DONE and not recovery.hard_case
    if recovered and original.state == ItemState.HARD_CASE:
        item_transition(item=original, to=ItemState.DONE, reason=f"{RECOVERED} {recovery.pk}")
    elif not recovered and original.state == ItemState.DONE and original.state_reason.startswith(RECOVERED):
        item_transition(item=original, to=ItemState.HARD_CASE,
                        reason=f"median rating below alpha={original.round.quality_threshold}")
