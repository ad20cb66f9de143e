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
from engine.services import round_current
from modelzoo.generators.base import GenerationRequest
from modelzoo.mesh.gltf import GltfLimits
from modelzoo.models import Candidate, Checkpoint, GenerationJob, GenerationJobItem, ProjectCheckpoint
from modelzoo.representations import CandidateRefused, EncodedFiles, Limits, encode_candidate
from modelzoo.weights import generator_for_checkpoint

log = logging.getLogger(__name__)


def mix_allocate(*, shares: list[float], n: int, rotation: int = 0) -> list[int]:
    """Split n seeds over checkpoints by share (largest remainder). `rotation` rotates which
    checkpoint gets a remainder seed, so over many items every checkpoint gets its share."""
    total = float(sum(shares))
    exact = [n * s / total for s in shares]
    counts = [int(x) for x in exact]
    left = n - sum(counts)
    k = len(shares)
    order = sorted(range(k), key=lambda i: (-(exact[i] - counts[i]), (i - rotation) % k))
    for i in order[:left]:
        counts[i] += 1
    return counts


def candidate_seed(*, item_id: int, index: int) -> int:
    """Deterministic seed of the index-th candidate of an item (31 bits, any backend takes it)."""
    return int.from_bytes(hashlib.sha256(f"item:{item_id}:{index}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def item_plan(*, item_id: int, mix: list[tuple[int, float]], n: int) -> list[list[int]]:
    """[[checkpoint_id, seed], ...] for one item: n deterministic seeds split over the mix."""
    counts = mix_allocate(shares=[s for _, s in mix], n=n, rotation=item_id)
    plan, index = [], 0
    for (checkpoint_id, _), count in zip(mix, counts):
        for _ in range(count):
            plan.append([checkpoint_id, candidate_seed(item_id=item_id, index=index)])
            index += 1
    return plan


def generation_job_start(*, project: Project, created_by=None, mask_ids: list[int] | None = None,
                         steps: int | None = None, candidates_per_item: int | None = None,
                         enqueue: bool = True) -> GenerationJob:
    """Start generating candidates for the project's masks (all, or `mask_ids`) in the current round.

    Items are created waiting (or failed ones put back to waiting); items that already have
    their candidates are left alone. A waiting item still pending in an earlier job is taken
    over (the earlier job item is marked superseded and its task, if it still runs, exits), so
    a job whose tasks were lost (broker down) never blocks the items. One Celery task per item
    is enqueued on queue "model" once the transaction commits.
    """
    mix = [(pc.checkpoint_id, pc.share) for pc in
           ProjectCheckpoint.objects.filter(project=project).order_by("checkpoint_id")]
    if not mix:
        raise ValidationFailed(f"Project '{project.slug}' has no current checkpoint; set its mix first "
                               f"(PUT /api/v1/projects/{project.slug}/checkpoints/).", code="no_checkpoint")
    steps = steps or project.sampling_steps
    n = candidates_per_item or project.candidates_per_item
    if not 1 <= steps <= 100 or not 1 <= n <= 64:
        raise ValidationFailed("steps must be 1-100 and candidates_per_item 1-64.")
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
            round=rnd, mask__in=masks, state__in=[ItemState.WAITING, ItemState.FAILED]).order_by("pk"))
        for item in items:
            if item.state == ItemState.FAILED:
                item_transition(item=item, to=ItemState.WAITING, reason="generation restarted")
        job = GenerationJob.objects.create(
            project=project, round=rnd, steps=steps, candidates_per_item=n, created_by=created_by,
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
            [GenerationJobItem(job=job, item=item, plan=item_plan(item_id=item.pk, mix=mix, n=n)) for item in items])
        ids = [ji.pk for ji in job_items]
        for earlier in earlier_jobs:
            transaction.on_commit(lambda pk=earlier: job_finish_if_complete(job_id=pk))
        if enqueue:  # False: the caller runs the job items itself (`manage.py generate --inline`)
            transaction.on_commit(lambda: job_items_enqueue(job_item_ids=ids))
    log.info("generation job %s: %d items, %d candidates", job.pk, job.total_items, job.total_candidates)
    return job


def generation_job_retry_failed(*, job: GenerationJob, created_by=None) -> GenerationJob:
    """Generate the failed items of `job` again, as a new job in the same round (same steps and N,
    the project's current mix); candidates made before the failure are kept."""
    if job.round_id is not None and job.round.state != Round.State.OPEN:
        raise Conflict(f"Round {job.round.index} is closed; open a new round to generate again.", code="round_closed")
    with transaction.atomic():
        failed = GenerationJobItem.objects.select_for_update().filter(job=job, state=GenerationJobItem.State.FAILED)
        mask_ids = [mask for mask, in failed.values_list("item__mask_id")]
        if not mask_ids:
            raise Conflict(f"Generation job {job.pk} has no failed items to retry.", code="nothing_failed")
        retry = generation_job_start(project=job.project, created_by=created_by, mask_ids=mask_ids, steps=job.steps,
                                     candidates_per_item=job.candidates_per_item)
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
    limits = representation_limits()
    try:
        encoded = [(output, encode_candidate(output, limits)) for output in outputs]
    except CandidateRefused as exc:
        raise CandidateRefused(f"checkpoint {checkpoint} ({checkpoint.backend}): {exc}") from None
    rows = []
    for output, files in encoded:
        fields = candidate_files_store(files)
        fields["timings"].setdefault("model_wall", wall)
        rows.append(Candidate(
            item=item, checkpoint=checkpoint, seed=int(output.seed), steps=steps, layout=files.layout,
            num_vertices=files.num_vertices, num_faces=files.num_faces, num_gaussians=files.num_gaussians,
            textured=files.textured, received=files.received, **fields,
        ))
    return rows


def _planned_done(*, item: Item, plan: list) -> int:
    have = set(Candidate.objects.filter(item=item).values_list("checkpoint_id", "seed"))
    return sum((int(c), int(s)) in have for c, s in plan)


@transaction.atomic
def job_item_complete(*, job_item: GenerationJobItem, candidates: list[Candidate] = ()) -> GenerationJobItem:
    """Insert the new `candidates` (ON CONFLICT DO NOTHING), then count the item's planned
    candidates; when all exist, the item becomes ready."""
    if candidates:
        Candidate.objects.bulk_create(candidates, ignore_conflicts=True)
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
