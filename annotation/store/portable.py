"""The queue's store through the ORM: correct on every database Django supports, and what SQLite
(`make run` on a laptop) gets. `PostgresStore` overrides the hot paths with written-out statements;
tests/annotation/test_store.py runs both through the same scenarios.

Locking on SQLite: select_for_update is a no-op there, but the settings open every transaction
with BEGIN IMMEDIATE, which serialises writers; `annotator_lock` has nothing to add.
"""
from __future__ import annotations

import datetime as dt
import random
from typing import NamedTuple

from django.db import DatabaseError, connection
from django.db.models import Exists, F, JSONField, OuterRef, Q, Subquery

from annotation.models import MAX_ACTIVE_LEASES, QUEUE_STATES, ArtistMesh, Comparison, Item, Judgement, Lease
from annotation.ordering import lease_order
from engine.models import Membership, Project
from modelzoo.models import Candidate


class LeaseTake(NamedTuple):
    """What one try of the lease statement found."""

    lease: Lease | None  # the new lease (its item locked, its claim not counted yet), or None
    mine: list[tuple[int, int]]  # the caller's active leases as (lease id, item id), oldest first
    due: list[int]  # item ids with due leases (only when no lease was taken)


# What a submission re-reads under the locks: the columns of item and lease that other
# transactions may have changed since the caller read them (the rest never changes).
ITEM_LIVE = ("state", "state_reason", "is_gold", "gold_candidate_id", "judgements_done", "claims", "skips",
             "hard_case", "updated_at")
LEASE_LIVE = ("state", "closed_at", "expires_at")


class PortableStore:
    """Every written-out read and write of the annotation queue, as ORM calls."""

    vendor = "portable"

    # ------------------------------------------------------------------ access (selectors)
    def project_with_roles(self, user, slug: str) -> tuple[Project | None, set[str]]:
        """The project `slug` and the roles `user` holds in it (the access decision is the caller's)."""
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            return None, set()
        return project, set(Membership.objects.filter(project=project, user=user).values_list("role", flat=True))

    def item_with_roles(self, user, item_id: int, *, lease_id: int | None) -> tuple[Item | None, set[str]]:
        """The item with its round and project loaded, and the user's roles in that project. With
        `lease_id`, the item carries `caller_lease = (lease_id, the caller's lease of that id on
        this item, or None)`."""
        item = Item.objects.select_related("project", "round").filter(pk=item_id).first()
        if item is None:
            return None, set()
        held = set(Membership.objects.filter(project_id=item.project_id, user=user).values_list("role", flat=True))
        if lease_id is not None:
            item.caller_lease = (lease_id, self.lease_of_annotator(user.pk, item.pk, lease_id))
        return item, held

    def lease_of_annotator(self, annotator_id: int, item_id: int, lease_id: int) -> Lease | None:
        return Lease.objects.filter(pk=lease_id, annotator_id=annotator_id, item_id=item_id).first()

    def item_context(self, item_id: int) -> tuple[dict, list[dict]]:
        """What the next-item payload shows of an item's round, mask and image, and its candidates'
        rows (`candidate_rows`) in id order."""
        item = Item.objects.select_related("round", "mask", "mask__image").get(pk=item_id)
        mask, image = item.mask, item.mask.image
        context = {
            "quality_threshold": item.round.quality_threshold,
            "mask": {"id": mask.pk, "label": mask.label, "bbox": mask.bbox, "rle_counts": mask.rle_counts},
            "image": {"id": image.pk, "width": image.width, "height": image.height,
                      "thumbnail": image.thumbnail.name, "depth": image.depth.name, "intrinsics": image.intrinsics},
        }
        return context, candidate_rows(item.pk)

    # ------------------------------------------------------------------ counts
    def judgements_since(self, *, project_id: int, annotator_id: int, since: dt.datetime) -> int:
        """The annotator's first-time judgements in the project since `since` (corrections not counted)."""
        return Judgement.objects.filter(project_id=project_id, annotator_id=annotator_id, created_at__gte=since,
                                        supersedes__isnull=True).count()

    def accepted_ratings(self, item_id: int) -> list[int]:
        return list(Judgement.objects.filter(item_id=item_id, status=Judgement.Status.ACCEPTED)
                    .values_list("rating", flat=True))

    def artist_mesh_exists(self, item_id: int) -> bool:
        return ArtistMesh.objects.filter(item_id=item_id).exists()

    # ------------------------------------------------------------------ leases
    def annotator_lock(self, *, project_id: int, annotator_id: int) -> None:
        """Serialise one annotator's next-item requests in a project for the transaction."""

    def lease_take(self, project: Project, annotator, exclude: list[int], *, gold_first: bool, now: dt.datetime,
                   check_due: bool) -> LeaseTake:
        """Under the annotator's lock: read the caller's active leases and the project's due ones,
        and only if the caller may take a new lease (none held that it should get back, fewer than
        MAX_ACTIVE_LEASES, no due lease to free first) pick an item, gold first or not, and lease it
        with a freshly drawn candidate order. The new lease carries `candidate_rows` (and may carry
        `item_context`), so that the payload reads nothing again."""
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
            return LeaseTake(None, mine, due)
        item = None
        for gold in (gold_first, not gold_first):
            items = Item.objects.filter(project=project, state__in=QUEUE_STATES, is_gold=gold).exclude(pk__in=exclude)
            if not gold:
                items = items.filter(claims__lt=project.overlap)
            seen = Lease.objects.filter(item=OuterRef("pk"), annotator=annotator)
            item = (items.filter(~Exists(seen)).order_by("-claims", F("selection_key").asc(nulls_last=True), "id")
                    .select_for_update(skip_locked=True).first())
            if item is not None:
                break
        if item is None:
            return LeaseTake(None, mine, [])
        rows = candidate_rows(item.pk)
        seed = random.getrandbits(63)
        order, sides = lease_order([c["id"] for c in rows], seed)
        lease = Lease.objects.create(
            project=project, item=item, annotator=annotator, seed=seed, order=order, sides=sides,
            protocol=project.ranking_protocol, layout_stage=project.layout_stage, created_at=now,
            expires_at=now + dt.timedelta(seconds=project.lease_seconds),
        )
        lease.candidate_rows = rows
        return LeaseTake(lease, mine, [])

    def item_and_lease_lock(self, lease: Lease, *, read: Item | None = None,
                            winner: int | None = None) -> tuple[Item, Lease]:
        """Lock the lease's item, then the lease (the lock order everywhere). With `winner`, the
        item comes with `winner_layout` (that candidate's layout) and `winner_layout_json` (as
        stored, for the judgement's copy).

        `read`: the item as the caller fetched it (with project and round): the locked item reuses
        its project and round instead of joining them again.
        """
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
        if winner is not None:
            item.winner_layout_json = None  # the ORM copies the parsed layout
        lease = Lease.objects.select_for_update().get(pk=lease.pk)
        return item, lease

    # ------------------------------------------------------------------ writes
    def judgement_insert(self, fields: dict, rows: list[dict], *, layout_json: str | None) -> Judgement:
        """Write a new judgement (not a correction), its comparisons, and close its lease as
        submitted; returns the judgement with its comparisons loaded. `layout_json`: the winner's
        model layout as stored (the PostgreSQL statement copies it as is)."""
        judgement = Judgement.objects.create(**fields)
        comparisons = Comparison.objects.bulk_create(Comparison(judgement=judgement, **row) for row in rows)
        judgement._prefetched_objects_cache = {"comparisons": comparisons}
        lease = fields["lease"]
        lease.state, lease.closed_at = Lease.State.SUBMITTED, fields["created_at"]
        lease.save(update_fields=["state", "closed_at"])
        return judgement

    def item_update(self, item: Item, names: tuple[str, ...]) -> None:
        """`item.save(update_fields=names)` as one written-out UPDATE (the ORM would build the same
        statement at about ten times the Python cost, on every lease and every judgement)."""
        statement, fields = _item_update_statement(names)
        params = [f.get_db_prep_save(getattr(item, f.attname), connection) for f in fields]
        with connection.cursor() as cur:
            cur.execute(statement, [*params, item.pk])
            updated = cur.rowcount
        item_updated_check(item, updated)


def candidate_rows(item_id: int) -> list[dict]:
    """What the next-item payload shows of an item's candidates, in id order: id, layout, num_vertices,
    num_faces, num_gaussians, textured, and whether it has a mesh and a splat (the PostgreSQL
    store's CANDIDATES_SQL builds the same objects)."""
    rows = Candidate.objects.filter(item_id=item_id).order_by("id").values(
        "id", "layout", "num_vertices", "num_faces", "num_gaussians", "textured", "glb", "splat_compact")
    return [{"id": r["id"], "layout": r["layout"], "num_vertices": r["num_vertices"], "num_faces": r["num_faces"],
             "num_gaussians": r["num_gaussians"], "textured": r["textured"], "mesh": bool(r["glb"]),
             "splat": bool(r["splat_compact"])} for r in rows]


_UPDATES: dict[tuple[str, ...], tuple[str, list]] = {}


def _item_update_statement(names: tuple[str, ...]) -> tuple[str, list]:
    """The UPDATE of these item fields, and the fields, built once per set of names."""
    cached = _UPDATES.get(names)
    if cached is None:
        fields = [Item._meta.get_field(name) for name in names]
        sets = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
        cached = _UPDATES[names] = (f"UPDATE {Item._meta.db_table} SET {sets} WHERE id = %s", fields)
    return cached


def item_updated_check(item: Item, updated: int) -> None:
    if updated != 1:
        raise DatabaseError(f"Item {item.pk} was not updated: it no longer exists.")
