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
from engine.rounds.ranker import ranker_train
from engine.stats.selectors import ranker_agreement
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
def test_a_ranker_trained_on_a_round_is_registered_with_its_lineage(project, snapshot_dirs, capsys, member, client):
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
    assert [(r["round"], r["snapshot"]) for r in ranker_agreement(project)] == [(1, snap.pk)]
    # the dashboard shows each round's ranker agreement
    from engine.models import Role

    Checkpoint.objects.filter(pk=cp.pk).update(evaluation={**cp.evaluation, "held_out_agreement": 0.71})
    client.force_login(member(Role.LEAD))
    html = client.get(f"/projects/{project.slug}/dashboard/").content.decode()
    assert "Ranker agreement with held-out annotator picks" in html and "round 1:" in html and "71%" in html
    # a ranker scores candidates: it never generates them
    with pytest.raises(ValidationFailed, match="is a ranker"):
        mz.project_mix_set(project=project, mix=[(cp, 1.0)])
    call_command("ranker", "--snapshot", str(snap.pk), "--epochs", "2", "--held-out", "0.0", "--validation", "0.0")
    assert "registered ranker:" in capsys.readouterr().out
    # an ensemble of three, no mirrored pairs: the flags reach the trainer and its record
    call_command("ranker", "--snapshot", str(snap.pk), "--epochs", "2", "--held-out", "0.0", "--members", "3",
                 "--mirror", "false")
    ensemble = Checkpoint.objects.filter(role=Checkpoint.Role.RANKER).latest("pk")
    assert ensemble.recipe["hyperparameters"]["members"] == 3 and ensemble.recipe["hyperparameters"]["mirror"] is False
    assert cp.recipe["hyperparameters"]["members"] == 1 and cp.recipe["hyperparameters"]["mirror"] is True
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="'maybe' is not true or false"):
        call_command("ranker", "--snapshot", str(snap.pk), "--mirror", "maybe")


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


@pytest.mark.django_db
def test_pre_ranking_shows_the_rankers_top_n_and_random_draws_and_records_every_candidate(pre_ranked_project):
    from engine.rounds import generate, services
    from modelzoo.models import Candidate, GenerationJobItem

    project, gen, ranker = pre_ranked_project
    rnd = services.round_open(project=project, steps=2, pre_rank={"ranker": ranker.pk, "generate": 10, "shown": 3,
                                                                  "random": 1})
    job_item = GenerationJobItem.objects.filter(job__round=rnd).first()
    assert len(job_item.plan) == 10 and job_item.job.candidates_per_item == 4
    generate.job_item_generate(job_item_id=job_item.pk)
    job_item.refresh_from_db()
    ranking = job_item.ranking
    assert len(ranking) == 10 and [r["rank"] for r in ranking] == list(range(1, 11))
    assert [r["score"] for r in ranking] == sorted((r["score"] for r in ranking), reverse=True)
    assert [r["shown"] for r in ranking[:3]] == ["top"] * 3
    assert [r["shown"] for r in ranking[3:]].count("random") == 1 and [r["shown"] for r in ranking].count(None) == 6
    shown = {(r["checkpoint"], r["seed"]): r for r in ranking if r["shown"]}
    cands = list(Candidate.objects.filter(item=job_item.item))
    assert {(c.checkpoint_id, c.seed) for c in cands} == set(shown) == {tuple(p) for p in job_item.plan}
    for c in cands:
        r = shown[(c.checkpoint_id, c.seed)]
        assert (c.selection, c.ranker_rank) == (r["shown"], r["rank"]) and c.ranker_score == pytest.approx(r["score"], abs=1e-5)
    job_item.item.refresh_from_db()
    assert job_item.item.state == "ready" and job_item.state == "done"
    # again (a duplicate delivery): nothing new
    generate.job_item_generate(job_item_id=job_item.pk)
    assert Candidate.objects.filter(item=job_item.item).count() == 4


@pytest.mark.django_db
def test_pre_ranking_refuses_what_it_cannot_do(pre_ranked_project):
    from engine.rounds import services

    project, gen, ranker = pre_ranked_project
    for pre_rank, message in [({"ranker": gen.pk}, "is not a ranker"),
                              ({"ranker": ranker.pk, "generate": 4, "shown": 6}, "at most generate"),
                              ({"ranker": ranker.pk, "shown": 0}, "at least 1"),
                              ({"ranker": ranker.pk, "beam": 3}, "Unknown pre_rank"),
                              ({"ranker": "x"}, "whole numbers")]:
        with pytest.raises(ValidationFailed, match=message):
            services.round_open(project=project, pre_rank=pre_rank)
    with pytest.raises(ValidationFailed, match="not candidates_per_item"):
        services.round_open(project=project, candidates_per_item=5, pre_rank={"ranker": ranker.pk})
