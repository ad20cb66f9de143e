"""Reads of annotation, and the few places that decide who may see or do what.

Every view fetches its objects here: `item_get_for_user`, `lease_get_for_annotator`,
`judgement_get_for_user` check membership and role through `engine.selectors.project_get_for_user`,
so no view does its own permission check. Objects in projects the user is not a member of
are reported as not found.
"""
from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.utils import timezone

from annotation.models import QUEUE_STATES, Comparison, Item, ItemState, Judgement, Lease
from annotation.store import queue_store
from engine.errors import NotFound
from engine.models import RATING_MAX, RATING_MIN, Image, JudgedRepresentation, Project, Role
from engine.selectors import image_get, project_access_decide, project_get_for_user
from modelzoo.models import Candidate

ANNOTATOR = [Role.ANNOTATOR]
LEAD = [Role.LEAD]
ARTIST = [Role.ARTIST, Role.LEAD]

QUALITY_LABELS = {"1": "unusable", "2": "poor", "3": "acceptable", "4": "good", "5": "excellent"}


def project_get_for_member(user, slug: str, *, roles: Iterable[str] | None = None) -> Project:
    """`engine.selectors.project_get_for_user` for the queue's hot path (next-item): the project
    and the user's roles in it through the queue's store (on PostgreSQL one written-out statement:
    the ORM's statement building costs more than the rest of the request's reads)."""
    if not user.is_authenticated:
        return project_get_for_user(user, slug, roles=roles)
    project, held = queue_store().project_with_roles(user, slug)
    return project_access_decide(user, project, held, slug, roles)


_BIGINT = range(-(2**63), 2**63)


def item_get_for_user(user, item_id: int, *, roles: Iterable[str], lease_id=None) -> Item:
    """The item, with its project (carrying `user_roles`) and round, if the user holds one of `roles`.

    Every submission pays this read; with `lease_id` (the id the request names, not yet
    validated) it also reads the caller's lease of that id on this item, for `lease_get_for_item`.
    """
    if not user.is_authenticated:
        raise NotFound(f"No item {item_id} in a project you are a member of.")
    lease_id = lease_id if type(lease_id) is int and lease_id in _BIGINT else None
    item, held = queue_store().item_with_roles(user, item_id, lease_id=lease_id)
    if item is None:
        raise NotFound(f"No item {item_id} in a project you are a member of.")
    try:
        item.project = project_access_decide(user, item.project, held, item.project.slug, roles)
    except NotFound:
        raise NotFound(f"No item {item_id} in a project you are a member of.") from None
    return item


def lease_get_for_annotator(user, lease_id: int) -> Lease:
    """The caller's own lease; anyone else's is reported as not found."""
    lease = Lease.objects.select_related("project").filter(pk=lease_id, annotator_id=user.pk).first()
    if lease is None:
        raise NotFound(f"You hold no lease {lease_id}.")
    project_get_for_user(user, lease.project.slug, roles=ANNOTATOR)
    return lease


def lease_get_for_item(user, item: Item, lease_id: int) -> Lease:
    """The caller's own lease on `item` (already fetched through `item_get_for_user`)."""
    read = getattr(item, "caller_lease", None)
    if read is not None and read[0] == lease_id:  # read with the item
        lease = read[1]
    else:
        lease = queue_store().lease_of_annotator(user.pk, item.pk, lease_id)
    if lease is None:
        raise NotFound(f"You hold no lease {lease_id} on item {item.pk}.")
    lease.project = item.project
    return lease


def judgement_get_for_user(user, judgement_id: int, *, lead_only: bool = False) -> Judgement:
    """A judgement the user may see: their own (as annotator) or any in a project they lead."""
    judgement = Judgement.objects.select_related("project").filter(pk=judgement_id).first()
    if judgement is None:
        raise NotFound(f"No judgement {judgement_id} that you can see.")
    try:
        project = project_get_for_user(user, judgement.project.slug,
                                       roles=LEAD if lead_only else ANNOTATOR + LEAD)
    except NotFound:
        raise NotFound(f"No judgement {judgement_id} that you can see.") from None
    if Role.LEAD not in project.user_roles and judgement.annotator_id != user.pk:
        raise NotFound(f"No judgement {judgement_id} that you can see.")
    return judgement


def judgement_list(*, project: Project, user) -> QuerySet[Judgement]:
    """Judgements of the project the user may see: all for a lead, their own for an annotator."""
    qs = (
        Judgement.objects.filter(project=project)
        .select_related("annotator")
        .prefetch_related("comparisons")
        .order_by("-id")
    )
    if Role.LEAD not in project.user_roles:
        qs = qs.filter(annotator=user)
    return qs


def review_queue(*, project: Project, annotator_username: str | None = None,
                 status: str | None = Judgement.Status.ACCEPTED) -> QuerySet[Judgement]:
    qs = Judgement.objects.filter(project=project).select_related("annotator").prefetch_related("comparisons")
    if annotator_username:
        qs = qs.filter(annotator__username=annotator_username)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def artist_queue(*, project: Project) -> QuerySet[Item]:
    """The hard cases artists should model: not a recovery item (artists model the hard case it
    judges again), and not a hard case whose recovery is still being generated or judged."""
    recovering = Item.objects.filter(recovers=OuterRef("pk"), state__in=[ItemState.WAITING, *QUEUE_STATES])
    return (
        Item.objects.filter(project=project, state=ItemState.HARD_CASE, recovers__isnull=True)
        .exclude(Exists(recovering))
        .select_related("mask", "mask__image")
        .order_by("id")
    )


def item_progress(*, project: Project) -> dict:
    counts = dict(
        Item.objects.filter(project=project).values_list("state").annotate(n=Count("id")).values_list("state", "n")
    )
    return {
        "items": {state: counts.get(state, 0) for state in ItemState.values},
        "judgements": Judgement.objects.filter(project=project, status=Judgement.Status.ACCEPTED).count(),
        "active_leases": Lease.objects.filter(project=project, state=Lease.State.ACTIVE,
                                              expires_at__gt=timezone.now()).count(),
    }


def scene_objects_for_user(user, *, slug: str, image_id: int) -> tuple[Project, Image, list[dict]]:
    """The scene of one photo for a member of its project (any role): every judged object, the
    winner of its latest accepted judgement at the layout the annotator set (layout stage) or
    else the one the model proposed. Returns (project, image, objects)."""
    project = project_get_for_user(user, slug)
    image = image_get(project, image_id)
    judgements = (
        Judgement.objects.filter(project=project, item__mask__image=image, status=Judgement.Status.ACCEPTED)
        .select_related("winner", "item__mask")
        .order_by("item_id", "-created_at", "-id")
    )
    objects, seen = [], set()
    for j in judgements:
        if j.item_id in seen:
            continue
        seen.add(j.item_id)
        c = j.winner
        objects.append({
            "item": j.item_id, "label": j.item.mask.label, "rating": j.rating,
            "layout": j.layout or c.layout,
            "candidate": {"id": c.pk, "glb_url": f"/api/v1/candidates/{c.pk}/glb" if c.glb else None,
                          "glb_compact_url": f"/api/v1/candidates/{c.pk}/glb-compact" if c.glb else None,
                          "splat_url": f"/api/v1/candidates/{c.pk}/splat" if c.splat_compact else None,
                          "splat_ply_url": f"/api/v1/candidates/{c.pk}/splat-ply" if c.splat else None,
                          "splat_format": "spz" if c.splat_compact else None,
                          "textured": c.textured, "num_gaussians": c.num_gaussians, "layout": c.layout},
        })
    return project, image, objects


# ------------------------------------------------------------------ the item payload
def _layout_of(layout) -> dict:
    layout = layout or {}
    return {k: layout.get(k) for k in ("rotation", "translation", "scale")}


def drawn_as(judged: str, *, mesh: bool, splat: bool) -> str:
    """The representation a candidate is drawn in when the project judges `judged`: that one when the
    candidate has it, else the one it has (a splat-only candidate under "geometry" or "textured" is
    drawn as its splat; a mesh-only one under "splat" as its textured mesh)."""
    if judged == JudgedRepresentation.SPLAT:
        return judged if splat or not mesh else JudgedRepresentation.TEXTURED
    return judged if mesh or not splat else JudgedRepresentation.SPLAT


def candidate_payload(row: dict, judged: str) -> dict:
    """One candidate of the next-item payload, from a store's candidate row."""
    cid, mesh, splat = row["id"], row["mesh"], row["splat"]
    return {
        "id": cid,
        "glb_url": f"/api/v1/candidates/{cid}/glb" if mesh else None,
        "glb_compact_url": f"/api/v1/candidates/{cid}/glb-compact" if mesh else None,
        "splat_url": f"/api/v1/candidates/{cid}/splat" if splat else None,
        "splat_format": "spz" if splat else None,
        "preview_url": f"/api/v1/candidates/{cid}/preview",
        "layout": _layout_of(row["layout"]),
        "num_vertices": row["num_vertices"],
        "num_faces": row["num_faces"],
        "num_gaussians": row["num_gaussians"],
        "textured": row["textured"],
        "drawn_as": drawn_as(judged, mesh=mesh, splat=splat),
    }


def lease_payload(lease: Lease, *, project: Project | None = None) -> dict:
    """The next-item response of docs/annotation-api.md, for `lease` (in `project`, if given).

    A lease fresh from `services.lease_next` carries `candidate_rows` (and on PostgreSQL
    `item_context`), read with the pick; otherwise they are read here.
    """
    if project is None:
        project = lease.project
    context, rows = getattr(lease, "item_context", None), getattr(lease, "candidate_rows", None)
    if context is None or rows is None:
        context, rows = queue_store().item_context(lease.item_id)
    mask, image = context["mask"], context["image"]
    by_id = {c["id"]: c for c in rows}
    seconds = max(0, round((lease.expires_at - timezone.now()).total_seconds()))
    slug = project.slug
    judged = project.judged_representation
    image_base = f"/api/v1/projects/{slug}/images/{image['id']}"
    return {
        "lease": {"id": lease.pk, "expires_at": lease.expires_at, "seconds": seconds},
        "item": {
            "id": lease.item_id,
            "protocol": lease.protocol,
            "layout_stage": lease.layout_stage,
            "quality_scale": {"min": RATING_MIN, "max": RATING_MAX, "threshold": context["quality_threshold"],
                              "labels": QUALITY_LABELS},
            "image": {
                "id": image["id"], "width": image["width"], "height": image["height"],
                "url": f"{image_base}/file",
                "thumbnail_url": f"{image_base}/thumbnail" if image["thumbnail"] else None,
                "intrinsics": image["intrinsics"],
                "depth_url": f"{image_base}/depth" if image["depth"] else None,
            },
            "mask": {
                "id": mask["id"], "label": mask["label"], "bbox": mask["bbox"],
                "rle": {"size": [image["height"], image["width"]], "counts": mask["rle_counts"]},
                "png_url": f"/api/v1/projects/{slug}/masks/{mask['id']}.png",
            },
            "candidates": [candidate_payload(by_id[cid], judged) for cid in lease.order if cid in by_id],
            "sides": lease.sides,
            "judged_representation": judged,
        },
    }


def judgement_body(judgement: Judgement) -> dict:
    """One judgement as the API shows it (the fields of `apis.JudgementOut`, built by hand: a
    submission answers with it, and a ModelSerializer costs more than the rest of the request).
    Needs `annotator` and `comparisons` loaded, or reads them."""
    return {
        "id": judgement.pk, "item": judgement.item_id, "lease": judgement.lease_id, "key": judgement.key,
        "annotator": judgement.annotator.username, "protocol": judgement.protocol,
        "comparisons": [{"index": c.index, "left": c.left_id, "right": c.right_id, "outcome": c.outcome,
                         "decided_ms": c.decided_ms} for c in judgement.comparisons.all()],
        "ranking": judgement.ranking, "winner": judgement.winner_id, "rating": judgement.rating,
        "below_threshold": judgement.below_threshold, "layout": judgement.layout,
        "model_layout": judgement.model_layout, "time_spent_ms": judgement.time_spent_ms,
        "status": judgement.status, "supersedes": judgement.supersedes_id,
        "review_reason": judgement.review_reason, "created_at": judgement.created_at,
    }


def judgement_replay(judgement: Judgement) -> dict:
    """Everything a lead needs to replay a judgement as the annotator saw it: the item as the
    next-item payload gave it under the judgement's lease (photo, mask, candidates in the lease's
    order and sides, whatever representation the workbench draws), the judgement itself (each
    comparison in order with its outcome and time, winner, rating, layout), the gold answer and
    the candidates' checkpoints. Call with a judgement from `judgement_get_for_user`."""
    lease = Lease.objects.get(pk=judgement.lease_id)
    payload = lease_payload(lease, project=judgement.project)
    item = Item.objects.only("id", "state", "is_gold", "gold_candidate_id", "round_id").get(pk=judgement.item_id)
    checkpoints = {pk: f"{name} {version}" for pk, name, version in Candidate.objects.filter(
        item_id=judgement.item_id).values_list("pk", "checkpoint__name", "checkpoint__version").order_by()}
    for c in payload["item"]["candidates"]:
        c["checkpoint"] = checkpoints.get(c["id"])
    return {
        "judgement": judgement_body(judgement_for_body(judgement.pk)),
        "item": payload["item"] | {"state": item.state, "is_gold": item.is_gold,
                                   "gold_candidate": item.gold_candidate_id},
        "lease": {"id": lease.pk, "created_at": lease.created_at},
    }


def judgement_for_body(judgement_id: int) -> Judgement:
    return Judgement.objects.select_related("annotator").prefetch_related("comparisons").get(pk=judgement_id)


# ------------------------------------------------------------------ quality control
def _pair_vote(left: int, right: int, outcome: str) -> tuple[tuple[int, int], int]:
    """A comparison as (unordered pair, vote): +1 the smaller id better, -1 the larger, 0 equal."""
    a, b = sorted((left, right))
    if outcome == "equal":
        return (a, b), 0
    better = left if outcome == "left" else right
    return (a, b), 1 if better == a else -1


# Outlier rules, in the spirit of Chatbot Arena's vote hygiene: a person clicking through without
# looking shows up as implausibly fast decisions or one button pressed nearly always.
OUTLIER_MIN_COMPARISONS = 20
OUTLIER_FAST_MEDIAN_MS = 700
OUTLIER_SIDE_SHARE = 0.9
OUTLIER_EQUAL_SHARE = 0.8
OUTLIER_MIN_GOLD = 5
OUTLIER_GOLD_ACCURACY = 0.5


def annotator_quality(*, project: Project, annotator_ids: Iterable[int] | None = None,
                      now: dt.datetime | None = None) -> list[dict]:
    """Per annotator: gold accuracy, agreement with others (winner, pairwise), pace, outlier flags.

    Agreement counts only accepted judgements of overlapped items (several annotators).
    """
    now = now or timezone.now()
    day_start = now.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    judgements = list(
        Judgement.objects.filter(project=project)
        .exclude(status=Judgement.Status.SUPERSEDED)
        .values("id", "item_id", "annotator_id", "winner_id", "status", "gold_correct", "created_at")
    )
    accepted = [j for j in judgements if j["status"] == Judgement.Status.ACCEPTED]
    by_item = defaultdict(list)
    for j in accepted:
        by_item[j["item_id"]].append(j)
    comps = Comparison.objects.filter(
        judgement__project=project, judgement__status=Judgement.Status.ACCEPTED
    ).values_list("judgement__annotator_id", "judgement__item_id", "left_id", "right_id", "outcome", "decided_ms")
    votes = defaultdict(dict)  # (item, pair) -> {annotator: vote}
    pace = defaultdict(lambda: {"n": 0, "left": 0, "equal": 0, "ms": []})
    for annotator_id, item_id, left, right, outcome, decided_ms in comps:
        pair, vote = _pair_vote(left, right, outcome)
        votes[(item_id, pair)][annotator_id] = vote
        p = pace[annotator_id]
        p["n"] += 1
        p["left"] += outcome == "left"
        p["equal"] += outcome == "equal"
        if decided_ms is not None:
            p["ms"].append(decided_ms)

    stats = defaultdict(lambda: {"judgements": 0, "accepted": 0, "rejected": 0, "today": 0, "gold_total": 0,
                                 "gold_correct": 0, "winner_agree": 0, "winner_total": 0,
                                 "pair_agree": 0, "pair_total": 0})
    for j in judgements:
        s = stats[j["annotator_id"]]
        s["judgements"] += 1
        s["accepted" if j["status"] == Judgement.Status.ACCEPTED else "rejected"] += 1
        s["today"] += j["created_at"] >= day_start
        if j["gold_correct"] is not None and j["status"] == Judgement.Status.ACCEPTED:
            s["gold_total"] += 1
            s["gold_correct"] += bool(j["gold_correct"])
    for item_judgements in by_item.values():
        for j in item_judgements:
            for other in item_judgements:
                if other["annotator_id"] != j["annotator_id"]:
                    s = stats[j["annotator_id"]]
                    s["winner_total"] += 1
                    s["winner_agree"] += other["winner_id"] == j["winner_id"]
    for by_annotator in votes.values():
        for a, vote in by_annotator.items():
            for b, other_vote in by_annotator.items():
                if a != b:
                    stats[a]["pair_total"] += 1
                    stats[a]["pair_agree"] += vote == other_vote

    ids = set(stats) | set(pace)
    if annotator_ids is not None:
        ids &= set(annotator_ids)
    names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username"))
    rows = []
    for uid in sorted(ids, key=lambda u: names.get(u, "")):
        s, p = stats[uid], pace[uid]
        ratio = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
        median_ms = statistics.median(p["ms"]) if p["ms"] else None
        flags = []
        if p["n"] >= OUTLIER_MIN_COMPARISONS:
            if median_ms is not None and median_ms < OUTLIER_FAST_MEDIAN_MS:
                flags.append("too_fast")
            left_share = p["left"] / p["n"]
            if left_share > OUTLIER_SIDE_SHARE or (p["n"] - p["left"] - p["equal"]) / p["n"] > OUTLIER_SIDE_SHARE:
                flags.append("one_side")
            if p["equal"] / p["n"] > OUTLIER_EQUAL_SHARE:
                flags.append("always_equal")
        if s["gold_total"] >= OUTLIER_MIN_GOLD and s["gold_correct"] / s["gold_total"] < OUTLIER_GOLD_ACCURACY:
            flags.append("low_gold_accuracy")
        rows.append({
            "annotator": names.get(uid), "annotator_id": uid,
            "judgements": s["judgements"], "accepted": s["accepted"], "rejected": s["rejected"],
            "today": s["today"], "daily_cap": project.daily_cap,
            "gold": {"total": s["gold_total"], "correct": s["gold_correct"],
                     "accuracy": ratio(s["gold_correct"], s["gold_total"])},
            "agreement": {"winner": ratio(s["winner_agree"], s["winner_total"]), "winner_pairs": s["winner_total"],
                          "pairwise": ratio(s["pair_agree"], s["pair_total"]), "pairwise_pairs": s["pair_total"]},
            "comparisons": p["n"], "median_decided_ms": median_ms,
            "left_share": ratio(p["left"], p["n"]), "equal_share": ratio(p["equal"], p["n"]),
            "outlier_flags": flags,
        })
    return rows
