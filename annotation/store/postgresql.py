"""The queue's store on PostgreSQL: the hot paths (next-item, submit) as written-out statements.

Building a statement with the ORM costs about half a millisecond of Python, more than the rest of
a next-item or a submission; these are written once and run through `engine.db.cursor()` (a kept,
server-side-binding cursor: psycopg prepares each after a few runs, and PostgreSQL no longer
parses and plans it). Each method answers exactly as its `PortableStore` twin, which it overrides;
what is not hot stays with the ORM (inherited).
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import random

from django.db import connection

from annotation.models import MAX_ACTIVE_LEASES, Comparison, Item, Judgement, Lease
from annotation.ordering import lease_draw
from annotation.store.portable import (
    ITEM_LIVE,
    LEASE_LIVE,
    LeaseTake,
    PortableStore,
    _item_update_statement,
    item_updated_check,
)
from engine import db
from engine.errors import NotFound
from engine.models import Project, Round

# ------------------------------------------------------------------ row mapping


def float_array(values) -> str:
    """A PostgreSQL float8[] literal, for a parameter cast in the statement (`%s::float8[]`):
    psycopg adapts a long list element by element, a string in one go. repr() round-trips."""
    return "{" + ",".join(map(repr, values)) + "}"


_BOOL = {True: "t", False: "f"}


def bool_array(values) -> str:
    """A PostgreSQL bool[] literal (`%s::bool[]`), as `float_array`."""
    return "{" + ",".join(map(_BOOL.__getitem__, values)) + "}"


def columns(model, alias: str = "") -> str:
    """The model's concrete columns, quoted, in field order (the order `from_db` wants)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + connection.ops.quote_name(f.column) for f in model._meta.concrete_fields)


_FIELDS: dict = {}


def from_row(model, values):
    """A model instance from a row of `columns(model)` (no query, no deferred fields); values
    pass through their fields' `from_db_value` as the ORM does (JSON arrives as text)."""
    fields = _FIELDS.get(model)
    if fields is None:
        concrete = model._meta.concrete_fields
        fields = _FIELDS[model] = ([f.attname for f in concrete],
                                   [(k, f) for k, f in enumerate(concrete) if hasattr(f, "from_db_value")])
    names, converted = fields
    if converted:
        values = list(values)
        for k, field in converted:
            values[k] = field.from_db_value(values[k], None, connection)
    return model.from_db(connection.alias, names, values)


def _json_or_null(value) -> str | None:
    return None if value is None else json.dumps(value)


# ------------------------------------------------------------------ statements
@functools.cache
def _project_sql() -> str:
    return (f"SELECT {columns(Project, 'p')}, (SELECT array_agg(m.role) FROM engine_membership m "
            "WHERE m.project_id = p.id AND m.user_id = %s) FROM engine_project p WHERE p.slug = %s")


@functools.cache
def _item_sql() -> str:
    return (f"SELECT {columns(Item, 'i')}, {columns(Round, 'r')}, {columns(Project, 'p')}, "
            "(SELECT array_agg(m.role) FROM engine_membership m WHERE m.project_id = p.id AND m.user_id = %(user)s), "
            f"{columns(Lease, 'l')} "
            "FROM annotation_item i JOIN engine_round r ON r.id = i.round_id "
            "JOIN engine_project p ON p.id = i.project_id "
            "LEFT JOIN annotation_lease l ON l.id = %(lease)s AND l.item_id = i.id AND l.annotator_id = %(user)s "
            "WHERE i.id = %(item)s")


@functools.cache
def _lease_sql() -> str:
    return f"SELECT {columns(Lease)} FROM annotation_lease WHERE id = %s AND annotator_id = %s AND item_id = %s"


# What the next-item payload shows of an item's round, mask and image, and its candidates
# (`PortableStore.item_context` builds the same objects through the ORM). {item} is the item's alias.
CONTEXT_SQL = """(SELECT jsonb_build_object(
     'quality_threshold', r.quality_threshold,
     'mask', jsonb_build_object('id', m.id, 'label', m.label, 'bbox', m.bbox, 'rle_counts', m.rle_counts),
     'image', jsonb_build_object('id', im.id, 'width', im.width, 'height', im.height, 'thumbnail', im.thumbnail,
                                 'depth', im.depth, 'intrinsics', im.intrinsics))
   FROM engine_round r, engine_objectmask m, engine_image im
   WHERE r.id = {item}.round_id AND m.id = {item}.mask_id AND im.id = m.image_id)"""
CANDIDATES_SQL = """(SELECT jsonb_agg(jsonb_build_object('id', c.id, 'layout', c.layout, 'num_vertices', c.num_vertices,
                                       'num_faces', c.num_faces, 'num_gaussians', c.num_gaussians,
                                       'textured', c.textured, 'mesh', c.glb <> '', 'splat', c.splat_compact <> '')
                     ORDER BY c.id)
   FROM modelzoo_candidate c WHERE c.item_id = {item}.id)"""
ITEM_CONTEXT_SQL = (f"SELECT {CONTEXT_SQL.format(item='i')}, {CANDIDATES_SQL.format(item='i')} "
                    "FROM annotation_item i WHERE i.id = %s")

# One branch of the pick: `claims < cap` is an index range of item_lease_idx (project, is_gold,
# claims DESC, selection_key, id; PostgreSQL sorts NULL keys last), partial on the same state
# list; the unique (item, annotator) lease index answers NOT EXISTS. Rows another transaction holds are skipped, not waited for.
_POOL_SQL = """SELECT * FROM (
    SELECT i.id, i.round_id, i.mask_id, i.state, i.state_reason, i.claims FROM annotation_item i
    WHERE EXISTS (SELECT 1 FROM go) AND i.project_id = %(project)s AND i.is_gold = {gold}
      AND i.state IN ('ready', 'in_progress') AND i.claims < {cap}
      AND NOT (i.id = ANY(%(exclude)s::bigint[]))
      AND NOT EXISTS (SELECT 1 FROM annotation_lease l WHERE l.item_id = i.id AND l.annotator_id = %(annotator)s)
    ORDER BY i.claims DESC, i.selection_key, i.id
    LIMIT 1
    FOR UPDATE OF i SKIP LOCKED) AS {name}"""

# The lease statement, run under the annotator's lock: reads the caller's active leases and the
# project's due ones, and only if the caller may take a new lease (none held that it should get
# back, fewer than MAX_ACTIVE_LEASES, no due lease to free first) picks an item from the preferred
# pool, else from the other (UNION ALL under LIMIT 1 runs the second branch only when the first
# finds nothing), draws the candidate order and inserts the lease. One row comes back, with the
# new lease (or NULLs) and what the caller needs otherwise.
LEASE_SQL = f"""
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


def lease_sql_params(project: Project, annotator, exclude: list[int], *, gold_first: bool, seed: int,
                     now: dt.datetime, check_due: bool = True) -> dict:
    """The parameters of LEASE_SQL (bench/annotation_queue.py explains the statement with them)."""
    keys, flips = lease_draw(seed)
    uncapped = 2**31 - 1  # gold items go to every annotator once, whatever the overlap
    return {
        "project": project.pk, "annotator": annotator.pk, "exclude": exclude, "now": now, "check_due": check_due,
        "max_leases": MAX_ACTIVE_LEASES, "gold_first": gold_first,
        "cap_first": uncapped if gold_first else project.overlap,
        "cap_second": project.overlap if gold_first else uncapped,
        "keys": float_array(keys), "flips": bool_array(flips), "seed": seed,
        "protocol": project.ranking_protocol,
        "layout_stage": project.layout_stage, "expires_at": now + dt.timedelta(seconds=project.lease_seconds),
    }


# FOR UPDATE OF i, l locks in that order (the item row, then its lease), as everywhere.
_LOCK_SQL = (f"SELECT {', '.join('i.' + c for c in ITEM_LIVE)}, {', '.join('l.' + c for c in LEASE_LIVE)}, "
             "(SELECT c.layout FROM modelzoo_candidate c WHERE c.id = %s AND c.item_id = i.id) "
             "FROM annotation_item i JOIN annotation_lease l ON l.id = %s WHERE i.id = %s FOR UPDATE OF i, l")

# A new judgement, its comparisons and its lease's closing in one statement.
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


class PostgresStore(PortableStore):
    """The queue's hot paths as written-out, prepared statements."""

    vendor = "postgresql"

    def project_with_roles(self, user, slug: str) -> tuple[Project | None, set[str]]:
        row = db.fetchone(_project_sql(), [user.pk, slug])
        if row is None:
            return None, set()
        return from_row(Project, row[:-1]), set(row[-1] or ())

    def item_with_roles(self, user, item_id: int, *, lease_id: int | None) -> tuple[Item | None, set[str]]:
        row = db.fetchone(_item_sql(), {"user": user.pk, "item": item_id, "lease": lease_id})
        if row is None:
            return None, set()
        n_item, n_round, n_project = (len(m._meta.concrete_fields) for m in (Item, Round, Project))
        item = from_row(Item, row[:n_item])
        item.round = from_row(Round, row[n_item:n_item + n_round])
        item.project = from_row(Project, row[n_item + n_round:n_item + n_round + n_project])
        roles_held, lease_row = row[n_item + n_round + n_project], row[n_item + n_round + n_project + 1:]
        if lease_id is not None:
            item.caller_lease = (lease_id, from_row(Lease, lease_row) if lease_row[0] is not None else None)
        return item, set(roles_held or ())

    def lease_of_annotator(self, annotator_id: int, item_id: int, lease_id: int) -> Lease | None:
        row = db.fetchone(_lease_sql(), [lease_id, annotator_id, item_id])
        return from_row(Lease, row) if row else None

    def item_context(self, item_id: int) -> tuple[dict, list[dict]]:
        context, rows = db.fetchone(ITEM_CONTEXT_SQL, [item_id])
        return json.loads(context), json.loads(rows) if rows else []

    def judgements_since(self, *, project_id: int, annotator_id: int, since: dt.datetime) -> int:
        # judgement_annotator_idx; runs on every lease and judgement of a project with a daily cap
        return db.fetchone("SELECT count(*) FROM annotation_judgement WHERE project_id = %s AND annotator_id = %s "
                           "AND created_at >= %s AND supersedes_id IS NULL", [project_id, annotator_id, since])[0]

    def accepted_ratings(self, item_id: int) -> list[int]:
        # every completed item of an overlap k > 1 asks
        return db.fetchone("SELECT array_agg(rating) FROM annotation_judgement WHERE item_id = %s "
                           "AND status = 'accepted'", [item_id])[0] or []

    def artist_mesh_exists(self, item_id: int) -> bool:
        # every hard case at its last judgement asks
        return db.fetchone("SELECT EXISTS (SELECT 1 FROM annotation_artistmesh WHERE item_id = %s)", [item_id])[0]

    def annotator_lock(self, *, project_id: int, annotator_id: int) -> None:
        # Transaction-scoped, so that two next-item requests of one annotator at once cannot both
        # take a lease past MAX_ACTIVE_LEASES.
        db.fetchone("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    [f"annotation.lease_next:{project_id}:{annotator_id}"])

    def lease_take(self, project: Project, annotator, exclude: list[int], *, gold_first: bool, now: dt.datetime,
                   check_due: bool) -> LeaseTake:
        seed = random.getrandbits(63)
        params = lease_sql_params(project, annotator, exclude, gold_first=gold_first, seed=seed, now=now,
                                  check_due=check_due)
        (lease_id, item_id, order, sides, round_id, mask_id, state, state_reason, claims, rows, context,
         mine_ids, mine_items, due) = db.fetchone(LEASE_SQL, params)
        mine = list(zip(mine_ids or [], mine_items or []))
        if lease_id is None:
            return LeaseTake(None, mine, due or [])
        item = Item(id=item_id, project=project, round_id=round_id, mask_id=mask_id, state=state,
                    state_reason=state_reason, claims=claims)
        lease = Lease(id=lease_id, project=project, item=item, annotator=annotator, seed=seed,
                      order=json.loads(order), sides=json.loads(sides), protocol=project.ranking_protocol,
                      layout_stage=project.layout_stage, created_at=now, expires_at=params["expires_at"])
        lease.candidate_rows, lease.item_context = json.loads(rows) if rows else [], json.loads(context)
        return LeaseTake(lease, mine, [])

    def item_and_lease_lock(self, lease: Lease, *, read: Item | None = None,
                            winner: int | None = None) -> tuple[Item, Lease]:
        """With `read` (a submission's path), one statement locks both rows and brings what may
        have changed since into `read` and `lease`; otherwise as the ORM does it."""
        if read is None:
            return super().item_and_lease_lock(lease, winner=winner)
        row = db.fetchone(_LOCK_SQL, [winner, lease.pk, lease.item_id])
        if row is None:
            raise NotFound(f"You hold no lease {lease.pk} on item {lease.item_id}.")
        n = len(ITEM_LIVE)
        for name, value in zip(ITEM_LIVE, row[:n]):
            setattr(read, name, value)
        for name, value in zip(LEASE_LIVE, row[n:-1]):
            setattr(lease, name, value)
        read.winner_layout_json = row[-1]  # as stored (text), for the judgement's copy
        read.winner_layout = json.loads(row[-1]) if row[-1] is not None else None
        return read, lease

    def judgement_insert(self, fields: dict, rows: list[dict], *, layout_json: str | None) -> Judgement:
        if layout_json is None:
            layout_json = _json_or_null(fields["model_layout"])
        params = {
            "project": fields["project"].pk, "item": fields["item"].pk, "annotator": fields["annotator"].pk,
            "lease": fields["lease"].pk, "key": fields["key"], "protocol": fields["protocol"],
            "ranking": _json_or_null(fields["ranking"]), "winner": fields["winner_id"], "rating": fields["rating"],
            "below": fields["below_threshold"], "layout": _json_or_null(fields["layout"]),
            "model_layout": layout_json, "time_spent_ms": fields["time_spent_ms"],
            "gold_correct": fields["gold_correct"], "now": fields["created_at"],
            "c_index": [r["index"] for r in rows], "c_left": [r["left_id"] for r in rows],
            "c_right": [r["right_id"] for r in rows], "c_outcome": [r["outcome"] for r in rows],
            "c_ms": [r["decided_ms"] for r in rows],
        }
        (judgement_id,) = db.fetchone(_JUDGEMENT_SQL, params)
        judgement = Judgement(id=judgement_id, **fields)
        judgement._state.adding, judgement._state.db = False, "default"
        judgement._prefetched_objects_cache = {
            "comparisons": [Comparison(judgement=judgement, **row) for row in rows]}
        lease = fields["lease"]
        lease.state, lease.closed_at = Lease.State.SUBMITTED, fields["created_at"]  # written with the judgement
        return judgement

    def item_update(self, item: Item, names: tuple[str, ...]) -> None:
        statement, fields = _item_update_statement(names)
        # psycopg adapts these columns' Python values (int, str, bool, datetime) as they are
        cur = db.cursor()
        cur.execute(statement, [*[getattr(item, f.attname) for f in fields], item.pk])
        item_updated_check(item, cur.rowcount)
