"""Each format loaded with the libraries trainers use: datasets, webdataset, pyarrow; and the card."""
import io

import pytest
import yaml

from engine.exports import services
from tests.exports.conftest import download

pytestmark = pytest.mark.django_db


def build(project, **kwargs):
    snapshot, _ = services.snapshot_define(project=project, **kwargs)
    return services.snapshot_build(snapshot_id=snapshot.pk)


def test_parquet_loads_with_datasets_decoding_images_and_meshes(world, tmp_path):
    import datasets

    snap = build(world.project, kind="dpo", format="parquet", shard_bytes=4096, assets="embedded")
    folder = download(snap, tmp_path)
    ds = datasets.load_dataset("parquet", data_files=str(folder / "data" / "train-*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert len(ds) == snap.rows_total == 11
    assert isinstance(ds.features["image"], datasets.Image) and isinstance(ds.features["chosen_mesh"], datasets.Mesh)
    row = ds[0]
    assert row["image"].size == (64, 48)
    chosen, rejected = row["chosen_mesh"].to_geometry(), row["rejected_mesh"].to_geometry()  # trimesh Scene
    assert len(chosen.vertices) == 4 and len(rejected.faces) == 4
    # From the folder, through the card's configs/data_files.
    ds2 = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "hf2"))
    assert len(ds2) == 11
    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    assert front["dataset_info"]["splits"][0]["num_examples"] == 11
    prov = front["provenance"]
    assert prov["project"] == world.project.slug and prov["rounds"] == [1, 2]
    assert prov["checkpoints"] == ["builtin:v1", "builtin:v2"] and prov["counts"]["rows"] == 11
    assert prov["definition"]["pairing"] == "recorded" and prov["engine_version"]


def test_webdataset_loads(world, tmp_path):
    import webdataset as wds
    from PIL import Image

    snap = build(world.project, kind="sft", format="webdataset", shard_bytes=8192)
    folder = download(snap, tmp_path)
    shards = sorted(str(p) for p in folder.glob("train-*.tar"))
    assert len(shards) >= 2 and all(p.endswith(f"train-{i:06d}.tar") for i, p in enumerate(shards))
    samples = list(wds.WebDataset(shards, shardshuffle=False, empty_check=False).decode("pil"))
    assert len(samples) == snap.rows_total == 4
    for s in samples:
        assert "." not in s["__key__"]
        assert isinstance(s["image.png"], Image.Image) and s["mesh.glb"][:4] == b"glTF"
        assert s["json"]["key"] == s["__key__"]
    assert sum(s["json"]["is_hard_case"] for s in samples) == 1


def test_dpo_webdataset_has_both_meshes(world, tmp_path):
    import webdataset as wds

    snap = build(world.project, kind="dpo", format="webdataset", assets="embedded")
    folder = download(snap, tmp_path)
    samples = list(wds.WebDataset(str(folder / "train-000000.tar"), shardshuffle=False, empty_check=False))
    assert len(samples) == snap.rows_total
    assert all(s["chosen.glb"][:4] == b"glTF" and s["rejected.glb"][:4] == b"glTF" for s in samples)


def test_cli_export(world, tmp_path):
    from django.core.management import call_command

    out = io.StringIO()
    call_command("export", project=world.project.slug, kind="dpo", format="parquet", out=str(tmp_path / "ds"),
                 pairing="winner_beat", no_progress=True, stdout=out)
    assert "rows" in out.getvalue()
    import pyarrow.parquet as pq

    rows = pq.read_table(str(tmp_path / "ds" / "data")).num_rows
    assert rows > 0 and (tmp_path / "ds" / "README.md").exists()
