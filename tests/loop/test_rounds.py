"""Rounds through services, the API and the command; training runs refuse what they cannot train."""
from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from engine.errors import Conflict, ValidationFailed
from engine.exports.models import Snapshot
from engine.models import Round
from engine.rounds import services, train
from engine.rounds import generate
from modelzoo import services as mz
from modelzoo.models import ProjectCheckpoint
from tests.modelzoo_engine.conftest import photo_with_masks, weights_variant


@pytest.fixture
def no_broker(monkeypatch):
    sent = []
    monkeypatch.setattr(generate, "job_items_enqueue", lambda *, job_item_ids: sent.extend(job_item_ids))
    return sent


@pytest.fixture
def checkpoint(db, start_checkpoint_file):
    return mz.checkpoint_register(name="builtin", version="start", backend="builtin",
                                  data=start_checkpoint_file.read_bytes())[0]


@pytest.fixture
def loop_project(project, checkpoint):
    photo_with_masks(project, seed=0, n_masks=2)
    mz.project_mix_set(project=project, mix=[(checkpoint, 1.0)])
    return project


def _snapshot(project, kind, fmt="parquet", state=Snapshot.State.DONE):
    return Snapshot.objects.create(project=project, kind=kind, format=fmt, state=state, definition={},
                                   definition_sha256=f"{kind}{fmt}{state}")


def test_open_generates_for_new_masks_and_records_the_mix(loop_project, checkpoint, no_broker,
                                                           django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        rnd = services.round_open(project=loop_project, quality_threshold=4)
    assert (rnd.index, rnd.quality_threshold, rnd.mix) == (1, 4, [{"checkpoint": checkpoint.pk, "share": 1.0}])
    assert rnd.items.count() == 2 and len(no_broker) == 2
    with pytest.raises(Conflict):
        services.round_open(project=loop_project)
    closed = services.round_close(round=rnd)  # nothing judged: closes without snapshots
    assert closed.state == Round.State.CLOSED and closed.closed_at and closed.sft_snapshot is None
    with pytest.raises(ValidationFailed, match="No new masks"):
        services.round_open(project=loop_project)  # every mask already has an item


def test_trained_checkpoint_becomes_current_mixed_with_the_previous(loop_project, checkpoint, no_broker):
    rnd = services.round_open(project=loop_project)
    new = mz.checkpoint_register(name="builtin", version="r1", backend="builtin", data=weights_variant("r1"),
                             parent=checkpoint)[0]
    services.round_checkpoint_set(round=rnd, checkpoint=new, share=0.5)
    newer = mz.checkpoint_register(name="builtin", version="r2", backend="builtin", data=weights_variant("r2"), parent=new)[0]
    services.round_checkpoint_set(round=rnd, checkpoint=newer, share=0.5)
    mix = dict(ProjectCheckpoint.objects.filter(project=loop_project).values_list("checkpoint_id", "share"))
    assert mix == {newer.pk: 0.5, new.pk: 0.25, checkpoint.pk: 0.25}
    assert Round.objects.get(pk=rnd.pk).checkpoint_produced == newer


def test_a_retrieval_backend_keeps_its_share_as_new_checkpoints_arrive(loop_project, checkpoint, no_broker, tmp_path):
    """The shape library does not age with the model: each new checkpoint takes half of the models' part."""
    from modelzoo.generators.retrieval import build_library, save_library, synthetic_meshes

    save_library(build_library(synthetic_meshes("household", 4, 123_000), log=None), str(tmp_path / "lib.npz"))
    library = mz.checkpoint_register(name="retrieval", version="lib", backend="retrieval",
                                     data=(tmp_path / "lib.npz").read_bytes(), project=loop_project)[0]
    mz.project_mix_set(project=loop_project, mix=[(checkpoint, 0.75), (library, 0.25)])
    rnd = services.round_open(project=loop_project)
    new = mz.checkpoint_register(name="builtin", version="r1", backend="builtin", data=weights_variant("r1"),
                                 parent=checkpoint)[0]
    services.round_checkpoint_set(round=rnd, checkpoint=new, share=0.5)
    newer = mz.checkpoint_register(name="builtin", version="r2", backend="builtin", data=weights_variant("r2"),
                                   parent=new)[0]
    services.round_checkpoint_set(round=rnd, checkpoint=newer, share=0.5)
    mix = dict(ProjectCheckpoint.objects.filter(project=loop_project).values_list("checkpoint_id", "share"))
    assert mix == pytest.approx({newer.pk: 0.375, new.pk: 0.1875, checkpoint.pk: 0.1875, library.pk: 0.25})
    # share 1: the new checkpoint replaces every model, the library stays
    services.round_checkpoint_set(round=rnd, checkpoint=new, share=1.0)
    mix = dict(ProjectCheckpoint.objects.filter(project=loop_project).values_list("checkpoint_id", "share"))
    assert mix == pytest.approx({new.pk: 0.75, library.pk: 0.25})


def test_rounds_over_the_api(loop_project, member, api, no_broker):
    lead, annotator = member("lead"), member("annotator")
    assert api(annotator).post(f"/api/v1/projects/{loop_project.slug}/rounds/", {}, format="json").status_code == 403
    r = api(lead).post(f"/api/v1/projects/{loop_project.slug}/rounds/", {"quality_threshold": 2}, format="json")
    assert r.status_code == 201 and r.json()["items"] == 2 and r.json()["state"] == "open"
    r = api(lead).post(f"/api/v1/projects/{loop_project.slug}/rounds/1/close", {}, format="json")
    assert r.status_code == 200 and r.json()["state"] == "closed"
    listed = api(annotator).get(f"/api/v1/projects/{loop_project.slug}/rounds/").json()
    assert [x["index"] for x in listed] == [1]
    call_command("round", "status", "--project", loop_project.slug)


def test_training_run_refuses_wrong_kind_format_and_backend(loop_project, checkpoint):
    sft, dpo = _snapshot(loop_project, "sft"), _snapshot(loop_project, "dpo")
    with pytest.raises(ValidationFailed, match="Snapshot .* is a DPO snapshot; the SFT stage needs an SFT") as e:
        train.training_run_create(project=loop_project, stage="sft", sft_snapshot_id=dpo.pk)
    assert e.value.code == "wrong_snapshot_kind"
    jsonl = _snapshot(loop_project, "sft", fmt="jsonl")
    with pytest.raises(ValidationFailed, match="reads Parquet"):
        train.training_run_create(project=loop_project, stage="sft", sft_snapshot_id=jsonl.pk)
    http = mz.checkpoint_register(name="remote", version="1", backend="http", config={"url": "http://x:1"})[0]
    with pytest.raises(ValidationFailed, match="only trains built-in checkpoints") as e:
        train.training_run_create(project=loop_project, stage="both", sft_snapshot_id=sft.pk,
                                     dpo_snapshot_id=dpo.pk, parent=http)
    assert e.value.code == "incompatible_checkpoint"
    with pytest.raises(CommandError, match="DPO stage needs a DPO snapshot"):
        call_command("train", "--snapshot", str(sft.pk), "--stage", "dpo")
    for hyperparameters, says in (({"decoder_steps": 1.5}, "decoder_steps 1.5: must be a whole number"),
                                  ({"decoder_steps": 150, "decoder_replay": -0.1}, "decoder_replay -0.1"),
                                  ({"decoder_stepz": 150}, "Unknown hyper-parameter: .*decoder_stepz")):
        with pytest.raises(ValidationFailed, match=says) as e:
            train.training_run_create(project=loop_project, stage="both", sft_snapshot_id=sft.pk,
                                      dpo_snapshot_id=dpo.pk, hyperparameters=hyperparameters)
        assert e.value.code == "invalid_hyperparameters"
    run = train.training_run_create(project=loop_project, stage="both", sft_snapshot_id=sft.pk,
                                       dpo_snapshot_id=dpo.pk, hyperparameters={"decoder_steps": 150})
    assert run.parent == checkpoint and run.state == "pending" and run.hyperparameters["decoder_steps"] == 150


def test_a_refused_training_run_names_no_server_folder(loop_project, checkpoint, settings):
    """The trainer names the folders it reads (a temporary copy of the snapshot, the parent's weights
    under MEDIA_ROOT); the reason a user reads names neither."""
    empty = Snapshot.objects.create(project=loop_project, kind="sft", format="parquet", state=Snapshot.State.DONE,
                                    definition={}, definition_sha256="empty", manifest={"files": []})
    run = train.training_run_create(project=loop_project, stage="sft", sft_snapshot_id=empty.pk)
    with pytest.raises(ValidationFailed) as refused:
        train.training_run_execute(run_id=run.pk, evaluate=False)
    run.refresh_from_db()
    assert refused.value.code == "training_refused" and run.state == "failed"
    for message in (refused.value.message, run.error):
        assert "parquet" in message.lower()  # still says what was wrong
        assert "/tmp" not in message and str(settings.MEDIA_ROOT) not in message, message


@pytest.mark.parametrize("path, body, field", [
    ("rounds/", {"mask_ids": [1, 2**63]}, "mask_ids"),
    ("rounds/1/checkpoint", {"checkpoint": 2**63}, "checkpoint"),
    ("training-runs/", {"round": 2**31}, "round"),
    ("training-runs/", {"sft_snapshot": 2**63}, "sft_snapshot"),
    ("training-runs/", {"parent": -(2**63) - 1}, "parent"),
    ("generation-jobs/", {"masks": [2**64]}, "masks"),
])
def test_ids_and_indexes_beyond_the_database_are_refused(project, member, api, path, body, field):
    from modelzoo.models import GenerationJob
    from engine.models import TrainingRun

    r = api(member("lead")).post(f"/api/v1/projects/{project.slug}/{path}", body, format="json")
    assert r.status_code == 400, r.content[:300]
    assert field in r.json()["error"]["details"]
    assert not Round.objects.exists() and not TrainingRun.objects.exists() and not GenerationJob.objects.exists()
