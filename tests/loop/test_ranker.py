"""The ranker in the registry: trained from a project's DPO snapshot, registered with role "ranker",
its lineage and held-out agreement; never in a mix; its weights checked when registered."""
from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from engine.errors import ValidationFailed
from engine.exports.models import Snapshot
from engine.models import Round
from engine.rounds.ranker import ranker_agreement_by_round, ranker_train
from modelzoo import services as mz
from modelzoo.models import Checkpoint


def _stored_snapshot(project, folder, kind="dpo") -> Snapshot:
    files = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = str(path.relative_to(folder))
        name = default_storage.save(f"test-snapshots/{kind}/{rel}", ContentFile(path.read_bytes()))
        files.append({"path": rel, "storage_name": name})
    return Snapshot.objects.create(project=project, kind=kind, format="parquet", state=Snapshot.State.DONE,
                                   definition={}, definition_sha256=f"{kind}-ranker-test", manifest={"files": files})


@pytest.mark.django_db
def test_a_ranker_trained_on_a_round_is_registered_with_its_lineage(project, snapshot_dirs, capsys):
    snap = _stored_snapshot(project, snapshot_dirs["dpo"])
    Round.objects.create(project=project, index=1, quality_threshold=3, dpo_snapshot=snap)
    cp = ranker_train(project=project, dpo_snapshot_id=snap.pk,
                      hyperparameters={"epochs": 2, "held_out": 0.0, "validation": 0.0})
    assert cp.role == Checkpoint.Role.RANKER and cp.backend == "ranker" and cp.sha256
    assert cp.lineage["dpo_snapshot_id"] == snap.pk and cp.lineage["round"] == 1 and cp.lineage["pairs"] == 2
    assert cp.lineage["snapshot"]["definition_sha256"] == "dpo0" and "path" not in cp.lineage["snapshot"]
    assert "held_out_agreement" in cp.evaluation and cp.recipe["loss"] == "bradley-terry"
    # the same training again is the same record
    again = ranker_train(project=project, dpo_snapshot_id=snap.pk,
                         hyperparameters={"epochs": 2, "held_out": 0.0, "validation": 0.0})
    assert again.pk == cp.pk
    assert [r["round"] for r in ranker_agreement_by_round(project)] == [1]
    # a ranker scores candidates: it never generates them
    with pytest.raises(ValidationFailed, match="is a ranker"):
        mz.project_mix_set(project=project, mix=[(cp, 1.0)])
    call_command("ranker", "--snapshot", str(snap.pk), "--epochs", "2", "--held-out", "0.0", "--validation", "0.0")
    assert "registered ranker:" in capsys.readouterr().out


@pytest.mark.django_db
def test_a_ranker_needs_a_dpo_snapshot_and_ranker_weights(project, snapshot_dirs, start_checkpoint_file):
    sft = _stored_snapshot(project, snapshot_dirs["sft"], kind="sft")
    with pytest.raises(ValidationFailed, match="needs a DPO snapshot") as exc:
        ranker_train(project=project, dpo_snapshot_id=sft.pk)
    assert exc.value.code == "wrong_snapshot_kind"
    with pytest.raises(ValidationFailed, match="not a usable ranker"):
        mz.checkpoint_register(name="ranker", version="x", backend="ranker", role="ranker",
                               data=start_checkpoint_file.read_bytes())
    with pytest.raises(ValidationFailed, match="Unknown role"):
        mz.checkpoint_register(name="ranker", version="y", backend="builtin", role="judge",
                               data=start_checkpoint_file.read_bytes())
    assert not Checkpoint.objects.filter(name="ranker").exists()
