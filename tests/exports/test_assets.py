"""The referenced layout: every photo and mesh stored once by sha256, rows refer to them, and the
loaders (datasets, webdataset) give back what the embedded layout holds."""
import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from django.core.files.storage import default_storage

from engine.errors import ValidationFailed
from engine.exports import services
from modelzoo.training.loaders import ParquetAssets, TarAssets, referenced_dataset
from tests.exports.conftest import download

pytestmark = pytest.mark.django_db

FILES = ("image", "chosen_mesh", "rejected_mesh")


def build(project, **kwargs):
    snapshot, _ = services.snapshot_define(project=project, **kwargs)
    return services.snapshot_build(snapshot_id=snapshot.pk)


def test_defaults_and_options(world):
    dpo, _ = services.snapshot_define(project=world.project, kind="dpo", format="parquet")
    sft, _ = services.snapshot_define(project=world.project, kind="sft", format="webdataset")
    embedded, _ = services.snapshot_define(project=world.project, kind="dpo", format="parquet", assets="embedded")
    assert dpo.definition["assets"] == "referenced"
    assert "assets" not in sft.definition and "assets" not in embedded.definition  # hashes from before kept
    assert embedded.pk != dpo.pk
    for kwargs in ({"format": "jsonl", "assets": "referenced"}, {"format": "parquet", "assets": "linked"}):
        with pytest.raises(ValidationFailed) as err:
            services.snapshot_define(project=world.project, kind="dpo", **kwargs)
        assert err.value.code == "invalid_option"


def test_parquet_assets_stored_once_and_verified(world, tmp_path):
    snap = build(world.project, kind="dpo", format="parquet", keep_ties=True, shard_bytes=4096)
    folder = download(snap, tmp_path)
    for entry in snap.manifest["files"]:  # the manifest's sha256s verify, asset shards included
        data = (folder / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"]
    assert any(e["path"].startswith("assets/") for e in snap.manifest["files"])
    assets = pq.read_table(sorted(str(p) for p in (folder / "assets").glob("*.parquet"))).to_pylist()
    shas = [a["sha256"] for a in assets]
    assert len(shas) == len(set(shas)) == snap.manifest["counts"]["assets"]  # each asset once
    assert sum(len(a["bytes"]) for a in assets) == snap.manifest["counts"]["asset_bytes"]
    for a in assets:
        assert hashlib.sha256(a["bytes"]).hexdigest() == a["sha256"]
        assert a["kind"] == ("image" if a["extension"] == "png" else "mesh")
    rows = pq.read_table(str(folder / "data")).to_pylist()
    referenced = {r[c] for r in rows for c in FILES}
    assert referenced == set(shas)  # nothing missing, nothing extra
    assert all(r["image"] == r["image_sha256"] for r in rows)


def test_referenced_parquet_loads_like_embedded(world, tmp_path):
    import datasets

    emb = download(build(world.project, kind="dpo", format="parquet", assets="embedded"), tmp_path / "emb")
    ref = download(build(world.project, kind="dpo", format="parquet", assets="referenced", shard_bytes=4096),
                   tmp_path / "ref")
    embedded = datasets.load_dataset("parquet", data_files=str(emb / "data" / "*.parquet"), split="train",
                                     cache_dir=str(tmp_path / "hf1"))
    loaded = referenced_dataset(str(ref), cache_dir=str(tmp_path / "hf2"))
    assert len(loaded) == len(embedded) == 11 and loaded.column_names == embedded.column_names
    # Raw bytes, row by row.
    raw = referenced_dataset(str(ref), cache_dir=str(tmp_path / "hf3"), decode=False)
    emb_raw = embedded.cast_column("image", datasets.Image(decode=False))
    for c in ("chosen_mesh", "rejected_mesh"):
        emb_raw = emb_raw.cast_column(c, datasets.Mesh(decode=False))
    for a, b in zip(emb_raw, raw):
        assert a["key"] == b["key"] and a["mask"] == b["mask"]
        for c in FILES:
            assert a[c]["bytes"] == b[c]["bytes"] and a[c]["path"] == b[c]["path"]
    # Decoded as the features decode them: PIL photos and trimesh meshes.
    for a, b in zip(embedded, loaded):
        assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
        for c in ("chosen_mesh", "rejected_mesh"):
            assert np.array_equal(a[c].to_geometry().vertices, b[c].to_geometry().vertices)
    batch = loaded[2:5]  # batches resolve too
    assert len(batch["image"]) == 3 and batch["image"][0].size == (64, 48)


def test_referenced_webdataset_loads_like_embedded(world, tmp_path):
    import webdataset as wds

    emb = download(build(world.project, kind="dpo", format="webdataset", assets="embedded"), tmp_path / "emb")
    snap = build(world.project, kind="dpo", format="webdataset", shard_bytes=4096)
    ref = download(snap, tmp_path / "ref")
    asset_tars = sorted(ref.glob("assets-*.tar"))
    assert asset_tars and sorted(ref.glob("train-*.tar"))
    embedded = list(wds.WebDataset(str(emb / "train-000000.tar"), shardshuffle=False, empty_check=False)
                    .decode("pil"))
    assets = TarAssets.from_folder(str(ref))
    assert len(assets) == snap.manifest["counts"]["assets"]
    shards = sorted(str(p) for p in ref.glob("train-*.tar"))
    loaded = list(wds.WebDataset(shards, shardshuffle=False, empty_check=False).map(assets.attach).decode("pil"))
    assert len(loaded) == len(embedded) == snap.rows_total
    for a, b in zip(embedded, loaded):
        assert a["__key__"] == b["__key__"] and a["json"]["mask"] == b["json"]["mask"]
        assert np.array_equal(np.asarray(a["image.png"]), np.asarray(b["image.png"]))
        assert a["chosen.glb"] == b["chosen.glb"] and a["rejected.glb"] == b["rejected.glb"]
    # Each asset once across the asset tars, named by the sha256 of its bytes.
    import tarfile
    names = []
    for path in asset_tars:
        with tarfile.open(path) as tar:
            for m in tar:
                names.append(m.name)
                assert hashlib.sha256(tar.extractfile(m).read()).hexdigest() == m.name.split(".")[0]
    assert len(names) == len(set(names)) == snap.manifest["counts"]["assets"]


def test_referenced_card_and_trainer_reader(world, tmp_path):
    import yaml

    from modelzoo.training.snapshot import open_snapshot

    ref = download(build(world.project, kind="dpo", format="parquet"), tmp_path / "ref")
    emb = download(build(world.project, kind="dpo", format="parquet", assets="embedded"), tmp_path / "emb")
    front = yaml.safe_load((ref / "README.md").read_text().split("---")[1])
    assert [c["config_name"] for c in front["configs"]] == ["default", "assets"]
    assert {"name": "image", "dtype": "string"} in front["dataset_info"]["features"]
    assert front["provenance"]["definition"]["assets"] == "referenced"
    a, b = open_snapshot(str(emb)), open_snapshot(str(ref))
    assert a.kind == b.kind == "dpo" and len(a.rows) == len(b.rows)
    for x, y in zip(a.rows, b.rows):
        assert all(x[c] == y[c] for c in FILES)


def test_the_cards_datasets_recipe_runs(world, tmp_path, monkeypatch):
    """The card's code, as a trainer would paste it in the snapshot's folder, gives the assets' bytes."""
    import datasets.config

    ref = download(build(world.project, kind="dpo", format="parquet"), tmp_path / "ref")
    card = (ref / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(ref)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf"))
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    pairs, assets = scope["pairs"], ParquetAssets.from_folder(str(ref))
    raw = pq.read_table(str(ref / "data")).to_pylist()
    assert len(pairs) == len(raw) == 11
    for row, plain in zip(pairs, raw):
        for c in FILES:
            assert row[c] == assets.get(plain[c])


def test_sha_mismatch_is_keyed_by_content(world, tmp_path):
    """A stored name whose stem is not its bytes' sha256 is keyed by what the bytes hash to."""
    from modelzoo.models import Candidate

    cand = Candidate.objects.filter(item_id=world.ids["a"][0]).first()
    data = default_storage.open(cand.glb.name).read()
    name = default_storage.save("candidates/odd/not-a-sha.glb", __import__("io").BytesIO(data))
    Candidate.objects.filter(pk=cand.pk).update(glb=name)
    snap = build(world.project, kind="dpo", format="parquet")
    folder = download(snap, tmp_path)
    assets = ParquetAssets.from_folder(str(folder))
    assert hashlib.sha256(data).hexdigest() in assets
    for sha in assets.where:
        assert hashlib.sha256(assets.get(sha)).hexdigest() == sha
    json.dumps(snap.manifest)


def test_a_stored_file_that_does_not_hash_to_its_name_fails_the_build(world):
    from modelzoo.models import Candidate

    cand = Candidate.objects.filter(item_id=world.ids["a"][0]).first()
    wrong = "f" * 64
    name = default_storage.save(f"candidates/ff/{wrong}.glb", __import__("io").BytesIO(b"glTF not these bytes"))
    Candidate.objects.filter(pk=cand.pk).update(glb=name)
    snapshot, _ = services.snapshot_define(project=world.project, kind="dpo", format="parquet")
    with pytest.raises(RuntimeError, match="does not hash to its name"):
        services.snapshot_build(snapshot_id=snapshot.pk)


@pytest.mark.parametrize("texts", [
    ['{"rotation": [1, 0, 0, 0], "translation": [0.1, 0, -2.123456789012345], "scale": [1, 1, 1]}', None, "null",
     '{"rotation": [0.5, 0.5, 0.5, 0.5], "translation": [0, 0, -3], "scale": [2, 2, 2], "extra": 1}'],
    ['{"rotation": [1, 0, 0, 0], "translation": [0, 0, -2], "scale": 1.5}', None],  # scalar scale: Python way
    ["{}", '{"rotation": [1, 0, 0, 0], "translation": [0, 0, -2], "scale": [1, 1, 1]}'],
    [],
])
def test_layout_column_parses_as_json_loads_then_layout_struct(texts):
    import pyarrow as pa

    from engine.exports.rows import layout_column, layout_struct
    from engine.exports.schema import LAYOUT

    expected = pa.array([layout_struct(json.loads(t)) if t else None for t in texts], LAYOUT)
    assert layout_column(texts).equals(expected)
