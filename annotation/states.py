"""The item state machine: the one place that changes `Item.state`."""
from collections.abc import Iterable

from django.utils import timezone

from annotation.models import Item, ItemState
from engine.errors import Conflict

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
        item.save(update_fields=[*dict.fromkeys(fields), "updated_at"])
    return item
