"""Exports carry every representation: a textured GLB (still the datasets Mesh feature) and the
3DGS PLY of a splat, in Parquet columns and WebDataset keys, embedded and referenced, with nulls for
what a candidate lacks."""
import io

import pytest
from plyfile import PlyData

from engine.files import sha256_bytes, store_content_addressed
from modelzoo.models import Candidate
from modelzoo.splats import ply_bytes
from tests.exports.conftest import download
from tests.exports.test_loading import build
from tests.modelzoo.test_representations import pbr_glb
from tests.modelzoo.test_splats import random_splat

pytestmark = pytest.mark.django_db


def store(folder: str, extension: str, data: bytes) -> str:
    return store_content_addressed(folder=folder, sha256=sha256_bytes(data), extension=extension, data=data)


@pytest.fixture
def represented(world):
    """A new item: the winner a textured GLB with a splat, the loser a splat only."""
    item, (winner, loser) = world.item(2)
    Candidate.objects.filter(pk=winner).update(glb=store("candidates", "glb", pbr_glb(128)), textured=True,
                                               splat=store("splats", "ply", ply_bytes(random_splat(n=300))),
                                               num_gaussians=300)
    Candidate.objects.filter(pk=loser).update(glb="", glb_compact="",
                                              splat=store("splats", "ply", ply_bytes(random_splat(n=200, seed=1))),
                                              num_gaussians=200)
    world.judge(item, winner=winner, rating=5, comparisons=[(winner, loser, "left")])
    return world, item.pk, winner, loser


def test_dpo_parquet_has_mesh_and_splat_columns_datasets_loads(represented, tmp_path):
    import datasets

    world, item_id, winner, loser = represented
    snap = build(world.project, kind="dpo", format="parquet", assets="embedded")
    folder = download(snap, tmp_path)
    ds = datasets.load_dataset("parquet", data_files=str(folder / "data" / "train-*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert isinstance(ds.features["chosen_mesh"], datasets.Mesh)
    row = next(r for r in ds if r["group_id"] == item_id)
    assert row["chosen_textured"] is True and row["chosen_num_gaussians"] == 300
    assert row["chosen_mesh"] is not None and row["rejected_mesh"] is None  # the loser is a splat only
    assert PlyData.read(io.BytesIO(row["rejected_splat"]["bytes"]))["vertex"].count == 200
    assert PlyData.read(io.BytesIO(row["chosen_splat"]["bytes"]))["vertex"].count == 300
    others = [r for r in ds if r["group_id"] != item_id]
    assert others and all(r["chosen_splat"] is None and r["chosen_num_gaussians"] == 0 for r in others)
    card = (folder / "README.md").read_text()
    assert "## Representations" in card and "`chosen_splat`, `rejected_splat`" in card


def test_sft_webdataset_has_a_splat_key(represented, tmp_path):
    import webdataset as wds

    world, item_id, winner, _ = represented
    snap = build(world.project, kind="sft", format="webdataset", assets="embedded")
    folder = download(snap, tmp_path)
    samples = list(wds.WebDataset(sorted(str(p) for p in folder.glob("train-*.tar")), shardshuffle=False,
                                  empty_check=False))
    ours = next(s for s in samples if f"_c{winner:010d}" in s["__key__"])
    assert ours["mesh.glb"][:4] == b"glTF" and ours["splat.ply"].startswith(b"ply")
    assert all("splat.ply" not in s for s in samples if s is not ours)


def test_referenced_dpo_stores_splats_once_and_the_loader_resolves_them(represented, tmp_path):
    from modelzoo.training.loaders import referenced_dataset

    world, item_id, winner, loser = represented
    snap = build(world.project, kind="dpo", format="parquet", assets="referenced")
    folder = download(snap, tmp_path)
    import pyarrow.parquet as pq

    assets = pq.read_table(str(next((folder / "assets").glob("assets-*.parquet"))))
    kinds = assets.column("kind").to_pylist()
    assert kinds.count("splat") == 2 and assets.column("extension").to_pylist()[kinds.index("splat")] == "ply"
    ds = referenced_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
    row = next(r for r in ds if r["group_id"] == item_id)
    assert row["rejected_mesh"] is None and row["rejected_splat"]["bytes"].startswith(b"ply")
    assert row["chosen_mesh"] is not None
