"""Writes of annotation: leases, judgements, skips, flags, review, hard cases.

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
import hashlib
import json
import random
import statistics
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import Exists, JSONField, OuterRef, Q, Subquery
from django.utils import timezone

from annotation import sql
from annotation.models import (
    QUEUE_STATES,
    ArtistMesh,
    Comparison,
    Flag,
    Item,
    ItemState,
    Judgement,
    Lease,
    Skip,
)
from annotation.states import item_transition
from engine.errors import Conflict, NotFound, RateLimited, ValidationFailed
from engine.ingest.services import store_content_addressed
from engine.models import RATING_MAX, RATING_MIN, Project, RankingProtocol
from modelzoo.models import Candidate

# An item skipped by this many different annotators leaves the queue (state skipped) until a
# lead reopens it: a mask nobody can judge should not keep coming back.
SKIP_LIMIT = 3
ARTIST_MESH_MAX_BYTES = 200 * 1024 * 1024


# ------------------------------------------------------------------ helpers
def _utc_day_start(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def daily_cap_check(*, project: Project, annotator, now: dt.datetime | None = None) -> None:
    """Raise RateLimited when the annotator reached the project's daily cap (UTC day)."""
    if not project.daily_cap:
        return
    now = now or timezone.now()
    start = _utc_day_start(now)
    if sql.is_postgresql():  # judgement_annotator_idx; written out, as it runs on every lease and judgement
        (done,) = sql.fetchone("SELECT count(*) FROM annotation_judgement WHERE project_id = %s AND annotator_id = %s "
                               "AND created_at >= %s AND supersedes_id IS NULL", [project.pk, annotator.pk, start])
    else:
        done = Judgement.objects.filter(
            project=project, annotator=annotator, created_at__gte=start, supersedes__isnull=True
        ).count()
    if done >= project.daily_cap:
        retry = int((start + dt.timedelta(days=1) - now).total_seconds()) + 1
        raise RateLimited(
            f"You reached today's cap of {project.daily_cap} judgements in '{project.slug}'; "
            "it resets at 00:00 UTC.",
            retry_after_s=retry,
            code="daily_cap_reached",
        )


COUNTERS = ("claims", "judgements_done", "skips")


def _item_settle(item: Item, project: Project, *, ratings: list[int] | None = None) -> None:
    """Put an item (row locked by the caller) in the state its counters say, writing the
    counters in the same UPDATE.

    Items a person took out of the queue (flagged, skipped) or without candidates keep their
    state; only their counters are written. `ratings`: the accepted ratings of the item when the
    caller knows them already (saves reading them back).
    """
    if item.state not in (ItemState.READY, ItemState.IN_PROGRESS, ItemState.DONE, ItemState.HARD_CASE):
        _save_counters(item)
        return
    active = item.claims - item.judgements_done
    if not item.is_gold and item.judgements_done >= project.overlap:
        if ratings is None and sql.is_postgresql():  # every completed item of an overlap k > 1 asks
            ratings = sql.fetchone("SELECT array_agg(rating) FROM annotation_judgement WHERE item_id = %s "
                                   "AND status = 'accepted'", [item.pk])[0] or []
        elif ratings is None:
            ratings = list(
                item.judgements.filter(status=Judgement.Status.ACCEPTED).values_list("rating", flat=True)
            )
        alpha = item.round.quality_threshold
        hard = bool(ratings) and statistics.median(ratings) < alpha
        also = [*COUNTERS, "hard_case"] if item.hard_case != hard else COUNTERS
        item.hard_case = hard
        if hard and not _has_artist_mesh(item):
            item_transition(item=item, to=ItemState.HARD_CASE, reason=f"median rating below alpha={alpha}",
                            also=also)
        else:
            item_transition(item=item, to=ItemState.DONE, reason="artist mesh" if hard else "", also=also)
    else:
        item_transition(item=item, to=ItemState.IN_PROGRESS if active > 0 else ItemState.READY, also=COUNTERS)


def _has_artist_mesh(item: Item) -> bool:
    if sql.is_postgresql():  # every hard case at its last judgement asks
        return sql.fetchone("SELECT EXISTS (SELECT 1 FROM annotation_artistmesh WHERE item_id = %s)", [item.pk])[0]
    return item.artist_meshes.exists()


def _save_counters(item: Item) -> None:
    item.updated_at = timezone.now()
    item.save(update_fields=[*COUNTERS, "updated_at"])


def _lease_close(lease: Lease, state: str, now: dt.datetime) -> None:
    lease.state = state
    lease.closed_at = now
    lease.save(update_fields=["state", "closed_at"])


def _slot_free(item: Item, project: Project) -> bool:
    """Can one more annotator take this item (used for late submissions and renewals)?"""
    if item.state not in QUEUE_STATES:
        return False
    return item.is_gold or item.claims < project.overlap


# ------------------------------------------------------------------ leases
# The workbench holds the item on screen and prefetches the next one: two leases, no more.
MAX_ACTIVE_LEASES = 2


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
                _item_settle(item, item.project)
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


# Candidate order and sides of a lease, drawn from its seed: `ORDER_KEYS` uniform keys (the
# candidate of rank r in id order gets key r) and ORDER_KEYS - 1 coin flips. The same draw runs in
# Python (here, for replay and for the portable path) and in _LEASE_SQL (the keys and flips are
# its parameters), so the lease statement can order the candidates of the item it picks.
ORDER_KEYS = 64  # Project.candidates_per_item is at most 64; further candidates go last, by id


def _lease_draw(seed: int) -> tuple[list[float], list[bool]]:
    rng = random.Random(seed)
    return [rng.random() for _ in range(ORDER_KEYS)], [rng.random() < 0.5 for _ in range(ORDER_KEYS - 1)]


def _lease_order(candidate_ids: list[int], seed: int) -> tuple[list[int], list[bool]]:
    """The order and sides a lease with this seed shows for these candidates (replayable)."""
    keys, flips = _lease_draw(seed)
    ids = sorted(candidate_ids)
    ranked = sorted((keys[r] if r < ORDER_KEYS else float("inf"), cid) for r, cid in enumerate(ids))
    return [cid for _, cid in ranked], flips[: max(0, len(ids) - 1)]


# What the next-item payload shows of an item's round, mask and image, and its candidates
# (`selectors.item_context` builds the same object through the ORM). {item} is the item's alias.
CONTEXT_SQL = """(SELECT jsonb_build_object(
     'quality_threshold', r.quality_threshold,
     'mask', jsonb_build_object('id', m.id, 'label', m.label, 'bbox', m.bbox, 'rle_counts', m.rle_counts),
     'image', jsonb_build_object('id', im.id, 'width', im.width, 'height', im.height, 'thumbnail', im.thumbnail,
                                 'depth', im.depth, 'intrinsics', im.intrinsics))
   FROM engine_round r, engine_objectmask m, engine_image im
   WHERE r.id = {item}.round_id AND m.id = {item}.mask_id AND im.id = m.image_id)"""
CANDIDATES_SQL = """(SELECT jsonb_agg(jsonb_build_object('id', c.id, 'layout', c.layout, 'num_vertices', c.num_vertices,
                                       'num_faces', c.num_faces) ORDER BY c.id)
   FROM modelzoo_candidate c WHERE c.item_id = {item}.id)"""

# One branch of the pick: `claims < cap` is an index range of item_lease_idx (project, is_gold,
# claims DESC, id), partial on the same state list; the unique (item, annotator) lease index
# answers NOT EXISTS. Rows another transaction holds are skipped, not waited for.
_POOL_SQL = """SELECT * FROM (
    SELECT i.id, i.round_id, i.mask_id, i.state, i.state_reason, i.claims FROM annotation_item i
    WHERE EXISTS (SELECT 1 FROM go) AND i.project_id = %(project)s AND i.is_gold = {gold}
      AND i.state IN ('ready', 'in_progress') AND i.claims < {cap}
      AND NOT (i.id = ANY(%(exclude)s::bigint[]))
      AND NOT EXISTS (SELECT 1 FROM annotation_lease l WHERE l.item_id = i.id AND l.annotator_id = %(annotator)s)
    ORDER BY i.claims DESC, i.id
    LIMIT 1
    FOR UPDATE OF i SKIP LOCKED) AS {name}"""

# The lease statement (PostgreSQL), run under the annotator's lock: reads the caller's active
# leases and the project's due ones, and only if the caller may take a new lease (none held that
# it should get back, fewer than MAX_ACTIVE_LEASES, no due lease to free first) picks an item
# from the preferred pool, else from the other (UNION ALL under LIMIT 1 runs the second branch
# only when the first finds nothing), draws the candidate order and inserts the lease.
# One row comes back, with the new lease (or NULLs) and what the caller needs otherwise.
_LEASE_SQL = f"""
WITH mine AS (
  SELECT id, item_id FROM annotation_lease
  WHERE annotator_id = %(annotator)s AND project_id = %(project)s AND state = 'active' AND expires_at > %(now)s
), due AS (
  SELECT item_id FROM annotation_lease
  WHERE %(check_due)s AND project_id = %(project)s AND state = 'active' AND expires_at < %(now)s
  ORDER BY expires_at LIMIT 50
), go AS (
  SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM due)
    AND (SELECT count(*) FROM mine) < %(max_leases)s
    AND NOT EXISTS (SELECT 1 FROM mine WHERE NOT (item_id = ANY(%(exclude)s::bigint[]))
                    AND id > (SELECT coalesce(max(id), 0) FROM mine WHERE item_id = ANY(%(exclude)s::bigint[])))
), picked AS (
  SELECT * FROM ({_POOL_SQL.format(gold="%(gold_first)s", cap="%(cap_first)s", name="first_pool")}
                 UNION ALL
                 {_POOL_SQL.format(gold="NOT %(gold_first)s", cap="%(cap_second)s", name="second_pool")}) AS pools
  LIMIT 1
), drawn AS (
  SELECT coalesce(jsonb_agg(c.id ORDER BY (%(keys)s::float8[])[c.rank], c.id), '[]') AS "order",
         to_jsonb((%(flips)s::bool[])[1:greatest(count(*) - 1, 0)::int]) AS sides
  FROM (SELECT id, (row_number() OVER (ORDER BY id))::int AS rank
        FROM modelzoo_candidate WHERE item_id = (SELECT id FROM picked)) AS c
), lease AS (
  INSERT INTO annotation_lease (project_id, item_id, annotator_id, state, seed, "order", sides, protocol,
                                layout_stage, created_at, expires_at)
  SELECT %(project)s, p.id, %(annotator)s, 'active', %(seed)s, d."order", d.sides, %(protocol)s,
         %(layout_stage)s, %(now)s, %(expires_at)s
  FROM picked p, drawn d
  RETURNING id, item_id, "order", sides
)
SELECT l.id, l.item_id, l."order", l.sides, p.round_id, p.mask_id, p.state, p.state_reason, p.claims,
       {CANDIDATES_SQL.format(item="p")}, {CONTEXT_SQL.format(item="p")},
       (SELECT array_agg(id ORDER BY id) FROM mine), (SELECT array_agg(item_id ORDER BY id) FROM mine),
       (SELECT array_agg(item_id) FROM due)
FROM (SELECT 1) AS one LEFT JOIN lease l ON true LEFT JOIN picked p ON p.id = l.item_id
"""


def _lease_sql_params(project: Project, annotator, exclude: list[int], *, gold_first: bool, seed: int,
                      now: dt.datetime, check_due: bool = True) -> dict:
    keys, flips = _lease_draw(seed)
    uncapped = 2**31 - 1  # gold items go to every annotator once, whatever the overlap
    return {
        "project": project.pk, "annotator": annotator.pk, "exclude": exclude, "now": now, "check_due": check_due,
        "max_leases": MAX_ACTIVE_LEASES, "gold_first": gold_first,
        "cap_first": uncapped if gold_first else project.overlap,
        "cap_second": project.overlap if gold_first else uncapped,
        "keys": sql.float_array(keys), "flips": sql.bool_array(flips), "seed": seed,
        "protocol": project.ranking_protocol,
        "layout_stage": project.layout_stage, "expires_at": now + dt.timedelta(seconds=project.lease_seconds),
    }


def _lease_take_pg(project: Project, annotator, exclude: list[int], *, gold_first: bool, now: dt.datetime,
                   check_due: bool) -> tuple[Lease | None, list[tuple[int, int]], list[int]]:
    """Run _LEASE_SQL: (the new lease or None, the caller's active leases as (lease id, item id)
    oldest first, item ids with due leases). The lease's item is locked; its claim is not counted yet."""
    seed = random.getrandbits(63)
    params = _lease_sql_params(project, annotator, exclude, gold_first=gold_first, seed=seed, now=now,
                               check_due=check_due)
    (lease_id, item_id, order, sides, round_id, mask_id, state, state_reason, claims, rows, context,
     mine_ids, mine_items, due) = sql.fetchone(_LEASE_SQL, params)
    mine = list(zip(mine_ids or [], mine_items or []))
    if lease_id is None:
        return None, mine, due or []
    item = Item(id=item_id, project=project, round_id=round_id, mask_id=mask_id, state=state,
                state_reason=state_reason, claims=claims)
    lease = Lease(id=lease_id, project=project, item=item, annotator=annotator, seed=seed, order=json.loads(order),
                  sides=json.loads(sides), protocol=project.ranking_protocol, layout_stage=project.layout_stage,
                  created_at=now, expires_at=params["expires_at"])
    lease.candidate_rows, lease.item_context = json.loads(rows) if rows else [], json.loads(context)
    return lease, mine, []


def _lease_take_orm(project: Project, annotator, exclude: list[int], *, gold_first: bool, now: dt.datetime,
                    check_due: bool) -> tuple[Lease | None, list[tuple[int, int]], list[int]]:
    """The portable twin of `_lease_take_pg`, through the ORM (SQLite: select_for_update is a no-op
    there, but the settings open every transaction with BEGIN IMMEDIATE, which serialises writers)."""
    rows = list(
        Lease.objects.filter(project=project, state=Lease.State.ACTIVE)
        .filter(Q(annotator=annotator, expires_at__gt=now) | Q(expires_at__lt=now) if check_due
                else Q(annotator=annotator, expires_at__gt=now))
        .order_by("id").values_list("id", "item_id", "annotator_id", "expires_at")
    )
    mine = [(lid, iid) for lid, iid, who, expires in rows if who == annotator.pk and expires > now]
    due = [iid for lid, iid, who, expires in rows if expires < now][:50]
    floor = max((lid for lid, iid in mine if iid in exclude), default=0)
    if due or len(mine) >= MAX_ACTIVE_LEASES or any(iid not in exclude and lid > floor for lid, iid in mine):
        return None, mine, due
    item = None
    for gold in (gold_first, not gold_first):
        qs = Item.objects.filter(project=project, state__in=QUEUE_STATES, is_gold=gold).exclude(pk__in=exclude)
        if not gold:
            qs = qs.filter(claims__lt=project.overlap)
        seen = Lease.objects.filter(item=OuterRef("pk"), annotator=annotator)
        item = qs.filter(~Exists(seen)).order_by("-claims", "id").select_for_update(skip_locked=True).first()
        if item is not None:
            break
    if item is None:
        return None, mine, []
    rows = list(item.candidates.order_by("id").values("id", "layout", "num_vertices", "num_faces"))
    seed = random.getrandbits(63)
    order, sides = _lease_order([c["id"] for c in rows], seed)
    lease = Lease.objects.create(
        project=project, item=item, annotator=annotator, seed=seed, order=order, sides=sides,
        protocol=project.ranking_protocol, layout_stage=project.layout_stage, created_at=now,
        expires_at=now + dt.timedelta(seconds=project.lease_seconds),
    )
    lease.candidate_rows, lease.item_context = rows, None  # the payload reads the context
    return lease, mine, []


def _annotator_lock(project: Project, annotator) -> None:
    """Serialise one annotator's next-item requests in a project (transaction-scoped), so that
    two at once cannot both take a lease past MAX_ACTIVE_LEASES. SQLite serialises writers anyway."""
    if sql.is_postgresql():
        sql.fetchone("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                     [f"annotation.lease_next:{project.pk}:{annotator.pk}"])


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

    On PostgreSQL that is three statements after BEGIN: the annotator's lock, _LEASE_SQL (the
    caller's leases, the pick, the lease) and the item's claim; due leases found on the way are
    expired first and the lease statement runs again. A new lease carries `candidate_rows` and
    `item_context` (read with the pick) so that the payload reads nothing again.
    """
    now = timezone.now()
    exclude = sorted({int(i) for i in exclude})
    daily_cap_check(project=project, annotator=annotator, now=now)
    rng = rng or random
    gold_first = project.gold_rate > 0 and rng.random() < project.gold_rate
    take = _lease_take_pg if sql.is_postgresql() else _lease_take_orm
    check_due, waited = True, False
    with transaction.atomic():
        _annotator_lock(project, annotator)
        while True:
            lease, mine, due = take(project, annotator, exclude, gold_first=gold_first, now=now, check_due=check_due)
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


# What a submission re-reads under the locks: the columns of item and lease that other
# transactions may have changed since the caller read them (the rest never changes).
_ITEM_LIVE = ("state", "state_reason", "is_gold", "gold_candidate_id", "judgements_done", "claims", "skips",
              "hard_case", "updated_at")
_LEASE_LIVE = ("state", "closed_at", "expires_at")
# FOR UPDATE OF i, l locks in that order (the item row, then its lease), as everywhere.
_LOCK_SQL = (f"SELECT {', '.join('i.' + c for c in _ITEM_LIVE)}, {', '.join('l.' + c for c in _LEASE_LIVE)}, "
             "(SELECT c.layout FROM modelzoo_candidate c WHERE c.id = %s AND c.item_id = i.id) "
             "FROM annotation_item i JOIN annotation_lease l ON l.id = %s WHERE i.id = %s FOR UPDATE OF i, l")


def _lock_item_and_lease(lease: Lease, *, read: Item | None = None,
                         winner: int | None = None) -> tuple[Item, Lease]:
    """Lock the lease's item, then the lease (the lock order everywhere). With `winner`, the item
    comes with `winner_layout`, that candidate's layout, read in the same statement.

    `read`: the item as the caller fetched it (with project and round), whose project and round
    the locked row reuses instead of joining them again. Then, on PostgreSQL, one written-out
    statement locks both rows and brings what may have changed since, into `read` and `lease`
    (a submission's path).
    """
    if read is not None and sql.is_postgresql():
        row = sql.fetchone(_LOCK_SQL, [winner, lease.pk, lease.item_id])
        if row is None:
            raise NotFound(f"You hold no lease {lease.pk} on item {lease.item_id}.")
        n = len(_ITEM_LIVE)
        for name, value in zip(_ITEM_LIVE, row[:n]):
            setattr(read, name, value)
        for name, value in zip(_LEASE_LIVE, row[n:-1]):
            setattr(lease, name, value)
        read.winner_layout_json = row[-1]  # as stored (text), for the judgement's copy
        read.winner_layout = json.loads(row[-1]) if row[-1] is not None else None
        return read, lease
    if read is None:
        # OF self: the joined project and round rows are read, not locked (locking the project
        # row would make every submission in a project wait for every other).
        items = Item.objects.select_for_update(of=("self",)).select_related("project", "round")
    else:
        items = Item.objects.select_for_update()
    if winner is not None:
        layout = Candidate.objects.filter(item_id=OuterRef("pk"), pk=winner).values("layout")[:1]
        items = items.annotate(winner_layout=Subquery(layout, output_field=JSONField()))
    item = items.get(pk=lease.item_id)
    if read is not None:
        item.project, item.round = read.project, read.round
    lease = Lease.objects.select_for_update().get(pk=lease.pk)
    return item, lease


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
    item, lease = _lock_item_and_lease(lease)
    if lease.state == Lease.State.EXPIRED:
        _lease_reclaim(item, lease, now)
        _item_settle(item, item.project)
    elif lease.state != Lease.State.ACTIVE:
        raise Conflict(f"Lease {lease.pk} is {lease.state}; ask for the next item.", code="lease_closed")
    lease.expires_at = now + dt.timedelta(seconds=item.project.lease_seconds)
    lease.save(update_fields=["state", "closed_at", "expires_at"])
    return lease


@transaction.atomic
def lease_release(*, lease: Lease) -> None:
    """Give the item back to the queue (for others: this annotator is not offered it again)."""
    item, lease = _lock_item_and_lease(lease)
    if lease.state != Lease.State.ACTIVE:
        return  # already closed: releasing twice is harmless
    _lease_close(lease, Lease.State.RELEASED, timezone.now())
    item.claims -= 1
    _item_settle(item, item.project)


def _lease_for_action(item: Item, lease: Lease, now: dt.datetime) -> bool:
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


# ------------------------------------------------------------------ judgements
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


# A new judgement, its comparisons and its lease's closing in one statement (PostgreSQL).
_JUDGEMENT_SQL = """
WITH j AS (
  INSERT INTO annotation_judgement (project_id, item_id, annotator_id, lease_id, key, supersedes_id, protocol, ranking,
                                    winner_id, rating, below_threshold, layout, model_layout, time_spent_ms,
                                    gold_correct, status, review_reason, created_at)
  VALUES (%(project)s, %(item)s, %(annotator)s, %(lease)s, %(key)s, NULL, %(protocol)s, %(ranking)s::jsonb,
          %(winner)s, %(rating)s, %(below)s, %(layout)s::jsonb, %(model_layout)s::jsonb, %(time_spent_ms)s,
          %(gold_correct)s::boolean, 'accepted', '', %(now)s)
  RETURNING id
), c AS (
  INSERT INTO annotation_comparison (judgement_id, "index", left_id, right_id, outcome, decided_ms)
  SELECT j.id, x.n, x.left_id, x.right_id, x.outcome, x.decided_ms
  FROM j, unnest(%(c_index)s::smallint[], %(c_left)s::bigint[], %(c_right)s::bigint[], %(c_outcome)s::text[],
                 %(c_ms)s::integer[]) AS x(n, left_id, right_id, outcome, decided_ms)
), l AS (
  UPDATE annotation_lease SET state = 'submitted', closed_at = %(now)s WHERE id = %(lease)s
)
SELECT id FROM j
"""


def _json_or_null(value) -> str | None:
    return None if value is None else json.dumps(value)


def _judgement_insert_pg(fields: dict, rows: list[dict], *, layout_json: str | None) -> Judgement:
    """Write a new judgement (not a correction) with `_JUDGEMENT_SQL`; returns it as the ORM would,
    comparisons loaded. `layout_json`: the winner's model layout as stored (copied as is)."""
    params = {
        "project": fields["project"].pk, "item": fields["item"].pk, "annotator": fields["annotator"].pk,
        "lease": fields["lease"].pk, "key": fields["key"], "protocol": fields["protocol"],
        "ranking": _json_or_null(fields["ranking"]), "winner": fields["winner_id"], "rating": fields["rating"],
        "below": fields["below_threshold"], "layout": _json_or_null(fields["layout"]), "model_layout": layout_json,
        "time_spent_ms": fields["time_spent_ms"], "gold_correct": fields["gold_correct"], "now": fields["created_at"],
        "c_index": [r["index"] for r in rows], "c_left": [r["left_id"] for r in rows],
        "c_right": [r["right_id"] for r in rows], "c_outcome": [r["outcome"] for r in rows],
        "c_ms": [r["decided_ms"] for r in rows],
    }
    (judgement_id,) = sql.fetchone(_JUDGEMENT_SQL, params)
    judgement = Judgement(id=judgement_id, **fields)
    judgement._state.adding, judgement._state.db = False, "default"
    judgement._prefetched_objects_cache = {
        "comparisons": [Comparison(judgement=judgement, **row) for row in rows]}
    return judgement


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
    try:
        with transaction.atomic():
            item, lease = _lock_item_and_lease(lease, read=item, winner=data.winner)
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
                _lease_for_action(item, lease, now)
            fields = dict(
                project=project, item=item, annotator=annotator, lease=lease, key=key, supersedes=supersedes,
                protocol=lease.protocol, ranking=data.ranking, winner_id=data.winner, rating=data.rating,
                below_threshold=data.rating < alpha, layout=layout, model_layout=item.winner_layout,
                time_spent_ms=data.time_spent_ms,
                gold_correct=(data.winner == item.gold_candidate_id) if item.is_gold and item.gold_candidate_id
                else None,
                created_at=now,
            )
            if supersedes is None and sql.is_postgresql():
                judgement = _judgement_insert_pg(fields, rows, layout_json=item.winner_layout_json)
                lease.state, lease.closed_at = Lease.State.SUBMITTED, now  # written with the judgement
            else:
                judgement = Judgement.objects.create(**fields)
                comparisons = Comparison.objects.bulk_create(Comparison(judgement=judgement, **row) for row in rows)
                judgement._prefetched_objects_cache = {"comparisons": comparisons}
                if supersedes is None:
                    _lease_close(lease, Lease.State.SUBMITTED, now)
            ratings = None
            if supersedes is not None:
                supersedes.status = Judgement.Status.SUPERSEDED
                supersedes.save(update_fields=["status"])
            else:
                item.judgements_done += 1
                if item.judgements_done == 1:
                    ratings = [data.rating]  # the only accepted judgement is this one
            _item_settle(item, project, ratings=ratings)
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


# ------------------------------------------------------------------ skip, flag
def _lease_end_by_action(*, item: Item, annotator, lease: Lease, state: str):
    """Lock item and lease, and close the lease in `state` (skip, flag).

    Returns (item, lease, now), or None when the lease already ended in `state` (a retry).
    """
    if lease.item_id != item.pk or lease.annotator_id != annotator.pk:
        raise NotFound(f"You hold no lease {lease.pk} on item {item.pk}.")
    item, lease = _lock_item_and_lease(lease)
    if lease.state == state:
        return None
    now = timezone.now()
    _lease_for_action(item, lease, now)
    _lease_close(lease, state, now)
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
        _item_settle(item, item.project)
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
        _save_counters(item)
    return flag


# ------------------------------------------------------------------ lead actions
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
    _item_settle(item, item.project)
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
    _item_settle(item, item.project)
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


def _glb_check(data: bytes) -> None:
    if len(data) < 20 or data[:4] != b"glTF":
        raise ValidationFailed("Not a GLB file: it must start with the 'glTF' magic (glTF 2.0 binary).",
                               code="invalid_glb")
    _, version, length = struct.unpack_from("<4sII", data, 0)
    if version != 2:
        raise ValidationFailed(f"GLB version {version}; only glTF 2.0 is accepted.", code="invalid_glb")
    if length != len(data):
        raise ValidationFailed(f"GLB header says {length} bytes but {len(data)} arrived: truncated upload?",
                               code="invalid_glb")


def artist_mesh_upload(*, item: Item, uploaded_by, data: bytes, note: str = "") -> tuple[ArtistMesh, bool]:
    """Store an artist's GLB for a hard case (content-addressed); the item is then done."""
    if len(data) > ARTIST_MESH_MAX_BYTES:
        raise ValidationFailed(f"The mesh is larger than {ARTIST_MESH_MAX_BYTES // 2**20} MB.", code="too_large")
    _glb_check(data)
    sha = hashlib.sha256(data).hexdigest()
    if not item.hard_case:
        raise Conflict(f"Item {item.pk} is not a hard case; artists model only hard cases.", code="not_hard_case")
    name = store_content_addressed(folder="artist", sha256=sha, extension="glb", data=data)
    with transaction.atomic():
        item = Item.objects.select_for_update(of=("self",)).select_related("project", "round").get(pk=item.pk)
        mesh, created = ArtistMesh.objects.get_or_create(
            item=item, sha256=sha,
            defaults={"uploaded_by": uploaded_by, "file": name, "size_bytes": len(data), "note": note[:2000]},
        )
        if item.state == ItemState.HARD_CASE:
            item_transition(item=item, to=ItemState.DONE, reason="artist mesh")
    return mesh, created
