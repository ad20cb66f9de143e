"""The item state machine: the one place that changes `Item.state`."""
from collections.abc import Iterable

from django.db import DatabaseError, connection
from django.utils import timezone

from annotation import sql
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
        _item_write(item, (*dict.fromkeys(fields), "updated_at"))
    return item


_UPDATES: dict[tuple[str, ...], tuple[str, list]] = {}


def _item_write(item: Item, names: tuple[str, ...]) -> None:
    """`item.save(update_fields=names)` as one written-out UPDATE (the ORM would build the same
    statement at about ten times the Python cost, on every lease and every judgement)."""
    statement, fields = _UPDATES.get(names) or (None, None)
    if statement is None:
        fields = [Item._meta.get_field(name) for name in names]
        sets = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
        statement = f"UPDATE {Item._meta.db_table} SET {sets} WHERE id = %s"
        _UPDATES[names] = statement, fields
    if sql.is_postgresql():  # psycopg adapts these columns' Python values (int, str, bool, datetime) as they are
        params = [getattr(item, f.attname) for f in fields]
        cur = sql.cursor()
        cur.execute(statement, [*params, item.pk])
        updated = cur.rowcount
    else:
        params = [f.get_db_prep_save(getattr(item, f.attname), connection) for f in fields]
        with connection.cursor() as cur:
            cur.execute(statement, [*params, item.pk])
            updated = cur.rowcount
    if updated != 1:
        raise DatabaseError(f"Item {item.pk} was not updated: it no longer exists.")
