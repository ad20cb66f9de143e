"""The reference trainer on snapshot folders, outside Django: it trains, writes lineage, and
refuses what it cannot use with a message saying what to do. (The DPO loss against a
hand-computed value is tests/modelzoo/test_losses.py.)"""
from __future__ import annotations

import json

import pytest
import torch

from modelzoo.builtin import BuiltinModel
from modelzoo.training import TrainingError, open_snapshot, train


def test_snapshot_kind_comes_from_the_columns(snapshot_dirs):
    assert open_snapshot(str(snapshot_dirs["sft"])).kind == "sft"
    dpo = open_snapshot(str(snapshot_dirs["dpo"]))
    assert dpo.kind == "dpo" and len(dpo.rows) == 2 and dpo.definition_sha256 == "dpo0"


def test_sft_then_dpo_writes_a_checkpoint_with_lineage(snapshot_dirs, start_checkpoint_file, tiny_hp, tmp_path):
    out = tmp_path / "new.pt"
    seen = []
    record = train(checkpoint=str(start_checkpoint_file), out=str(out), stage="both", sft_dir=str(snapshot_dirs["sft"]),
                   dpo_dir=str(snapshot_dirs["dpo"]), hp=tiny_hp, lineage={"parent_checkpoint_id": 7},
                   log=lambda m: None, progress=lambda **kw: seen.append(kw["stage"]))
    assert seen.count("sft") == 3 and seen.count("dpo") == 3
    assert record["snapshots"]["sft"]["examples"] == 2 and record["snapshots"]["dpo"]["pairs"] == 2
    assert 0.0 <= record["dpo_reward_accuracy"] <= 1.0
    saved = json.loads((tmp_path / "new.json").read_text())
    assert saved["parent_checkpoint_id"] == 7 and saved["hyperparameters"]["beta"] == tiny_hp.beta
    model = BuiltinModel.load(str(out))
    assert model.meta["parent"]["sha256"] == record["parent"]["sha256"]
    assert model.meta["snapshots"]["dpo"]["definition_sha256"] == "dpo0"
    parent = BuiltinModel.load(str(start_checkpoint_file))
    # the shape encoder is frozen (flow targets live in its latent space); the flow moved, and the
    # decoder learned from the artist's mesh (the model's own pick is not a decoder target)
    assert torch.equal(model.shape_encoder.net[0].weight, parent.shape_encoder.net[0].weight)
    assert not torch.equal(model.velocity_net.inp.weight, parent.velocity_net.inp.weight)
    assert not torch.equal(model.shape_decoder.fc.weight, parent.shape_decoder.fc.weight)
    assert record["snapshots"]["sft"]["decoder_shapes"] == 1 and seen.count("decoder") == 3


def test_sft_on_the_targets_worth_fitting_only(snapshot_dirs, start_checkpoint_file, tiny_hp, tmp_path):
    from dataclasses import replace

    def run(sources):
        return train(checkpoint=str(start_checkpoint_file), out=str(tmp_path / "s.pt"), stage="sft",
                     sft_dir=str(snapshot_dirs["sft"]), hp=replace(tiny_hp, sft_sources=sources), log=lambda m: None)

    assert run("artist")["snapshots"]["sft"]["examples"] == 1  # the artist's mesh, not the model's own sample
    assert run("artist,model")["snapshots"]["sft"]["examples"] == 2
    with pytest.raises(TrainingError, match="no row has a mesh with a layout from retrieval"):
        run("retrieval")
    # SFT then DPO, in a round where nothing worth fitting came: DPO alone
    both = train(checkpoint=str(start_checkpoint_file), out=str(tmp_path / "b.pt"), stage="both",
                 sft_dir=str(snapshot_dirs["sft"]), dpo_dir=str(snapshot_dirs["dpo"]),
                 hp=replace(tiny_hp, sft_sources="retrieval"), log=lambda m: None)
    assert both["snapshots"]["sft"]["examples"] == 0 and "sft" not in both["history"] and "dpo" in both["history"]
    with pytest.raises(TrainingError, match="use 'all' or a comma list of artist, retrieval, model"):
        run("artists")


def test_the_decoder_learns_the_artists_shapes_and_the_flow_keeps_its_latents(artist_tables_dir,
                                                                             start_checkpoint_file, tiny_hp,
                                                                             tmp_path):
    """The bootstrap's decoder learned primitives: a table's own latent comes back as a slab.
    With a decoder stage, the artists' tables come back as tables; the encoder (which gives the
    flow its targets) does not move, and the model's own pick is not a decoder target."""
    from dataclasses import replace

    from modelzoo.training.snapshot import Encoder, shape_occupancies

    record = train(checkpoint=str(start_checkpoint_file), out=str(tmp_path / "t.pt"), stage="sft",
                   sft_dir=str(artist_tables_dir), hp=replace(tiny_hp, decoder_steps=30, decoder_batch=12),
                   log=lambda m: None)
    assert record["snapshots"]["sft"]["decoder_shapes"] == 3 and record["history"]["decoder"][-1]["step"] == 29
    parent, model = BuiltinModel.load(str(start_checkpoint_file)), BuiltinModel.load(str(tmp_path / "t.pt"))
    tables = shape_occupancies(open_snapshot(str(artist_tables_dir)), Encoder(parent), ("artist",))

    def round_trip_iou(m):
        with torch.no_grad():
            back = m.shape_decoder(m.shape_encoder(tables)) > 0
        inside = tables > 0.5
        return ((back & inside).sum((1, 2, 3)) / (back | inside).sum((1, 2, 3))).mean().item()

    before, after = round_trip_iou(parent), round_trip_iou(model)
    assert before < 0.6 and after > before + 0.15, (before, after)
    assert torch.equal(model.shape_encoder.net[0].weight, parent.shape_encoder.net[0].weight)
    assert not torch.equal(model.velocity_net.inp.weight, parent.velocity_net.inp.weight)

    nothing = train(checkpoint=str(start_checkpoint_file), out=str(tmp_path / "n.pt"), stage="sft",
                    sft_dir=str(artist_tables_dir), hp=replace(tiny_hp, decoder_steps=5, decoder_sources="retrieval"),
                    log=lambda m: None)
    assert nothing["snapshots"]["sft"]["decoder_shapes"] == 0 and "decoder" not in nothing["history"]
    assert torch.equal(BuiltinModel.load(str(tmp_path / "n.pt")).shape_decoder.fc.weight,
                       parent.shape_decoder.fc.weight)


def test_dpo_on_the_pairs_whose_winner_came_from_the_sources_given(snapshot_dirs, start_checkpoint_file, tiny_hp,
                                                                    tmp_path):
    from dataclasses import replace

    def run(sources):
        return train(checkpoint=str(start_checkpoint_file), out=str(tmp_path / "d.pt"), stage="dpo",
                     dpo_dir=str(snapshot_dirs["dpo"]), hp=replace(tiny_hp, dpo_sources=sources), log=lambda m: None)

    assert "dpo" in run("artist,model")["history"]  # both pairs' winner is the model's own sample
    with pytest.raises(TrainingError, match="no preference pair .* whose chosen side is from retrieval"):
        run("retrieval")
    with pytest.raises(TrainingError, match="dpo_sources 'models': use 'all' or a comma list"):
        run("models")


def test_refuses_a_snapshot_of_the_wrong_kind(snapshot_dirs, start_checkpoint_file, tiny_hp, tmp_path):
    with pytest.raises(TrainingError, match=r"SFT stage needs an SFT snapshot.*is a DPO snapshot.*--kind sft"):
        train(checkpoint=str(start_checkpoint_file), out=str(tmp_path / "x.pt"), stage="sft",
              sft_dir=str(snapshot_dirs["dpo"]), hp=tiny_hp, log=lambda m: None)
    with pytest.raises(TrainingError, match="DPO stage needs a DPO snapshot"):
        train(checkpoint=str(start_checkpoint_file), out=str(tmp_path / "x.pt"), stage="both",
              sft_dir=str(snapshot_dirs["sft"]), dpo_dir=str(snapshot_dirs["sft"]), hp=tiny_hp, log=lambda m: None)
    assert not (tmp_path / "x.pt").exists()


def test_refuses_a_folder_without_parquet(tmp_path, start_checkpoint_file):
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap" / "train-000000.tar").write_bytes(b"")
    with pytest.raises(TrainingError, match="export it again with --format parquet"):
        train(checkpoint=str(start_checkpoint_file), out=str(tmp_path / "x.pt"), stage="sft",
              sft_dir=str(tmp_path / "snap"), log=lambda m: None)


def test_refuses_an_incompatible_checkpoint(snapshot_dirs, start_checkpoint_file, tiny_hp, tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "someone-else/3", "weights": torch.zeros(3)}, foreign)
    with pytest.raises(TrainingError, match="not a built-in model checkpoint"):
        train(checkpoint=str(foreign), out=str(tmp_path / "x.pt"), stage="sft", sft_dir=str(snapshot_dirs["sft"]),
              hp=tiny_hp, log=lambda m: None)
    other_arch = tmp_path / "small.pt"
    BuiltinModel(latent_dim=16, hidden=64, depth=1).save(str(other_arch))
    with pytest.raises(TrainingError, match="architecture .* differs"):
        train(checkpoint=str(start_checkpoint_file), out=str(tmp_path / "x.pt"), stage="dpo",
              dpo_dir=str(snapshot_dirs["dpo"]), reference=str(other_arch), hp=tiny_hp, log=lambda m: None)


def test_the_ranker_trains_on_a_dpo_snapshot_and_refuses_an_sft_one(snapshot_dirs, tmp_path):
    import json

    from modelzoo.ranker import RankerHyperParameters, RankerNet, train_ranker

    out = tmp_path / "ranker.pt"
    record = train_ranker(dpo_dir=str(snapshot_dirs["dpo"]), out=str(out), log=lambda m: None,
                          hp=RankerHyperParameters(epochs=2, held_out=0.0, validation=0.0))
    assert record["pairs"] == 2 and record["objects"] == 1 and record["candidates"] == 3
    assert record["snapshot"]["definition_sha256"] == "dpo0" and record["held_out_agreement"] is None
    assert json.loads((tmp_path / "ranker.json").read_text())["sha256"] == record["sha256"]
    RankerNet.check(str(out))
    with pytest.raises(TrainingError, match="needs a DPO snapshot"):
        train_ranker(dpo_dir=str(snapshot_dirs["sft"]), out=str(tmp_path / "x.pt"), log=lambda m: None)


@pytest.mark.parametrize("given, says", [
    ({"decoder_replay": 1.0}, "decoder_replay 1.0: the share of a decoder batch .* below 1"),
    ({"decoder_steps": -1}, "decoder_steps -1: must be at least 0"),
    ({"sft_batch": 0}, "sft_batch 0: must be at least 1"),
    ({"dpo_lr": 0}, "dpo_lr 0: must be positive"),
    ({"sft_steps": "300"}, "sft_steps '300': must be a whole number"),
    ({"decoder_sources": "artists"}, "decoder_sources 'artists': use 'all' or a comma list"),
])
def test_hyperparameters_that_cannot_train_are_refused_before_any_work(snapshot_dirs, start_checkpoint_file,
                                                                       tmp_path, given, says):
    from modelzoo.training import HyperParameters

    with pytest.raises(TrainingError, match=says):
        train(checkpoint=str(start_checkpoint_file), out=str(tmp_path / "x.pt"), stage="sft",
              sft_dir=str(snapshot_dirs["sft"]), hp=HyperParameters(**given), log=lambda m: None)
    assert not (tmp_path / "x.pt").exists()


def test_each_real_shape_is_also_seen_in_new_photos_that_show_it(artist_tables_dir, start_checkpoint_file,
                                                                  tiny_hp, tmp_path):
    """With sft_views, an artist's mesh trains from more photos than the item's own: renders at new
    poses, each paired with that pose as its layout target; the model's own pick gets none."""
    from dataclasses import replace

    import numpy as np

    from modelzoo.mesh.glb import read_glb
    from modelzoo.synth.shapes import FIT, NOMINAL_HALF_SIZE
    from modelzoo.training.views import render_views

    record = train(checkpoint=str(start_checkpoint_file), out=str(tmp_path / "v.pt"), stage="sft",
                   sft_dir=str(artist_tables_dir), hp=replace(tiny_hp, sft_views=2, decoder_steps=0),
                   log=lambda m: None)
    assert record["snapshots"]["sft"]["examples"] == 4 + 3 * 2  # 4 rows, 2 views of each of the 3 tables

    table = next(r for r in open_snapshot(str(artist_tables_dir)).rows if r["source"] == "artist")
    vertices, faces, _ = read_glb(table["mesh"]["bytes"])
    views = render_views(vertices, faces, 3, np.random.default_rng(0))
    again = render_views(vertices, faces, 3, np.random.default_rng(0))
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(views, again))
    lo, hi = vertices.min(0), vertices.max(0)
    normalised = (vertices - (lo + hi) / 2) / ((hi - lo).max() / 2) * FIT
    for view in views:
        # the mesh at the view's layout, projected: its vertices fall on the rendered silhouette
        cam = view.t + (view.scale * NOMINAL_HALF_SIZE * normalised) @ view.R.T
        u = view.K[0, 2] + view.K[0, 0] * cam[:, 0] / -cam[:, 2]
        v = view.K[1, 2] - view.K[1, 1] * cam[:, 1] / -cam[:, 2]
        ui, vi = np.clip(u.astype(int), 0, 127), np.clip(v.astype(int), 0, 127)
        near = np.zeros_like(view.mask)
        for du in (-1, 0, 1):
            for dv in (-1, 0, 1):
                near |= np.roll(np.roll(view.mask, du, 1), dv, 0)
        assert near[vi, ui].mean() > 0.95 and 40 <= view.mask.sum() < 128 * 128 * 0.6
    assert len({round(float(v.t[2]), 3) for v in views}) == 3  # three poses, not one
