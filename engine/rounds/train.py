"""Training runs: the reference trainer (`modelzoo.training`) on a round's snapshots, the new
checkpoint registered with its lineage and evaluated offline on the synthetic gold set.

`training_run_create` checks everything a run needs (snapshot kinds, built, Parquet; a
built-in parent) and stores a pending run; `training_run_execute` (the Celery task's body,
also called in-process by `manage.py train`) runs it and records progress on the row.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from engine import lost_work
from engine.errors import NotFound, ValidationFailed
from engine.exports.models import Snapshot
from engine.files import without_server_paths
from engine.models import Image, Project, Round, TrainingRun
from engine.states import job_lifecycle, transition_check
from modelzoo.evaluate import GOLD_SEED_BASE, _summary, gold_set, score
from modelzoo.generators.base import GenerationRequest
from modelzoo.metrics import camera_occupancy, voxel_iou
from modelzoo.models import Checkpoint, ProjectCheckpoint
from modelzoo.selectors import checkpoints_for_project
from modelzoo.services import checkpoint_register
from modelzoo.synth.rotations import quat_to_matrix
from modelzoo.weights import checkpoint_local_path, generator_for_checkpoint

log = logging.getLogger(__name__)

MODEL_QUEUE = "model"
#: Gold scenes of the offline evaluation of every new checkpoint (modelzoo.evaluate's set).
EVAL_GOLD_SIZE = 100
#: Candidates scored per gold scene. With seed 0 alone, two checkpoints of the simulation differed
#: by -0.012 voxel IoU while the mean of 4 seeds said +0.005 (docs/loop.md): one noise vector is noisy.
EVAL_SEEDS = (0, 1, 2, 3)
PROGRESS_EVERY_STEPS = 10
LOSS_POINTS = 400  # per stage, in the run's progress: the live loss curve
_GOLD: dict[str, list] = {}  # domain -> [(scene, gt vertices, gt faces, annotators' voxels)] of its gold set, per process

_TRANSITIONS = job_lifecycle(pending=TrainingRun.State.PENDING, working=TrainingRun.State.RUNNING,
                             done=TrainingRun.State.DONE, failed=TrainingRun.State.FAILED)


def training_run_transition(*, run: TrainingRun, to: str, error: str = "") -> TrainingRun:
    """The one place a training run's state changes."""
    transition_check(_TRANSITIONS, current=run.state, to=to, what=f"Training run {run.pk}", code="training_state")
    run.state, run.error = to, error[:4000]
    fields = ["state", "error"]
    if to in (TrainingRun.State.DONE, TrainingRun.State.FAILED):
        run.finished_at = timezone.now()
        fields.append("finished_at")
    run.save(update_fields=fields)
    return run


_A = {"sft": "an SFT", "dpo": "a DPO"}


def _snapshot(project: Project, snapshot_id: int | None, kind: str, stage: str):
    if snapshot_id is None:
        raise ValidationFailed(f"The {stage.upper()} stage needs {_A[kind]} snapshot; none was given.",
                               code="snapshot_missing")
    snap = Snapshot.objects.filter(pk=snapshot_id, project=project).first()
    if snap is None:
        raise ValidationFailed(f"No snapshot {snapshot_id} in project '{project.slug}'.", code="snapshot_missing")
    if snap.kind != kind:
        raise ValidationFailed(
            f"Snapshot {snap.pk} is {_A[snap.kind]} snapshot; the {stage.upper()} stage needs {_A[kind]} "
            f"snapshot (export one with --kind {kind}).", code="wrong_snapshot_kind")
    if snap.format != "parquet":
        raise ValidationFailed(f"Snapshot {snap.pk} is {snap.format}; the reference trainer reads Parquet "
                               "snapshots (export with --format parquet).", code="wrong_snapshot_format")
    if snap.state != Snapshot.State.DONE:
        raise ValidationFailed(f"Snapshot {snap.pk} is {snap.state}, not built yet; wait for its build.",
                               code="snapshot_not_built")
    return snap


def _checkpoint_check(checkpoint) -> None:
    if checkpoint.backend != "builtin" or not checkpoint.file:
        raise ValidationFailed(
            f"Checkpoint {checkpoint} runs on the '{checkpoint.backend}' backend; the reference trainer only "
            "trains built-in checkpoints. Train it with its own code and register the result.",
            code="incompatible_checkpoint")


def training_run_create(*, project: Project, stage: str = "both", sft_snapshot_id: int | None = None,
                        dpo_snapshot_id: int | None = None, parent=None, round: Round | None = None,
                        hyperparameters: dict | None = None, created_by=None) -> TrainingRun:
    """A pending run after checking its inputs; ValidationFailed says what is wrong and what to do."""
    from modelzoo.training import STAGES, HyperParameters, TrainingError  # torch: kept out of web processes

    if stage not in STAGES:
        raise ValidationFailed(f"Unknown stage '{stage}'; use one of {', '.join(STAGES)}.", code="invalid_stage")
    sft = _snapshot(project, sft_snapshot_id, "sft", "sft") if stage in ("sft", "both") else None
    dpo = _snapshot(project, dpo_snapshot_id, "dpo", "dpo") if stage in ("dpo", "both") else None
    if parent is None:  # the newest checkpoint of the project's current mix
        pc = ProjectCheckpoint.objects.filter(project=project).select_related("checkpoint") \
            .order_by("-checkpoint__created_at", "-checkpoint_id").first()
        if pc is None:
            raise ValidationFailed(f"Project '{project.slug}' has no current checkpoint to start from; "
                                   "pass one.", code="no_checkpoint")
        parent = pc.checkpoint
    elif not isinstance(parent, Checkpoint):  # an id from a request: one the project may use
        parent = checkpoints_for_project(project).filter(pk=parent).first()
        if parent is None:
            raise ValidationFailed(f"No such checkpoint to start from that project '{project.slug}' may use.",
                                   code="no_checkpoint")
    _checkpoint_check(parent)
    try:
        hp = HyperParameters(**(hyperparameters or {}))
        hp.check()
    except TypeError as exc:
        raise ValidationFailed(f"Unknown hyper-parameter: {exc}.", code="invalid_hyperparameters") from None
    except TrainingError as exc:
        raise ValidationFailed(str(exc), code="invalid_hyperparameters") from None
    return TrainingRun.objects.create(project=project, round=round, stage=stage, sft_snapshot=sft, dpo_snapshot=dpo,
                                      parent=parent, hyperparameters=asdict(hp), created_by=created_by)


def training_run_enqueue(*, run: TrainingRun) -> None:
    transaction.on_commit(lambda: training_run_enqueue_id(run_id=run.pk))


def training_run_enqueue_id(*, run_id: int) -> None:
    from engine.rounds.tasks import training_run_task  # a cycle: the task module imports this one

    training_run_task.apply_async(args=[run_id], queue=MODEL_QUEUE)


def snapshot_materialise(*, snapshot, folder: Path) -> Path:
    """Copy a built snapshot's files from storage into `folder` (README.md, data/...)."""
    for entry in snapshot.manifest["files"]:
        target = folder / entry["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with default_storage.open(entry["storage_name"], "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    # The rows carry no camera: photos ingested with intrinsics get them in a sidecar
    # (image sha256 -> 3x3) so that the trainer encodes layouts in the camera generation used.
    cameras = dict(Image.objects.filter(project=snapshot.project, intrinsics__isnull=False)
                   .values_list("sha256", "intrinsics"))
    if cameras:
        (folder / "intrinsics.json").write_text(json.dumps(cameras))
    return folder


def checkpoint_evaluate(*, checkpoint, n: int = EVAL_GOLD_SIZE, domain: str = "primitives",
                        seeds: tuple[int, ...] = EVAL_SEEDS, log_fn=None) -> dict:
    """Offline metrics of a built-in checkpoint on the first `n` scenes of the held-out synthetic
    gold set of a scene domain (`modelzoo.evaluate`: 4 steps, each metric the mean over the
    candidates of `seeds`, so one lucky or unlucky noise vector does not decide a scene), stored on
    `Checkpoint.evaluation`: the pretraining domain ("primitives") at the top level, any other
    under `evaluation["domains"][domain]` (a simulated project's target domain)."""
    gen = generator_for_checkpoint(checkpoint)
    rows, t0 = [], time.time()
    gold = _GOLD.setdefault(domain, [])
    if len(gold) < n:  # scenes, ground-truth meshes and the annotators' voxels of them, kept for the next checkpoint
        gold.extend((s, gt_v, gt_f, camera_occupancy(gt_v, gt_f, s.rotation_matrix))
                    for s in gold_set(n - len(gold), start=len(gold), domain=domain) for gt_v, gt_f in [s.gt_mesh(64)])
    annotator_ious = []  # per scene, per seed: what a simulated annotator judges by (direct win rates)
    for s, gt_v, gt_f, truth in gold[:n]:
        cands = gen.generate(GenerationRequest(image=s.image, mask=s.mask, seeds=list(seeds), steps=4,
                                               intrinsics=s.intrinsics))
        scored = [score(c.vertices, c.faces, c.layout, gt_v, gt_f, s.layout) for c in cands]
        rows.append({k: float(np.mean([m[k] for m in scored])) for k in scored[0]})
        annotator_ious.append([round(voxel_iou(camera_occupancy(c.vertices, c.faces, quat_to_matrix(c.layout.rotation)),
                                               truth), 4) for c in cands])
    result = {"gold_set": {"n": n, "seed_base": GOLD_SEED_BASE, "steps": 4, "domain": domain, "seeds": list(seeds)},
              "model": _summary(rows),
              "per_scene": {"voxel_iou@64": [round(r["voxel_iou@64"], 4) for r in rows],
                            "chamfer": [round(r["chamfer"], 5) for r in rows],
                            "annotator_iou@32": annotator_ious},
              "seconds": round(time.time() - t0, 1)}
    with transaction.atomic():  # merge: another domain's figures may be stored meanwhile
        stored = Checkpoint.objects.select_for_update().get(pk=checkpoint.pk).evaluation or {}
        if domain == "primitives":
            evaluation = {**result, "domains": stored.get("domains", {})}
        else:
            evaluation = {**stored, "domains": {**stored.get("domains", {}), domain: result}}
        Checkpoint.objects.filter(pk=checkpoint.pk).update(evaluation=evaluation)
    checkpoint.evaluation = evaluation
    if log_fn:
        log_fn(f"evaluated {checkpoint} on {n} {domain} gold scenes: voxel IoU {result['model']['voxel_iou@64']:.4f}, "
               f"Chamfer {result['model']['chamfer']:.4f} ({result['seconds']:.0f}s)")
    return result


def checkpoint_evaluation(checkpoint, domain: str = "primitives") -> dict:
    """The stored evaluation of `checkpoint` on a domain's gold set ({} if none)."""
    ev = checkpoint.evaluation or {}
    return ev if domain == "primitives" else (ev.get("domains") or {}).get(domain, {})


def training_run_execute(*, run_id: int, evaluate: bool = True, eval_n: int = EVAL_GOLD_SIZE,
                         log_fn=None) -> TrainingRun:
    """Run the trainer, register the checkpoint (parent, snapshots, hyper-parameters), evaluate it.

    Idempotent: a done run is returned as is; a re-run after a crash trains again (same seed)
    and `checkpoint_register` returns the record registered by an earlier attempt.
    """
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update(of=("self",)).select_related(
            "project", "round", "parent", "sft_snapshot", "dpo_snapshot").filter(pk=run_id).first()
        if run is None:
            raise NotFound(f"No training run {run_id}.")
        if run.state == TrainingRun.State.DONE:
            return run
        training_run_transition(run=run, to=TrainingRun.State.RUNNING)
        lost_work.work_taken(TrainingRun.objects.filter(pk=run.pk))
    with lost_work.heartbeat(TrainingRun.objects.filter(pk=run.pk)):  # hours of work: say it is alive
        run = _training_run_work(run=run, evaluate=evaluate, eval_n=eval_n, log_fn=log_fn)
    training_run_transition(run=run, to=TrainingRun.State.DONE)
    return run


def _training_run_work(*, run: TrainingRun, evaluate: bool, eval_n: int, log_fn) -> TrainingRun:
    """Train, register and evaluate a running run's checkpoint; the run, re-read."""
    from modelzoo.training import HyperParameters, TrainingError, train  # torch: only the worker that trains

    say = log_fn or log.info
    last = {"t": 0.0}

    losses: dict[str, list] = {}  # stage -> the trainer's loss history so far (a point every 25 steps)

    def progress(*, stage, step, steps, history=()):
        losses[stage] = [{"step": h["step"], "loss": h["loss"]} for h in history][-LOSS_POINTS:]
        if step % PROGRESS_EVERY_STEPS == 0 or step == steps or time.time() - last["t"] > 5:
            last["t"] = time.time()
            TrainingRun.objects.filter(pk=run.pk).update(
                progress={"stage": stage, "step": step, "steps": steps, "fraction": round(step / steps, 4),
                          "losses": losses})

    work = Path(tempfile.mkdtemp(prefix=f"training-run-{run.pk}-"))
    try:
        sft_dir = snapshot_materialise(snapshot=run.sft_snapshot, folder=work / "sft") if run.sft_snapshot else None
        dpo_dir = snapshot_materialise(snapshot=run.dpo_snapshot, folder=work / "dpo") if run.dpo_snapshot else None
        out = work / "checkpoint.pt"
        lineage = {"parent_checkpoint_id": run.parent_id, "parent_checkpoint": str(run.parent),
                   "sft_snapshot_id": run.sft_snapshot_id, "dpo_snapshot_id": run.dpo_snapshot_id,
                   "round": run.round.index if run.round else None, "training_run": run.pk,
                   "project": run.project.slug}
        record = train(checkpoint=checkpoint_local_path(run.parent), out=str(out), stage=run.stage,
                       sft_dir=str(sft_dir) if sft_dir else None, dpo_dir=str(dpo_dir) if dpo_dir else None,
                       hp=HyperParameters(**run.hyperparameters), lineage=lineage, log=say, progress=progress)
        for side in record["snapshots"].values():
            side.pop("path", None)  # a temporary folder
        record["parent"].pop("path", None)
        version = f"{run.project.slug}-r{run.round.index if run.round else 0}-{run.stage}-run{run.pk}"
        checkpoint, _ = checkpoint_register(
            name=run.parent.name, version=version, backend="builtin", data=out.read_bytes(), parent=run.parent,
            config=run.parent.config,
            recipe={"trainer": "modelzoo.training", "stage": run.stage, "hyperparameters": run.hyperparameters,
                    "history": record["history"], "seconds": record["seconds"],
                    "dpo_reward_accuracy": record.get("dpo_reward_accuracy")},
            lineage={**lineage, "snapshots": record["snapshots"], "parent_sha256": record["parent"]["sha256"]},
            project=run.project, created_by=run.created_by)
    except (TrainingError, ValidationFailed) as exc:
        reason = without_server_paths(str(exc))  # the trainer names its files: the parent's, the work folder's
        training_run_fail(run_id=run.pk, reason=reason)
        raise ValidationFailed(reason, code="training_refused") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    TrainingRun.objects.filter(pk=run.pk).update(checkpoint=checkpoint)
    if evaluate:
        checkpoint_evaluate(checkpoint=checkpoint, n=eval_n, log_fn=say)
    run.refresh_from_db()
    return run


def training_runs_lost_requeue(*, silent_s: float) -> lost_work.Requeued:
    """Send again the runs whose worker was lost mid-training (engine.lost_work): running, and
    no heartbeat for more than `silent_s`."""
    return lost_work.lost_requeue(
        unfinished=TrainingRun.objects.filter(state=TrainingRun.State.RUNNING, heartbeat_at__isnull=False),
        silent_s=silent_s, requeue=lambda ids: [training_run_enqueue_id(run_id=pk) for pk in ids],
        fail=lambda pk, reason: training_run_fail(run_id=pk, reason=reason), what="training runs")


def training_run_fail(*, run_id: int, reason: str) -> TrainingRun | None:
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.state in (TrainingRun.State.DONE, TrainingRun.State.FAILED):
            return run
        return training_run_transition(run=run, to=TrainingRun.State.FAILED, error=reason or "training failed")
