"""The ranker of a project: trained from a round's DPO snapshot (`modelzoo.ranker`, Bradley-Terry)
and registered as a checkpoint of role "ranker", with its lineage (the snapshot, its definition,
the round) and its held-out agreement with the annotators on `evaluation`.

`ranker_train` runs in the calling process (`manage.py ranker`, the simulation): a ranker trains
in about a minute on a CPU.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from engine.errors import ValidationFailed
from engine.files import without_server_paths
from engine.models import Project, Round
from engine.rounds.train import _snapshot, snapshot_materialise
from modelzoo.models import Checkpoint
from modelzoo.services import RANKER_BACKEND, checkpoint_register


def ranker_train(*, project: Project, dpo_snapshot_id: int, hyperparameters: dict | None = None,
                 created_by=None, log_fn=None) -> Checkpoint:
    """Train a ranker on a built DPO snapshot of `project` and register it (idempotent per snapshot
    and hyper-parameters: the same training again returns the same record)."""
    from modelzoo.ranker import RankerHyperParameters, train_ranker  # torch: only where a ranker trains
    from modelzoo.training import TrainingError

    snap = _snapshot(project, dpo_snapshot_id, "dpo", "ranker")
    try:
        hp = RankerHyperParameters(**(hyperparameters or {}))
    except TypeError as exc:
        raise ValidationFailed(f"Unknown ranker hyper-parameter: {exc}.", code="invalid_hyperparameters") from None
    rnd = Round.objects.filter(project=project, dpo_snapshot=snap).first()
    round_index = rnd.index if rnd else None
    work = Path(tempfile.mkdtemp(prefix=f"ranker-{snap.pk}-"))
    try:
        folder = snapshot_materialise(snapshot=snap, folder=work / "dpo")
        out = work / "ranker.pt"
        record = train_ranker(dpo_dir=str(folder), out=str(out), hp=hp, log=log_fn or (lambda m: None))
        data = out.read_bytes()
    except (TrainingError, ValueError) as exc:
        raise ValidationFailed(without_server_paths(str(exc)), code="training_refused") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record["snapshot"].pop("path", None)
    version = f"{project.slug}-snap{snap.pk}-{record['sha256'][:8]}"
    checkpoint, _ = checkpoint_register(
        name="ranker", version=version, backend=RANKER_BACKEND, role=Checkpoint.Role.RANKER, data=data,
        recipe={"trainer": "modelzoo.ranker", "loss": "bradley-terry", "hyperparameters": asdict(hp),
                "history": record["history"], "seconds": record["seconds"], "epoch": record["epoch"]},
        evaluation={"held_out_agreement": record["held_out_agreement"],
                    "held_out_pairs": record["held_out_pairs"], "train_agreement": record["train_agreement"],
                    "split": {"held_out": hp.held_out, "by": "object (photo + mask)"}},
        lineage={"dpo_snapshot_id": snap.pk, "snapshot": record["snapshot"], "round": round_index,
                 "project": project.slug, "pairs": record["pairs"], "objects": record["objects"]},
        project=project, created_by=created_by)
    return checkpoint

