"""Fixtures of the loop tests: a small built-in checkpoint file and hand-made Parquet
snapshot folders (the exports' schema) of one synthetic photo with real candidate GLBs."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from modelzoo import services


@pytest.fixture(scope="session")
def start_checkpoint_file() -> Path:
    """The committed bootstrap checkpoint."""
    return services.BOOTSTRAP_FILE


def _write(folder: Path, kind: str, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.exports.writers import SCHEMAS

    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMAS[kind]), folder / "data" / "train-000000.parquet")
    (folder / "README.md").write_text(f'---\nprovenance:\n  project: "t"\n  definition_sha256: "{kind}0"\n---\n')
    return folder


@pytest.fixture(scope="session")
def snapshot_dirs(tmp_path_factory, start_checkpoint_file) -> dict[str, Path]:
    """{"sft": folder, "dpo": folder}: one synthetic photo, 3 candidates of the start model."""
    from PIL import Image

    from engine import masks
    from modelzoo.builtin import BuiltinGenerator
    from modelzoo.generators.base import GenerationRequest
    from modelzoo.mesh import glb_bytes
    from modelzoo.synth import sample_scene

    s = sample_scene(123)
    cands = BuiltinGenerator.from_checkpoint(start_checkpoint_file, cached=False).generate(
        GenerationRequest(image=s.image, mask=s.mask, seeds=[0, 1, 2], steps=2))
    buf = io.BytesIO()
    Image.fromarray(s.image).save(buf, format="PNG")
    h, w = s.mask.shape
    base = {"round": 1, "is_gold": False, "image_id": 1, "image": {"bytes": buf.getvalue(), "path": "a.png"},
            "image_sha256": "a", "mask": {"size": [h, w], "counts": masks.encode(s.mask)},
            "mask_bbox": masks.bbox_of(s.mask), "label": "object"}

    def side(prefix, i):
        c = cands[i]
        return {f"{prefix}candidate_id": 10 + i, f"{prefix}source": "candidate",
                f"{prefix}mesh": {"bytes": glb_bytes(c.vertices, c.faces, c.vertex_colors), "path": f"c{i}.glb"},
                f"{prefix}checkpoint_id": 1, f"{prefix}checkpoint": "builtin:test", f"{prefix}seed": i,
                f"{prefix}steps": 2, f"{prefix}layout": c.layout.as_dict()}

    root = tmp_path_factory.mktemp("snapshots")
    sft = [{"key": "i1_c10", "item_id": 1, **base, "is_hard_case": False, **side("", 0), "layout_model": None,
            "layout_adjusted": False, "rating": 4.0, "ratings": [4], "annotators": ["a"], "judgement_ids": [1]},
           # a hard case's artist mesh, placed by the artist
           {"key": "i1_a1", "item_id": 1, **base, "is_hard_case": True, **side("", 1), "candidate_id": None,
            "source": "artist", "checkpoint_id": None, "checkpoint": None, "seed": None, "steps": None,
            "layout_model": None, "layout_adjusted": False, "rating": 2.0, "ratings": [2], "annotators": ["a"],
            "judgement_ids": [1]}]
    dpo = [{"key": f"i1_p{k}", "group_id": 1, **base, "judgement_id": 1, "annotator": "a", "pairing": "winner_beat",
            "comparison_index": None, **side("chosen_", 0), **side("rejected_", k), "score_chosen": 2.0,
            "score_rejected": 0.0, "margin": 2.0, "is_tie": False, "rating": 4} for k in (1, 2)]
    return {"sft": _write(root / "sft", "sft", sft), "dpo": _write(root / "dpo", "dpo", dpo)}


@pytest.fixture(scope="session")
def artist_tables_dir(tmp_path_factory, snapshot_dirs) -> Path:
    """An SFT folder of three household tables modelled by a simulated artist (their true meshes
    with the artist's error), beside the model's own pick of the fixture's photo."""
    import numpy as np
    import pyarrow.parquet as pq

    from modelzoo.mesh import glb_bytes
    from modelzoo.synth import sample_scene
    from modelzoo.synth.artist import ArtistError, artist_mesh

    model_pick = pq.read_table(snapshot_dirs["sft"] / "data" / "train-000000.parquet").to_pylist()[0]
    rows, seed, rng = [model_pick], 0, np.random.default_rng(0)
    while len(rows) < 4:
        seed += 1
        s = sample_scene(seed, domain="household")
        if s.shape.category != "table":
            continue
        v, f, layout = artist_mesh(*s.gt_mesh(), s.layout, ArtistError(), rng)
        rows.append({**model_pick, "key": f"i{seed}_a", "item_id": seed, "is_hard_case": True, "source": "artist",
                     "candidate_id": None, "checkpoint_id": None, "checkpoint": None, "seed": None, "steps": None,
                     "mesh": {"bytes": glb_bytes(v, f, None), "path": f"table{seed}.glb"},
                     "layout": layout.as_dict()})
    return _write(tmp_path_factory.mktemp("tables") / "sft", "sft", rows)


@pytest.fixture
def tiny_hp():
    from modelzoo.training import HyperParameters

    return HyperParameters(sft_steps=3, dpo_steps=3, sft_batch=4, dpo_batch=4, noise_repeats=2, decoder_steps=3,
                           decoder_batch=4)


@pytest.fixture
def pre_ranked_project(project, start_checkpoint_file, tmp_path, monkeypatch):
    """A project with two masks, the bootstrap in its mix and a ranker (untrained weights: the
    mechanics do not depend on what it learnt)."""
    import torch

    from engine.rounds import generate
    from modelzoo.ranker import RankerNet
    from tests.modelzoo_engine.conftest import photo_with_masks

    photo_with_masks(project, seed=0, n_masks=2)
    gen = services.checkpoint_register(name="builtin", version="start", backend="builtin",
                                 data=start_checkpoint_file.read_bytes())[0]
    services.project_mix_set(project=project, mix=[(gen, 1.0)])
    torch.manual_seed(0)
    RankerNet(width=8, hidden=16).save(tmp_path / "r.pt")
    ranker = services.checkpoint_register(name="ranker", version="t", backend="ranker", role="ranker",
                                    data=(tmp_path / "r.pt").read_bytes(), project=project)[0]
    monkeypatch.setattr(generate, "job_items_enqueue", lambda *, job_item_ids: None)
    return project, gen, ranker
