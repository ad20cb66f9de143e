"""Leases: an annotator's next item under a lease, renewing and releasing it, skipping or
flagging the item, and expiring leases past their time.

Lock order, everywhere: the item row first, then its leases. Counters on Item
(`claims`, `judgements_done`, `skips`) change only under the item's row lock.

Priority of `lease_next` (documented in docs/annotation.md):
  1. the annotator's own unexpired lease in the project (a reload gets the same item back);
  2. with probability `gold_rate`, a gold item this annotator has not seen;
  3. items closest to completing their overlap (most claims below k), then the oldest;
  4. gold items, if nothing else is left.
An item is never offered twice to one annotator: `Lease(item, annotator)` is unique.
"""
from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from annotation.models import MAX_ACTIVE_LEASES, QUEUE_STATES, Flag, Item, ItemState, Lease, Skip
from annotation.states import COUNTERS, item_counters_save, item_settle, item_transition
from annotation.store import queue_store
from engine.errors import Conflict, NotFound, RateLimited
from engine.models import Project

# An item skipped by this many different annotators leaves the queue (state skipped) until a
# lead reopens it: a mask nobody can judge should not keep coming back.
SKIP_LIMIT = 3


def _utc_day_start(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def daily_cap_check(*, project: Project, annotator, now: dt.datetime | None = None) -> None:
    """Raise RateLimited when the annotator reached the project's daily cap (UTC day)."""
    if not project.daily_cap:
        return
    now = now or timezone.now()
    start = _utc_day_start(now)
    done = queue_store().judgements_since(project_id=project.pk, annotator_id=annotator.pk, since=start)
    if done >= project.daily_cap:
        retry = int((start + dt.timedelta(days=1) - now).total_seconds()) + 1
        raise RateLimited(
            f"You reached today's cap of {project.daily_cap} judgements in '{project.slug}'; "
            "it resets at 00:00 UTC.",
            retry_after_s=retry,
            code="daily_cap_reached",
        )


def lease_close(lease: Lease, state: str, now: dt.datetime) -> None:
    lease.state = state
    lease.closed_at = now
    lease.save(update_fields=["state", "closed_at"])


def _slot_free(item: Item, project: Project) -> bool:
    """Can one more annotator take this item (used for late submissions and renewals)?"""
    if item.state not in QUEUE_STATES:
        return False
    return item.is_gold or item.claims < project.overlap


def _leases_expire_items(item_ids: list[int], now: dt.datetime) -> int:
    """Expire the due active leases of these items, giving their slots back (items locked by
    someone else right now are skipped: the next run gets them)."""
    expired = 0
    for item_id in dict.fromkeys(item_ids):
        with transaction.atomic():
            item = (
                Item.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("project", "round")
                .filter(pk=item_id)
                .first()
            )
            if item is None:
                continue
            n = Lease.objects.filter(item=item, state=Lease.State.ACTIVE, expires_at__lt=now).update(
                state=Lease.State.EXPIRED, closed_at=now
            )
            if n:
                item.claims = max(item.judgements_done, item.claims - n)
                item_settle(item, item.project)
                expired += n
    return expired


def leases_expire_due(*, project: Project | None = None, now: dt.datetime | None = None, limit: int = 1000) -> int:
    """Expire active leases past their time and give their slots back. Returns how many expired.

    Runs from Celery beat (all projects); `lease_next` does the same for its project at every lookup.
    """
    now = now or timezone.now()
    due = Lease.objects.filter(state=Lease.State.ACTIVE, expires_at__lt=now)
    if project is not None:
        due = due.filter(project=project)
    return _leases_expire_items(list(due.order_by("expires_at").values_list("item_id", flat=True)[:limit]), now)


def lease_active_for(*, project: Project, annotator, now: dt.datetime | None = None) -> Lease | None:
    """The annotator's oldest unexpired lease in the project (the item on their screen)."""
    now = now or timezone.now()
    return (
        Lease.objects.filter(project=project, annotator=annotator, state=Lease.State.ACTIVE, expires_at__gt=now)
        .order_by("id")
        .first()
    )


def lease_next(*, project: Project, annotator, exclude: Iterable[int] = (),
               rng: random.Random | None = None) -> tuple[Lease | None, bool]:
    """The annotator's next item under a lease: (lease, created), or (None, False) when none is left.

    Without `exclude`, the annotator's own unexpired lease in the project comes back if they hold
    one (the oldest: the item on their screen, so a reload shows the same item).
    With `exclude` (item ids the caller holds already, the workbench's prefetch): a lease on
    another item. That is the caller's own active lease on an item leased after the excluded
    ones if there is one (a repeated prefetch gets the same item back), else a new lease while
    the caller holds fewer than MAX_ACTIVE_LEASES, else Conflict(lease_limit). An older held
    lease is not handed out as the "next" item: it is the one whose judgement is on its way.

    On PostgreSQL that is three statements after BEGIN: the annotator's lock, the lease statement
    (the caller's leases, the pick, the lease; `annotation/store/postgresql.py`) and the item's
    claim; due leases found on the way are expired first and the lease statement runs again. A new lease carries `candidate_rows` and
    `item_context` (read with the pick) so that the payload reads nothing again.
    """
    now = timezone.now()
    exclude = sorted({int(i) for i in exclude})
    daily_cap_check(project=project, annotator=annotator, now=now)
    rng = rng or random
    gold_first = project.gold_rate > 0 and rng.random() < project.gold_rate
    store = queue_store()
    check_due, waited = True, False
    with transaction.atomic():
        store.annotator_lock(project_id=project.pk, annotator_id=annotator.pk)
        while True:
            lease, mine, due = store.lease_take(project, annotator, exclude, gold_first=gold_first, now=now,
                                                check_due=check_due)
            if lease is not None:
                item = lease.item
                item.claims += 1  # exact: the row is locked
                item_transition(item=item, to=ItemState.IN_PROGRESS, also=["claims"])
                return lease, True
            if due:  # freed here, at lookup, then look again (without looking for due leases)
                _leases_expire_items(due, now)
                check_due = False
                continue
            floor = max((lid for lid, iid in mine if iid in exclude), default=0)
            held = [lid for lid, iid in mine if iid not in exclude and lid > floor]
            if held:
                return Lease.objects.get(pk=held[0]), False
            if len(mine) < MAX_ACTIVE_LEASES:
                return None, False  # nothing left for this annotator
            if not waited:
                # The workbench sends the judgement of its older lease and, as soon as the prefetched
                # item is drawn, asks for the next one: if that judgement is being stored right now,
                # wait for it (its transaction holds the lease row) and look again.
                waited = True
                still = list(Lease.objects.select_for_update().filter(
                    pk__in=[lid for lid, _ in mine], state=Lease.State.ACTIVE, expires_at__gt=now).values_list("pk"))
                if len(still) < MAX_ACTIVE_LEASES:
                    continue
            raise Conflict(
                f"You already hold {len(mine)} leases in '{project.slug}' (items "
                f"{', '.join(str(iid) for _, iid in mine)}); submit, skip or release one first.",
                code="lease_limit",
            )


def _lease_reclaim(item: Item, lease: Lease, now: dt.datetime) -> None:
    """Reactivate an expired lease if nobody else took the item; otherwise 409 lease_lost.

    Changes `item.claims` in memory; the caller writes the item."""
    if not _slot_free(item, item.project):
        raise Conflict(
            f"Your lease {lease.pk} expired and item {item.pk} went to another annotator; "
            "ask for the next item.",
            code="lease_lost",
        )
    lease.state = Lease.State.ACTIVE
    lease.closed_at = None
    item.claims += 1


@transaction.atomic
def lease_renew(*, lease: Lease) -> Lease:
    """Extend an open lease by the project's lease time; an expired one only if the item is still free."""
    now = timezone.now()
    item, lease = queue_store().item_and_lease_lock(lease)
    if lease.state == Lease.State.EXPIRED:
        _lease_reclaim(item, lease, now)
        item_settle(item, item.project)
    elif lease.state != Lease.State.ACTIVE:
        raise Conflict(f"Lease {lease.pk} is {lease.state}; ask for the next item.", code="lease_closed")
    lease.expires_at = now + dt.timedelta(seconds=item.project.lease_seconds)
    lease.save(update_fields=["state", "closed_at", "expires_at"])
    return lease


@transaction.atomic
def lease_release(*, lease: Lease) -> None:
    """Give the item back to the queue (for others: this annotator is not offered it again)."""
    item, lease = queue_store().item_and_lease_lock(lease)
    if lease.state != Lease.State.ACTIVE:
        return  # already closed: releasing twice is harmless
    lease_close(lease, Lease.State.RELEASED, timezone.now())
    item.claims -= 1
    item_settle(item, item.project)


def lease_check_for_action(item: Item, lease: Lease, now: dt.datetime) -> bool:
    """Check the (locked) lease can carry a judgement, skip or flag. Returns True if it was active."""
    if lease.state == Lease.State.ACTIVE:
        return True
    if lease.state == Lease.State.EXPIRED:
        _lease_reclaim(item, lease, now)  # late, but nobody else took it: accepted
        return True
    raise Conflict(
        f"Lease {lease.pk} is already {lease.state}; to correct a judgement send 'supersedes'.",
        code="lease_closed",
    )


def _lease_end_by_action(*, item: Item, annotator, lease: Lease, state: str):
    """Lock item and lease, and close the lease in `state` (skip, flag).

    Returns (item, lease, now), or None when the lease already ended in `state` (a retry).
    """
    if lease.item_id != item.pk or lease.annotator_id != annotator.pk:
        raise NotFound(f"You hold no lease {lease.pk} on item {item.pk}.")
    item, lease = queue_store().item_and_lease_lock(lease)
    if lease.state == state:
        return None
    now = timezone.now()
    lease_check_for_action(item, lease, now)
    lease_close(lease, state, now)
    return item, lease, now


@transaction.atomic
def item_skip(*, item: Item, annotator, lease: Lease, reason: str) -> Skip:
    ended = _lease_end_by_action(item=item, annotator=annotator, lease=lease, state=Lease.State.SKIPPED)
    if ended is None:
        return Skip.objects.get(lease_id=lease.pk)
    item, lease, now = ended
    skip = Skip.objects.create(project=item.project, item=item, annotator=annotator, lease=lease,
                               reason=reason[:2000], created_at=now)
    item.claims -= 1
    item.skips += 1
    if item.skips >= SKIP_LIMIT and item.state in QUEUE_STATES and item.claims == item.judgements_done:
        item_transition(item=item, to=ItemState.SKIPPED, reason=f"skipped by {item.skips} annotators",
                        also=COUNTERS)
    else:
        item_settle(item, item.project)
    return skip


@transaction.atomic
def item_flag(*, item: Item, annotator, lease: Lease, reason: str, note: str = "") -> Flag:
    """A flag (bad mask, bad photo) takes the item out of the queue until a lead reopens it."""
    ended = _lease_end_by_action(item=item, annotator=annotator, lease=lease, state=Lease.State.FLAGGED)
    if ended is None:
        return Flag.objects.get(lease_id=lease.pk)
    item, lease, now = ended
    flag = Flag.objects.create(project=item.project, item=item, annotator=annotator, lease=lease,
                               reason=reason, note=note[:2000], created_at=now)
    item.claims -= 1
    if item.state in QUEUE_STATES:
        item_transition(item=item, to=ItemState.FLAGGED, reason=f"{reason}: {note}"[:2000], also=COUNTERS)
    else:
        item_counters_save(item)
    return flag
