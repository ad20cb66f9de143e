"""Step 2 of a round, generate: generation jobs over a project's masks, and the generation of one
item's candidates by the checkpoints of the project's mix (called by the Celery task
`modelzoo.generate_item`, engine/rounds/tasks.py).

The models and their backends live in modelzoo (plain code in `modelzoo/generators`,
`modelzoo/builtin`; the registry in `modelzoo.services`); this module runs them over items.
"""
from __future__ import annotations

import hashlib
import io
import logging
import random
import time
from collections import OrderedDict

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from PIL import Image as PILImage

from annotation.models import Item, ItemState
from annotation.states import item_transition
from engine import lost_work
from engine import masks as mask_codec
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.files import sha256_bytes, store_content_addressed
from engine.models import ObjectMask, Project, Round
from engine.rounds.selection import item_selection_key_set
from engine.services import round_current
from modelzoo.generators.base import GenerationRequest, default_intrinsics
from modelzoo.generators.registry import seeds_are_ranks
from modelzoo.mesh.glb import read_glb
from modelzoo.mesh.gltf import GltfLimits
from modelzoo.models import Candidate, Checkpoint, GenerationJob, GenerationJobItem, ProjectCheckpoint, Selection
from modelzoo.representations import CandidateRefused, EncodedFiles, Limits, encode_candidate
from modelzoo.selectors import checkpoints_for_project
from modelzoo.weights import generator_for_checkpoint, ranker_for_checkpoint

log = logging.getLogger(__name__)


def mix_allocate(*, shares: list[float], n: int, rotation: int = 0) -> list[int]:
    """Split n seeds over checkpoints by share (largest remainder). `rotation` rotates which
    checkpoint gets a remainder seed, so over many items every checkpoint gets its share."""
    total = float(sum(shares))
    exact = [n * s / total for s in shares]
    counts = [int(x) for x in exact]
    left = n - sum(counts)
    # Largest remainder first; among equal remainders, `rotation` picks which goes first, so that
    # each of the tied checkpoints gets the extra seed equally often.
    remainder = [round(x - c, 9) for x, c in zip(exact, counts)]
    order = []
    for r in sorted(set(remainder), reverse=True):
        tied = [i for i, ri in enumerate(remainder) if ri == r]
        first = rotation % len(tied)
        order += tied[first:] + tied[:first]
    for i in order[:left]:
        counts[i] += 1
    return counts


def candidate_seed(*, item_id: int, index: int) -> int:
    """Deterministic seed of the index-th candidate of an item (31 bits, any backend takes it)."""
    return int.from_bytes(hashlib.sha256(f"item:{item_id}:{index}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def item_plan(*, item_id: int, mix: list[tuple[int, float]], n: int, ranked: dict[int, int] | None = None,
              ) -> list[list[int]]:
    """[[checkpoint_id, seed], ...] for one item: n deterministic seeds split over the mix. A
    checkpoint in `ranked` (checkpoint id -> first rank) is a backend whose seed k is its k-th best
    answer (modelzoo.generators.registry.seeds_are_ranks): it gets ranks from there on, in order."""
    counts = mix_allocate(shares=[s for _, s in mix], n=n, rotation=item_id)
    plan, index = [], 0
    for (checkpoint_id, _), count in zip(mix, counts):
        for k in range(count):
            if ranked is not None and checkpoint_id in ranked:
                plan.append([checkpoint_id, ranked[checkpoint_id] + k])
            else:
                plan.append([checkpoint_id, candidate_seed(item_id=item_id, index=index)])
            index += 1
    return plan


def ranked_checkpoints(mix: list[tuple[int, float]]) -> set[int]:
    """The checkpoints of `mix` whose backend's seed k is its k-th best answer (a retrieval)."""
    return {pk for pk, backend in Checkpoint.objects.filter(pk__in=[c for c, _ in mix]).values_list("pk", "backend")
            if seeds_are_ranks(backend)}


#: The most candidates a pre-ranked item may have generated (M).
PRE_RANK_MAX_GENERATED = 256


def pre_rank_check(*, project: Project, pre_rank: dict | None) -> dict:
    """The normalised pre-ranking of a job ({} for none): {ranker, generate, shown, random}, or
    ValidationFailed saying what is wrong. The ranker: a checkpoint of role "ranker" the project sees."""
    if not pre_rank:
        return {}
    unknown = set(pre_rank) - {"ranker", "generate", "shown", "random"}
    if unknown:
        raise ValidationFailed(f"Unknown pre_rank field(s) {sorted(unknown)}; give ranker, generate, shown, random.",
                               code="invalid_pre_rank")
    try:
        out = {"ranker": int(pre_rank["ranker"]), "generate": int(pre_rank.get("generate", 32)),
               "shown": int(pre_rank.get("shown", 6)), "random": int(pre_rank.get("random", 2))}
    except (KeyError, TypeError, ValueError):
        raise ValidationFailed("pre_rank needs a ranker (a checkpoint id) and whole numbers for generate, shown and "
                               "random.", code="invalid_pre_rank") from None
    m, n, r = out["generate"], out["shown"], out["random"]
    if not (1 <= n and 0 <= r and n + r <= 64 and n + r <= m <= PRE_RANK_MAX_GENERATED):
        raise ValidationFailed(f"pre_rank: shown ({n}) must be at least 1, random ({r}) at least 0, shown + random at "
                               f"most 64 and at most generate ({m}), and generate at most {PRE_RANK_MAX_GENERATED}.",
                               code="invalid_pre_rank")
    ranker = checkpoints_for_project(project).filter(pk=out["ranker"]).first()
    if ranker is None or ranker.role != Checkpoint.Role.RANKER:
        raise ValidationFailed(f"pre_rank: checkpoint {out['ranker']} is not a ranker that project '{project.slug}' "
                               "may use (train one: manage.py ranker --snapshot ID).", code="invalid_pre_rank")
    return out


def mix_current(project: Project) -> list[tuple[int, float]]:
    mix = [(pc.checkpoint_id, pc.share) for pc in
           ProjectCheckpoint.objects.filter(project=project).order_by("checkpoint_id")]
    if not mix:
        raise ValidationFailed(f"Project '{project.slug}' has no current checkpoint; set its mix first "
                               f"(PUT /api/v1/projects/{project.slug}/checkpoints/).", code="no_checkpoint")
    return mix


def generation_sizes(*, project: Project, steps: int | None, candidates_per_item: int | None,
                     pre_rank: dict | None) -> tuple[int, dict, int, int]:
    """(steps, pre_rank checked, N shown per item, M planned per item), or ValidationFailed."""
    steps = steps or project.sampling_steps
    pre_rank = pre_rank_check(project=project, pre_rank=pre_rank)
    if pre_rank and candidates_per_item and candidates_per_item != pre_rank["shown"] + pre_rank["random"]:
        shown = pre_rank["shown"] + pre_rank["random"]
        raise ValidationFailed(f"With pre-ranking annotators see shown + random = {shown}"
                               f" candidates, not candidates_per_item = {candidates_per_item}; leave it out.",
                               code="invalid_pre_rank")
    n = (pre_rank["shown"] + pre_rank["random"]) if pre_rank else (candidates_per_item or project.candidates_per_item)
    if not 1 <= steps <= 100 or not 1 <= n <= 64:
        raise ValidationFailed("steps must be 1-100 and candidates_per_item 1-64.")
    return steps, pre_rank, n, pre_rank["generate"] if pre_rank else n


def generation_job_start(*, project: Project, created_by=None, mask_ids: list[int] | None = None,
                         steps: int | None = None, candidates_per_item: int | None = None,
                         enqueue: bool = True, pre_rank: dict | None = None) -> GenerationJob:
    """Start generating candidates for the project's masks (all, or `mask_ids`) in the current round.

    Items are created waiting (or failed ones put back to waiting); items that already have
    their candidates are left alone. A waiting item still pending in an earlier job is taken
    over (the earlier job item is marked superseded and its task, if it still runs, exits), so
    a job whose tasks were lost (broker down) never blocks the items. One Celery task per item
    is enqueued on queue "model" once the transaction commits. Recovery items of hard cases are
    engine.rounds.recovery's, never taken here.
    """
    mix = mix_current(project)
    steps, pre_rank, n, planned = generation_sizes(project=project, steps=steps,
                                                   candidates_per_item=candidates_per_item, pre_rank=pre_rank)
    masks = ObjectMask.objects.filter(image__project=project)
    if mask_ids is not None:
        masks = masks.filter(pk__in=mask_ids)
        missing = set(mask_ids) - set(masks.values_list("pk", flat=True))
        if missing:
            raise ValidationFailed(f"Masks {sorted(missing)} are not in project '{project.slug}'.")
    with transaction.atomic():
        rnd = round_current(project=project)
        Item.objects.bulk_create(
            [Item(project=project, round=rnd, mask_id=m) for m in masks.values_list("pk", flat=True)],
            ignore_conflicts=True)
        items = list(Item.objects.select_for_update().filter(
            round=rnd, mask__in=masks, state__in=[ItemState.WAITING, ItemState.FAILED], recovers__isnull=True,
        ).order_by("pk"))
        job = generation_job_create(project=project, rnd=rnd, items=items, mix=mix, steps=steps, n=n, planned=planned,
                                    pre_rank=pre_rank, created_by=created_by, enqueue=enqueue)
    log.info("generation job %s: %d items, %d candidates", job.pk, job.total_items, job.total_candidates)
    return job


def generation_job_create(*, project: Project, rnd: Round, items: list[Item], mix: list[tuple[int, float]],
                          steps: int, n: int, planned: int, pre_rank: dict, created_by=None,
                          enqueue: bool = True) -> GenerationJob:
    """The job over `items` (rows locked by the caller's transaction, waiting or failed): failed
    ones back to waiting, earlier pending job items taken over, one job item per item planned
    for `planned` candidates (N shown, or M to pre-rank), tasks enqueued on commit. A retrieval's
    candidates are its nearest answers from rank 0; a recovery item's, those after the ranks its
    hard case was offered."""
    for item in items:
        if item.state == ItemState.FAILED:
            item_transition(item=item, to=ItemState.WAITING, reason="generation restarted")
    ranked = ranked_checkpoints(mix)
    first_ranks = _ranks_after_recovered(items, ranked) if ranked else {}
    job = GenerationJob.objects.create(
        project=project, round=rnd, steps=steps, candidates_per_item=n, created_by=created_by, pre_rank=pre_rank,
        mix=[{"checkpoint": c, "share": s} for c, s in mix],
        total_items=len(items), total_candidates=len(items) * n,
        state=GenerationJob.State.RUNNING if items else GenerationJob.State.FINISHED,
        finished_at=None if items else timezone.now(),
    )
    taken_over = GenerationJobItem.objects.filter(item__in=items, state=GenerationJobItem.State.PENDING)
    earlier_jobs = set(taken_over.values_list("job_id", flat=True))
    taken_over.update(state=GenerationJobItem.State.SUPERSEDED, error=f"taken over by job {job.pk}",
                      updated_at=timezone.now())
    job_items = GenerationJobItem.objects.bulk_create(
        [GenerationJobItem(job=job, item=item, plan=item_plan(
            item_id=item.pk, mix=mix, n=planned,
            ranked={c: first_ranks.get(item.recovers_id, {}).get(c, 0) for c in ranked})) for item in items])
    ids = [ji.pk for ji in job_items]
    for earlier in earlier_jobs:
        transaction.on_commit(lambda pk=earlier: job_finish_if_complete(job_id=pk))
    if enqueue:  # False: the caller runs the job items itself (`manage.py generate --inline`)
        transaction.on_commit(lambda: job_items_enqueue(job_item_ids=ids))
    return job


def _ranks_after_recovered(items: list[Item], ranked: set[int]) -> dict[int, dict[int, int]]:
    """hard case id -> {ranked checkpoint: the rank after the last it was offered (shown or only
    ranked)}, for the recovery items among `items`: a retrieval answers a recovery with the shapes
    after those, not the same ones again."""
    after: dict[int, dict[int, int]] = {}
    originals = [item.recovers_id for item in items if item.recovers_id]
    for item_id, plan, ranking in GenerationJobItem.objects.filter(item__in=originals).values_list(
            "item_id", "plan", "ranking"):
        offered = [(p[0], p[1]) for p in plan or []] + [(r["checkpoint"], r["seed"]) for r in ranking or []]
        for checkpoint, seed in offered:
            if checkpoint in ranked:
                mine = after.setdefault(item_id, {})
                mine[checkpoint] = max(mine.get(checkpoint, 0), int(seed) + 1)
    return after


def generation_job_retry_failed(*, job: GenerationJob, created_by=None) -> GenerationJob:
    """Generate the failed items of `job` again, as a new job in the same round (same steps, N and
    pre-ranking, the project's current mix); candidates made before the failure are kept."""
    if job.round_id is not None and job.round.state != Round.State.OPEN:
        raise Conflict(f"Round {job.round.index} is closed; open a new round to generate again.", code="round_closed")
    mix = mix_current(job.project)
    with transaction.atomic():
        failed = list(GenerationJobItem.objects.select_for_update().filter(
            job=job, state=GenerationJobItem.State.FAILED))
        if not failed:
            raise Conflict(f"Generation job {job.pk} has no failed items to retry.", code="nothing_failed")
        items = list(Item.objects.select_for_update().filter(
            pk__in=[ji.item_id for ji in failed], state__in=[ItemState.WAITING, ItemState.FAILED]).order_by("pk"))
        pre_rank = pre_rank_check(project=job.project, pre_rank=job.pre_rank or None)
        retry = generation_job_create(
            project=job.project, rnd=job.round, items=items, mix=mix, steps=job.steps, n=job.candidates_per_item,
            planned=pre_rank["generate"] if pre_rank else job.candidates_per_item, pre_rank=pre_rank,
            created_by=created_by)
        # The failures stay readable on the old job, which no longer counts them as failed.
        for job_item in failed:
            job_item.state = GenerationJobItem.State.SUPERSEDED
            job_item.error = f"{job_item.error} (retried in job {retry.pk})"[:2000]
            job_item.updated_at = timezone.now()
            job_item.save(update_fields=["state", "error", "updated_at"])
    return retry


MODEL_QUEUE = "model"


def job_items_enqueue(*, job_item_ids: list[int]) -> None:
    """One `modelzoo.generate_item` task per job item, on the model queue (after commit)."""
    from engine.rounds.tasks import generate_item  # a cycle: the task module imports this one

    for pk in job_item_ids:
        generate_item.apply_async(args=[pk], queue=MODEL_QUEUE)


# ------------------------------------------------------------------ one item
_IMAGES: OrderedDict[str, np.ndarray] = OrderedDict()  # decoded photos, per worker process


def _image_rgb(name: str) -> np.ndarray:
    """The photo as H x W x 3 uint8; a few are kept decoded (an image has several masks)."""
    if name in _IMAGES:
        _IMAGES.move_to_end(name)
        return _IMAGES[name]
    with default_storage.open(name, "rb") as f:
        rgb = np.asarray(PILImage.open(f).convert("RGB"))
    _IMAGES[name] = rgb
    while len(_IMAGES) > 4:
        _IMAGES.popitem(last=False)
    return rgb


def generation_request(*, mask: ObjectMask, seeds: list[int], steps: int) -> GenerationRequest:
    image = mask.image
    depth = None
    if image.depth:
        with default_storage.open(image.depth.name, "rb") as f:
            depth = np.load(io.BytesIO(f.read()), allow_pickle=False)
    return GenerationRequest(
        image=_image_rgb(image.file.name),
        mask=mask_codec.decode(mask.rle_counts, image.height, image.width).astype(bool),
        seeds=seeds, steps=steps, depth=depth,
        intrinsics=np.asarray(image.intrinsics, float) if image.intrinsics else None,
    )


def representation_limits() -> Limits:
    """The per-candidate limits of the settings (MODELZOO_MAX_GAUSSIANS, MODELZOO_MAX_GLB_BYTES)."""
    return Limits(max_gaussians=settings.MODELZOO_MAX_GAUSSIANS,
                  gltf=GltfLimits(max_bytes=settings.MODELZOO_MAX_GLB_BYTES))


def _store(folder: str, extension: str, data: bytes | None) -> str:
    if not data:
        return ""
    return store_content_addressed(folder=folder, sha256=sha256_bytes(data), extension=extension, data=data)


def candidate_files_store(files: EncodedFiles) -> dict:
    """Store one encoded candidate's files (content-addressed: a retry stores nothing twice) and
    return the Candidate fields that name them, with the timings."""
    t0 = time.perf_counter()
    names = {
        "glb": _store("candidates", "glb", files.glb),
        "glb_compact": _store("candidates", "glb", files.glb_compact),
        "splat": _store("splats", "ply", files.splat_ply),
        "splat_compact": _store("splats", "spz", files.splat_spz),
        "preview": _store("previews", "png", files.preview_png),
    }
    timings = dict(files.timings, storage=time.perf_counter() - t0)
    return names | {"timings": timings}


def job_item_generate(*, job_item_id: int) -> GenerationJobItem:
    """Produce the missing candidates of one job item; idempotent.

    Only (checkpoint, seed) pairs of the plan that do not exist yet are generated, and rows
    are inserted with ON CONFLICT DO NOTHING on (item, checkpoint, seed): a re-run after a
    crash, or a duplicate delivery running concurrently, creates every candidate exactly once.
    The rows are written with the item's completion, in one transaction (one commit per
    item); if a later checkpoint of a mix fails, what the earlier ones made is kept.
    When all planned candidates exist the item moves waiting -> ready.
    """
    job_item = GenerationJobItem.objects.select_related("job", "item__mask__image").filter(pk=job_item_id).first()
    if job_item is None:
        raise NotFound(f"No generation job item {job_item_id}.")
    if job_item.state in (GenerationJobItem.State.DONE, GenerationJobItem.State.SUPERSEDED):
        return job_item
    GenerationJobItem.objects.filter(pk=job_item.pk).update(attempts=job_item.attempts + 1, heartbeat_at=timezone.now())
    item, job = job_item.item, job_item.job
    if job.pre_rank and not job_item.ranking:
        return _job_item_pre_rank(job_item=job_item)
    plan = [(int(c), int(s)) for c, s in job_item.plan]
    have = set(Candidate.objects.filter(item=item).values_list("checkpoint_id", "seed"))
    todo: dict[int, list[int]] = {}
    for checkpoint_id, seed in plan:
        if (checkpoint_id, seed) not in have:
            todo.setdefault(checkpoint_id, []).append(seed)
    checkpoints = Checkpoint.objects.in_bulk(list(todo)) if todo else {}
    made: list[Candidate] = []
    try:
        for checkpoint_id, seeds in todo.items():
            made += _candidates_generate(item=item, checkpoint=checkpoints[checkpoint_id], seeds=seeds,
                                         steps=job.steps)
    except Exception:
        if made:  # keep the earlier checkpoints' candidates: a retry makes only the rest
            Candidate.objects.bulk_create(made, ignore_conflicts=True)
        raise
    return job_item_complete(job_item=job_item, candidates=made)


def _candidates_generate(*, item: Item, checkpoint: Checkpoint, seeds: list[int], steps: int) -> list[Candidate]:
    """Unsaved Candidate rows of one checkpoint's seeds, their files stored. Every output is checked
    and encoded before any file is stored: one refused output (a malformed GLB or splat) stores
    nothing of this checkpoint and fails the item with the reason."""
    generator = generator_for_checkpoint(checkpoint)
    request = generation_request(mask=item.mask, seeds=seeds, steps=steps)
    started = time.perf_counter()
    outputs = generator.generate(request)
    wall = (time.perf_counter() - started) / max(len(outputs), 1)
    encoded = _encode_all(checkpoint=checkpoint, outputs=outputs)
    return [_candidate_row(item=item, checkpoint=checkpoint, output=o, files=f, steps=steps, wall=wall)
            for o, f in encoded]


def _encode_all(*, checkpoint: Checkpoint, outputs) -> list[tuple]:
    """(output, EncodedFiles) of every output, or CandidateRefused naming the checkpoint."""
    limits = representation_limits()
    try:
        return [(output, encode_candidate(output, limits)) for output in outputs]
    except CandidateRefused as exc:
        raise CandidateRefused(f"checkpoint {checkpoint} ({checkpoint.backend}): {exc}") from None


def _candidate_row(*, item: Item, checkpoint: Checkpoint, output, files: EncodedFiles, steps: int, wall: float,
                   **extra) -> Candidate:
    fields = candidate_files_store(files)
    fields["timings"].setdefault("model_wall", wall)
    return Candidate(
        item=item, checkpoint=checkpoint, seed=int(output.seed), steps=steps, layout=files.layout,
        num_vertices=files.num_vertices, num_faces=files.num_faces, num_gaussians=files.num_gaussians,
        textured=files.textured, received=files.received, **fields, **extra,
    )


def pre_rank_choose(*, scores: list[float], shown: int, extra: int, seed: str) -> dict[int, str]:
    """index -> "top" | "random" of the candidates annotators see: the `shown` best scores, and
    `extra` drawn uniformly from the rest (a generator seeded by `seed`: a re-run draws the same)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    rest = order[shown:]
    drawn = random.Random(seed).sample(rest, min(extra, len(rest)))
    return {**{i: Selection.TOP for i in order[:shown]}, **{i: Selection.RANDOM for i in drawn}}


def _job_item_pre_rank(*, job_item: GenerationJobItem) -> GenerationJobItem:
    """Generate all M planned candidates of an item, score them with the job's ranker, store the
    shown ones (top N + R drawn from the rest) as candidates, and record every one's score, rank and
    whether it was shown on the job item, whose plan becomes the shown ones. The others' files are
    not kept: their seeds make them again. Deterministic, so a re-run after a crash chooses the same."""
    item, job, pre = job_item.item, job_item.job, job_item.job.pre_rank
    ranker = ranker_for_checkpoint(Checkpoint.objects.get(pk=pre["ranker"]))
    by_checkpoint: dict[int, list[int]] = {}
    for checkpoint_id, seed in job_item.plan:
        by_checkpoint.setdefault(int(checkpoint_id), []).append(int(seed))
    checkpoints = Checkpoint.objects.in_bulk(list(by_checkpoint))
    made = []  # (checkpoint, output, encoded files, wall)
    request = None
    for checkpoint_id, seeds in by_checkpoint.items():
        request = generation_request(mask=item.mask, seeds=seeds, steps=job.steps)
        started = time.perf_counter()
        outputs = generator_for_checkpoint(checkpoints[checkpoint_id]).generate(request)
        wall = (time.perf_counter() - started) / max(len(outputs), 1)
        made += [(checkpoints[checkpoint_id], o, f, wall)
                 for o, f in _encode_all(checkpoint=checkpoints[checkpoint_id], outputs=outputs)]
    image = request.image
    K = request.intrinsics if request.intrinsics is not None else default_intrinsics(image.shape[1], image.shape[0])
    started = time.perf_counter()
    # The ranker sees what annotators will: the encoded mesh (object frame re-centred) and its layout.
    # A candidate without a mesh (a splat alone) cannot be scored and ranks last.
    meshes = [i for i, (_, _, f, _) in enumerate(made) if f.glb]
    scored = ranker.score(image, request.mask, K, [(*read_glb(made[i][2].glb)[:2], made[i][2].layout) for i in meshes])
    scores = [float("-inf")] * len(made)
    for i, x in zip(meshes, scored):
        scores[i] = float(x)
    rank_seconds = (time.perf_counter() - started) / max(len(made), 1)
    chosen = pre_rank_choose(scores=scores, shown=pre["shown"], extra=pre["random"], seed=f"{job.pk}:{item.pk}")
    order = sorted(range(len(made)), key=lambda i: (-scores[i], i))
    rank_of = {i: r + 1 for r, i in enumerate(order)}
    ranking = [{"checkpoint": made[i][0].pk, "seed": int(made[i][1].seed),
                "score": round(scores[i], 5) if scores[i] > float("-inf") else None,
                "rank": rank_of[i], "shown": chosen.get(i)} for i in order]
    rows = []
    for i, selection in sorted(chosen.items()):
        checkpoint, output, files, wall = made[i]
        row = _candidate_row(item=item, checkpoint=checkpoint, output=output, files=files, steps=job.steps, wall=wall,
                             selection=selection, ranker_score=ranking[rank_of[i] - 1]["score"],
                             ranker_rank=rank_of[i])
        row.timings["ranker"] = rank_seconds
        rows.append(row)
    plan = [[c.checkpoint_id, c.seed] for c in rows]
    return job_item_complete(job_item=job_item, candidates=rows, ranking=ranking, plan=plan)


def _planned_done(*, item: Item, plan: list) -> int:
    have = set(Candidate.objects.filter(item=item).values_list("checkpoint_id", "seed"))
    return sum((int(c), int(s)) in have for c, s in plan)


@transaction.atomic
def job_item_complete(*, job_item: GenerationJobItem, candidates: list[Candidate] = (), ranking: list | None = None,
                      plan: list | None = None) -> GenerationJobItem:
    """Insert the new `candidates` (ON CONFLICT DO NOTHING), then count the item's planned
    candidates; when all exist, the item becomes ready. A pre-ranked item's `ranking` and its
    `plan` (the shown candidates) are written with them."""
    if candidates:
        Candidate.objects.bulk_create(candidates, ignore_conflicts=True)
    if ranking is not None:
        job_item.ranking, job_item.plan = ranking, plan
        GenerationJobItem.objects.filter(pk=job_item.pk).update(ranking=ranking, plan=plan)
        item_selection_key_set(item_id=job_item.item_id, project=job_item.job.project, ranking=ranking)
    item = Item.objects.select_for_update().get(pk=job_item.item_id)
    done = _planned_done(item=item, plan=job_item.plan)
    complete = done == len(job_item.plan)
    if complete and item.state in (ItemState.WAITING, ItemState.FAILED):
        item_transition(item=item, to=ItemState.READY, reason="")
    job_item.done = done
    job_item.state = GenerationJobItem.State.DONE if complete else job_item.state
    job_item.updated_at = timezone.now()
    job_item.error = "" if complete else job_item.error
    job_item.save(update_fields=["done", "state", "updated_at", "error"])
    transaction.on_commit(lambda: job_finish_if_complete(job_id=job_item.job_id))
    return job_item


@transaction.atomic
def job_item_fail(*, job_item_id: int, reason: str) -> GenerationJobItem | None:
    """Record that generation of this job item failed for good: on the item (state failed,
    with the reason) and on the job item. Candidates made so far are kept."""
    job_item = GenerationJobItem.objects.select_for_update().filter(pk=job_item_id).first()
    if job_item is None or job_item.state != GenerationJobItem.State.PENDING:
        return job_item
    item = Item.objects.select_for_update().get(pk=job_item.item_id)
    reason = reason[:2000] or "generation failed"
    if item.state == ItemState.WAITING:
        item_transition(item=item, to=ItemState.FAILED, reason=reason)
    job_item.state = GenerationJobItem.State.FAILED
    job_item.error = reason
    job_item.done = _planned_done(item=item, plan=job_item.plan)
    job_item.updated_at = timezone.now()
    job_item.save(update_fields=["state", "error", "done", "updated_at"])
    transaction.on_commit(lambda: job_finish_if_complete(job_id=job_item.job_id))
    return job_item


def job_items_lost_requeue(*, silent_s: float) -> lost_work.Requeued:
    """Send again the items whose worker was lost mid-generation (engine.lost_work): pending,
    taken by a worker more than `silent_s` ago. Items still queued are left alone."""
    return lost_work.lost_requeue(
        unfinished=GenerationJobItem.objects.filter(state=GenerationJobItem.State.PENDING, heartbeat_at__isnull=False),
        silent_s=silent_s, requeue=lambda ids: job_items_enqueue(job_item_ids=ids),
        fail=lambda pk, reason: job_item_fail(job_item_id=pk, reason=reason), what="generation job items")


def job_finish_if_complete(*, job_id: int) -> bool:
    """Mark the job finished once no item is pending (one conditional UPDATE: race-free)."""
    pending = GenerationJobItem.objects.filter(job=OuterRef("pk"), state=GenerationJobItem.State.PENDING)
    return bool(GenerationJob.objects.filter(pk=job_id, state=GenerationJob.State.RUNNING)
                .exclude(Exists(pending)).update(state=GenerationJob.State.FINISHED, finished_at=timezone.now()))
