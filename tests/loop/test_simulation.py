"""A tiny simulated data engine, end to end: synthetic objects ingested, annotators working
over HTTP against a live server, generation by the task function, the round closed with its
snapshots, SFT + DPO training, the checkpoint registered with its lineage and evaluated."""
from __future__ import annotations

import json
from collections import Counter

import pytest
from django.core.management import call_command

from engine.models import Round, TrainingRun
from engine.rounds.simulation import Setting, Simulation
from engine.rounds.train import checkpoint_evaluation
from modelzoo.metrics import expected_win_rate
from modelzoo.models import Checkpoint, ProjectCheckpoint


@pytest.mark.django_db(transaction=True)
def test_one_round_of_the_loop_registers_a_checkpoint_with_lineage(live_server, start_checkpoint_file):
    setting = Setting(rounds=1, annotators=2, items_per_round=3, candidates=3, steps=2, alpha=1, eval_n=2,
                      rating_round=False, inline_generation=True, stage="both", domain="household",
                      hyperparameters={"sft_steps": 3, "dpo_steps": 3, "sft_batch": 4, "dpo_batch": 4,
                                       "noise_repeats": 2, "decoder_steps": 3, "decoder_batch": 4})
    out = Simulation(setting, slug="tiny-sim", base_url=live_server.url, checkpoint_path=str(start_checkpoint_file),
                     log=lambda m: None).run()

    rnd = Round.objects.get(project__slug="tiny-sim", index=1)
    assert rnd.state == Round.State.CLOSED and rnd.sft_snapshot.state == "done" and rnd.dpo_snapshot.kind == "dpo"
    cp = rnd.checkpoint_produced
    start = Checkpoint.objects.get(lineage__bootstrap=True)
    assert cp.parent == start and cp.backend == "builtin"
    assert cp.lineage["sft_snapshot_id"] == rnd.sft_snapshot_id
    assert cp.lineage["dpo_snapshot_id"] == rnd.dpo_snapshot_id
    assert cp.lineage["round"] == 1 and cp.lineage["parent_sha256"] == start.sha256
    assert cp.recipe["hyperparameters"]["sft_steps"] == 3 and "dpo" in cp.recipe["history"]
    assert cp.evaluation["gold_set"]["n"] == 2 and 0 <= cp.evaluation["model"]["voxel_iou@64"] <= 1
    # scored on the project's own domain too, stored beside the pretraining gold set's figures
    household = cp.evaluation["domains"]["household"]
    assert household["gold_set"]["domain"] == "household" and len(household["per_scene"]["voxel_iou@64"]) == 2
    run = TrainingRun.objects.get(round=rnd)
    assert run.state == "done" and run.progress["stage"] == "dpo" and run.progress["fraction"] == 1.0
    # the loss curves the console draws, live: the trainer's history of each stage so far
    assert [p["step"] for p in run.progress["losses"]["sft"]] == [0, 2] and len(run.progress["losses"]["dpo"]) == 2
    # the new checkpoint generates next, mixed with its parent
    assert dict(ProjectCheckpoint.objects.filter(project=rnd.project).values_list("checkpoint_id", "share")) == {
        cp.pk: 0.5, start.pk: 0.5}
    result = out["result"]
    assert len(result["viou_by_round"]) == 2 and len(result["chamfer_by_round"]) == 2
    assert result["viou_by_round"][1] == round(household["model"]["voxel_iou@64"], 5)
    assert len(result["viou_by_round_primitives_gold"]) == 2 and result["domain"] == "household"
    assert result["judgements_by_round"] == [3]
    json.dumps(result)
    call_command("round", "status", "--project", "tiny-sim")


@pytest.mark.django_db(transaction=True)
def test_artists_model_the_hard_cases_and_retrieval_joins_the_mix(live_server, start_checkpoint_file):
    from annotation.models import ArtistMesh, Item
    from modelzoo.models import Candidate

    # alpha 5: nearly every item is a hard case, so the artist has work
    setting = Setting(rounds=1, annotators=1, items_per_round=3, candidates=4, steps=2, alpha=5, eval_n=2,
                      rating_round=True, rating_items=4, inline_generation=True, stage="both", domain="household",
                      artists=1,
                      retrieval_share=0.25, retrieval_library=4, sft_sources="artist,retrieval",
                      hyperparameters={"sft_steps": 3, "dpo_steps": 3, "sft_batch": 4, "dpo_batch": 4,
                                       "noise_repeats": 2, "decoder_steps": 3, "decoder_batch": 4})
    out = Simulation(setting, slug="tiny-art", base_url=live_server.url, checkpoint_path=str(start_checkpoint_file),
                     log=lambda m: None).run()
    result = out["result"]
    rnd = Round.objects.get(project__slug="tiny-art", index=1)
    hard = Item.objects.filter(round=rnd, hard_case=True)
    meshes = ArtistMesh.objects.filter(item__round=rnd)
    assert hard.exists() and meshes.count() == hard.count()  # every hard case got its mesh, over HTTP
    assert all(m.layout and m.time_spent_ms > 0 and m.uploaded_by.username == "tiny-art-artist1" for m in meshes)
    assert result["artist_meshes_by_round"][0] == meshes.count() and result["artist_hours_by_round"][0] > 0
    # SFT fitted the artists' meshes (and retrieval picks), not the model's own samples
    cp = rnd.checkpoint_produced
    assert cp.lineage["snapshots"]["sft"]["sources"] == "artist,retrieval"
    assert cp.lineage["snapshots"]["sft"]["examples"] >= meshes.count()
    # and the shape decoder learned the artists' meshes and the retrieved shapes
    assert cp.lineage["snapshots"]["sft"]["decoder_shapes"] >= meshes.count()
    # the retrieval backend generated a share of the candidates
    retrieval = Checkpoint.objects.get(backend="retrieval")
    assert retrieval.candidates.filter(item__round=rnd).count() == 3  # 1 of 4 candidates per item
    # the win rate against the bootstrap: direct comparisons on the gold scenes, each of the 4
    # candidates of a scene against each of the bootstrap's, judged as the annotators judge
    ious = [checkpoint_evaluation(c, "household")["per_scene"]["annotator_iou@32"] for c in (cp, cp.parent)]
    assert [len(x) for x in ious[0]] == [4, 4] and result["comparisons_vs_bootstrap_by_round"] == [2 * 16]
    assert result["win_rate_vs_bootstrap_by_round"] == [round(expected_win_rate(*ious, 0.02, 0.1), 4)]
    assert len(result["win_rate_vs_bootstrap_in_rounds"]) == 1
    assert "vs boot" in out["table"]
    # the rating round, an arena of its own size: the bootstrap and round 1's checkpoint each draw half
    # of the models' candidates (3 of an object's 4, retrieval keeping 1), so they meet as often as they can
    rating = Round.objects.get(project__slug="tiny-art", index=2)
    assert rating.items.count() == 4 and result["judgements_by_round"] == [3, 4]
    drawn = Counter(Candidate.objects.filter(item__round=rating).values_list("checkpoint_id", flat=True))
    assert drawn == {cp.parent_id: 6, cp.pk: 6, retrieval.pk: 4}
    json.dumps(result)


@pytest.mark.django_db(transaction=True)
def test_pre_ranking_in_the_loop_trains_a_ranker_each_round_and_ranks_the_next(live_server, start_checkpoint_file):
    from modelzoo.models import GenerationJob

    setting = Setting(rounds=2, annotators=1, items_per_round=4, candidates=3, steps=2, alpha=1, eval_n=2,
                      rating_round=True, inline_generation=True, stage="dpo", domain="household", pre_rank=5,
                      pre_rank_random=1, hyperparameters={"dpo_steps": 3, "dpo_batch": 4, "noise_repeats": 2})
    out = Simulation(setting, slug="tiny-rank", base_url=live_server.url, checkpoint_path=str(start_checkpoint_file),
                     log=lambda m: None).run()
    result = out["result"]
    rankers = Checkpoint.objects.filter(role=Checkpoint.Role.RANKER, lineage__project="tiny-rank").order_by("pk")
    # a ranker learned from each training round's pairs, its held-out agreement reported by round
    assert [r.lineage["round"] for r in rankers] == [1, 2]
    assert len(result["ranker_agreement_by_round"]) == 2
    jobs = {j.round.index: j for j in GenerationJob.objects.filter(round__project__slug="tiny-rank")}
    # round 1 had no ranker yet; round 2 generated 5 an object and showed round 1's ranker's top 2 + 1 drawn;
    # the rating round is not pre-ranked, so it rates the last checkpoint on its samples as they come
    assert jobs[1].pre_rank == {} and jobs[3].pre_rank == {}
    assert jobs[2].pre_rank == {"ranker": rankers[0].pk, "generate": 5, "shown": 2, "random": 1}
    for ji in jobs[2].job_items.all():
        assert len(ji.ranking) == 5 and sum(r["shown"] is not None for r in ji.ranking) == 3
        assert ji.item.candidates.count() == 3
    assert result["judgements_by_round"] == [4, 4, 4]


def test_simulate_refuses_a_pre_ranking_smaller_than_what_annotators_see():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--pre-rank 4: generate at least as many candidates"):
        call_command("simulate", "--pre-rank", "4", "--candidates", "6")
