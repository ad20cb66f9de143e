"""The dataset card: README.md with YAML front matter (Hugging Face conventions).

Everything in it comes from the definition and the rows, never from the clock, so a rebuild
writes the same bytes. YAML is written by hand (JSON scalars are valid YAML) to need no
YAML library.
"""
from __future__ import annotations

import json

from engine.exports.definition import PAIRINGS
from engine.exports.schema import hf_features

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
              checkpoints: list[str], rounds: list[int]) -> str:
    kind, fmt = definition["kind"], definition["format"]
    front = {
        "license": definition["license"],
        "pretty_name": f"{project.name} {kind.upper()} snapshot",
        "task_categories": ["image-to-3d"],
        "tags": ["3d", "mesh", "glb", kind, "human-preference" if kind == "dpo" else "supervised-fine-tuning"],
    }
    if fmt == "parquet":
        front["configs"] = [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}]
    front["dataset_info"] = {"features": _features_yaml(hf_features(kind)),
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
    if fmt == "parquet":
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
    return "\n".join(lines)
