"""The item state machine: the one place that changes `Item.state`."""
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


def item_transition(*, item: Item, to: str, reason: str = "") -> Item:
    """Move `item` to state `to`, or raise Conflict if that move is not allowed.

    The caller holds the row lock (select_for_update) when concurrent moves are possible.
    """
    if item.state == to:
        return item
    if to not in ALLOWED_TRANSITIONS.get(item.state, set()):
        raise Conflict(
            f"Item {item.pk} cannot go from '{item.state}' to '{to}'.",
            code="invalid_state_transition",
        )
    item.state = to
    item.state_reason = reason
    item.updated_at = timezone.now()
    item.save(update_fields=["state", "state_reason", "updated_at"])
    return item
