"""The dataset card: README.md with YAML front matter (Hugging Face conventions).

Everything in it comes from the definition and the rows, never from the clock, so a rebuild
writes the same bytes. YAML is written by hand (JSON scalars are valid YAML) to need no
YAML library.
"""
from __future__ import annotations

import json

from engine.exports.definition import PAIRINGS, definition_assets
from engine.exports.schema import FILE_COLUMNS, hf_features

ENGINE_VERSION = "0.1.0"
EXPORT_FORMAT_VERSION = 1


def _yaml(value, indent: int = 0) -> list[str]:
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.extend(_yaml(v, indent + 2))
            else:
                lines.append(f"{pad}{k}: {json.dumps(v)}")
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, (dict, list)) and v:
                sub = _yaml(v, indent + 2)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {json.dumps(v)}")
    return lines


def _features_yaml(features: dict) -> list:
    """`dataset_info.features` in the card's list form."""
    out = []
    for name, f in features.items():
        if f.get("_type") in ("Image", "Mesh"):
            out.append({"name": name, "dtype": f["_type"].lower()})
        elif f.get("_type") == "Value":
            out.append({"name": name, "dtype": f["dtype"]})
        elif f.get("_type") == "List":
            inner = f["feature"]
            out.append({"name": name, "list": inner["dtype"] if inner.get("_type") == "Value"
                        else _features_yaml(inner)})
        else:
            out.append({"name": name, "struct": _features_yaml(f)})
    return out


def card_text(*, project, definition: dict, definition_sha256: str, counts: dict, data_files: list[str],
              checkpoints: list[str], rounds: list[int], asset_files: list[str] = ()) -> str:
    kind, fmt = definition["kind"], definition["format"]
    layout = definition_assets(definition) if fmt != "jsonl" else "embedded"
    referenced = layout == "referenced"
    front = {
        "license": definition["license"],
        "pretty_name": f"{project.name} {kind.upper()} snapshot",
        "task_categories": ["image-to-3d"],
        "tags": ["3d", "mesh", "glb", "gaussian-splatting", kind, "human-preference" if kind == "dpo" else "supervised-fine-tuning"],
    }
    if fmt == "parquet":
        front["configs"] = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}]
        if referenced:
            front["configs"].append({"config_name": "assets", "data_files": [
                {"split": "train", "path": "assets/assets-*.parquet"}]})
    front["dataset_info"] = {"features": _features_yaml(hf_features(kind, layout)),
                             "splits": [{"name": "train", "num_examples": counts["rows"]}]}
    front["provenance"] = {
        "engine": "3D data engine", "engine_version": ENGINE_VERSION, "export_format_version": EXPORT_FORMAT_VERSION,
        "project": project.slug, "rounds": rounds, "checkpoints": checkpoints,
        "definition_sha256": definition_sha256, "definition": definition, "counts": counts,
    }
    lines = ["---", *_yaml(front), "---", ""]
    what = ("one row per chosen candidate (the annotators' pick) with its photo, mask, GLB mesh, layout and "
            "rating; hard cases with an artist mesh are rows with `is_hard_case: true`"
            if kind == "sft" else
            f"preference pairs grouped by item (`group_id`), pairing `{definition['pairing']}`: "
            f"{PAIRINGS[definition['pairing']]}; ties {'kept (is_tie)' if definition['keep_ties'] else 'left out'}; "
            "hard cases pair their artist mesh (chosen) with every candidate (rejected)")
    lines += [f"# {front['pretty_name']}", "",
              f"Exported from project `{project.slug}` by the 3D data engine {ENGINE_VERSION}: {what}.", "",
              f"Rows: {counts['rows']} over {counts['items']} items. Files: {', '.join(data_files)}.", ""]
    files = list(FILE_COLUMNS[kind])
    if referenced:
        lines += _referenced_text(fmt, files, counts, asset_files, len(data_files))
    elif fmt == "parquet":
        lines += ["```python", "from datasets import load_dataset",
                  'ds = load_dataset("parquet", data_files="data/train-*.parquet", split="train")', "```", ""]
    elif fmt == "webdataset":
        lines += ["```python", "import webdataset as wds",
                  'ds = wds.WebDataset("train-{000000..%06d}.tar", shardshuffle=False).decode("pil")'
                  % (len(data_files) - 1), "```", ""]
    else:
        lines += ["Each line is one row; `image` and the mesh columns are storage names of content-addressed "
                  "files (`<folder>/<sha[:2]>/<sha>.<ext>`).", ""]
    lines += ["Masks are COCO compressed RLE (`mask.size` = [height, width], `mask.counts`), column-major.", ""]
    lines += ["Pre-ranking: each candidate side's `selection` says why annotators saw it (`all`: no pre-ranking; "
              "`top`: the ranker's top N of the M generated; `random`: drawn from the rest, so that the ranker's "
              "bias stays measurable), with the ranker's `ranker_score` and `ranker_rank` (1 = best of the M).", ""]
    lines += _representations_text(kind, fmt)
    return "\n".join(lines)


def _representations_text(kind: str, fmt: str) -> list[str]:
    """What each candidate carries: the mesh as made (a GLB: vertex colours or PBR textures) and the
    Gaussian splat, in one object frame."""
    sides = [""] if kind == "sft" else ["chosen_", "rejected_"]
    mesh = ", ".join(f"`{p}mesh`" for p in sides)
    splat = ", ".join(f"`{p}splat`" for p in sides)
    keys = ("`<key>.mesh.glb`, `<key>.splat.ply`" if kind == "sft"
            else "`<key>.chosen.glb`, `<key>.rejected.glb`, `<key>.chosen.splat.ply`, `<key>.rejected.splat.ply`")
    lines = ["## Representations", "",
             f"{mesh}: the candidate's mesh as its backend made it, a glTF 2.0 binary (vertex colours, or PBR "
             "materials with UVs and base colour, metallic-roughness and normal textures; `textured` says which); "
             "null for a candidate that is a Gaussian splat only.",
             f"{splat}: its 3D Gaussian splat as the 3DGS PLY (x y z, nx ny nz, f_dc_0..2, f_rest_*, opacity, "
             "scale_0..2, rot_0..3 as the reference implementation writes; `plyfile` reads it), `num_gaussians` "
             "Gaussians; null for a mesh-only candidate. `datasets` has no splat feature: the column is "
             "{bytes, path}.",
             "Mesh and splat share the object frame (metres, +Y up, centred); `layout` places either in the camera "
             "frame (+Y up, looking down -Z): p_cam = translation + R(rotation) (scale * p).", ""]
    if fmt == "webdataset":
        lines += [f"WebDataset keys: {keys}, present when the candidate has that representation.", ""]
    return lines


def _referenced_text(fmt: str, files: list[str], counts: dict, asset_files: list[str], n_shards: int) -> list[str]:
    """How a referenced snapshot is laid out and read: the rows, then each asset once by sha256."""
    cols = ", ".join(f"`{c}`" for c in files)
    lines = ["## Layout: assets stored once, rows refer to them", "",
             f"Every photo and mesh is stored once, keyed by the SHA-256 of its bytes; the columns {cols} "
             "hold that SHA-256 (hex). A DPO pair repeats its item's photo and a winner's mesh in up to N-1 "
             "pairs, so embedding them would store each many times. One flat row per pair (rather than one "
             "row per judgement holding its pairs) keeps the usual DPO recipe - shuffle pairs, batch, look "
             "up three assets - and one assets table serves every pair, judgement and item, including a "
             "photo shared by several objects.", "",
             f"Assets: {counts.get('assets', 0)} ({counts.get('asset_bytes', 0)} bytes) in "
             f"{', '.join(asset_files) or 'no files'}; `sha256(bytes)` of each equals its key.", ""]
    if fmt == "parquet":
        lines += ["`assets/assets-*.parquet` has columns `sha256`, `kind` (image | mesh | splat), `extension`, `bytes`, "
                  "zstd level 1, in row groups of about 1 MiB of assets, so one asset is a small read.", "",
                  "```python", "from datasets import load_dataset",
                  'pairs = load_dataset("parquet", data_files="data/train-*.parquet", split="train")',
                  'assets = load_dataset("parquet", data_files="assets/assets-*.parquet", split="train")  '
                  '# memory-mapped',
                  'row_of = {sha: i for i, sha in enumerate(assets["sha256"])}',
                  "",
                  "def resolve(batch):  # lazily, per batch read: sha256 -> bytes",
                  f"    for column in {files!r}:",
                  '        batch[column] = [assets[row_of[s]]["bytes"] if s else None for s in batch[column]]',
                  "    return batch",
                  "",
                  "pairs.set_transform(resolve)",
                  "```", "",
                  "`modelzoo.training.loaders.referenced_dataset(folder)` in the engine's repository does the "
                  "same and decodes photos (PIL) and meshes (trimesh) as the embedded layout's features do.", ""]
    else:
        lines += ["`assets-*.tar` holds one member `<sha256>.<ext>` per asset; `train-*.tar` holds `<key>.json` "
                  "per row, its file fields being sha256s.", "",
                  "```python", "import webdataset as wds",
                  "from modelzoo.training.loaders import TarAssets  # or: index the asset tars' members yourself",
                  'assets = TarAssets.from_folder(".")  # indexes assets-*.tar from their headers only',
                  'ds = wds.WebDataset("train-{000000..%06d}.tar", shardshuffle=False).map(assets.attach)'
                  '.decode("pil")' % (n_shards - 1),
                  "```", "",
                  "`attach` adds the sample's files under the embedded layout's names (`image.png`, "
                  "`chosen.glb`, `rejected.glb`, `mesh.glb`, `splat.ply`, `chosen.splat.ply`, `rejected.splat.ply`), "
                  "read from the asset tars by offset.", ""]
    return lines
