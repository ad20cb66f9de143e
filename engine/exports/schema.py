"""The columns of SFT rows and DPO pairs, as Arrow schemas.

Rows travel from `rows` to the writers as Arrow tables of ROW_SCHEMAS: a stored file (the photo,
a mesh) is its storage name there. The Parquet files hold SCHEMAS, where each such column is a
{bytes, path} struct that `datasets`' Image and Mesh features decode; WebDataset and JSONL keep
the names (the writers add the files' bytes or point at them).

A referenced snapshot (definition `assets: "referenced"`) holds REF_SCHEMAS: each file column
is the sha256 of the asset, stored once in the ASSET_SCHEMA table (or asset tar shards).
"""
from __future__ import annotations

import pyarrow as pa

LAYOUT = pa.struct([("rotation", pa.list_(pa.float64())), ("translation", pa.list_(pa.float64())),
                    ("scale", pa.list_(pa.float64()))])
MASK = pa.struct([("size", pa.list_(pa.int64())), ("counts", pa.string())])
FILE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

# Columns holding a stored file: (column, Hugging Face feature type). A splat (the 3DGS PLY) has no
# `datasets` feature of its own: it stays the {bytes, path} struct (`Splat` here), null without one;
# a mesh column is null for a splat-only candidate.
FILE_COLUMNS = {
    "sft": {"image": "Image", "mesh": "Mesh", "splat": "Splat"},
    "dpo": {"image": "Image", "chosen_mesh": "Mesh", "rejected_mesh": "Mesh", "chosen_splat": "Splat",
            "rejected_splat": "Splat"},
}

COMMON_COLUMNS = [  # every row, SFT or DPO, after item_id / group_id
    ("key", pa.string()), ("round", pa.int64()), ("is_gold", pa.bool_()), ("image_id", pa.int64()),
    ("image", FILE), ("image_sha256", pa.string()), ("mask", MASK), ("mask_bbox", pa.list_(pa.float64())),
    ("label", pa.string()),
]


def side_columns(prefix: str) -> list:
    """A candidate (or artist mesh) as the chosen, rejected or only side of a row."""
    return [(f"{prefix}candidate_id", pa.int64()), (f"{prefix}source", pa.string()), (f"{prefix}mesh", FILE),
            (f"{prefix}checkpoint_id", pa.int64()), (f"{prefix}checkpoint", pa.string()),
            (f"{prefix}seed", pa.int64()), (f"{prefix}steps", pa.int64()), (f"{prefix}layout", LAYOUT),
            (f"{prefix}splat", FILE), (f"{prefix}textured", pa.bool_()), (f"{prefix}num_gaussians", pa.int64()),
            # Pre-ranking (docs/assisted.md): why annotators saw it (all | top | random), the ranker's score
            # and rank among the M generated (1 = best); null for artist meshes.
            (f"{prefix}selection", pa.string()), (f"{prefix}ranker_score", pa.float64()),
            (f"{prefix}ranker_rank", pa.int64())]


SCHEMAS = {
    "sft": pa.schema([("item_id", pa.int64()), *COMMON_COLUMNS, ("is_hard_case", pa.bool_()), *side_columns(""),
                      ("layout_model", LAYOUT), ("layout_adjusted", pa.bool_()), ("rating", pa.float64()),
                      ("ratings", pa.list_(pa.int64())), ("annotators", pa.list_(pa.string())),
                      ("judgement_ids", pa.list_(pa.int64()))]),
    "dpo": pa.schema([("group_id", pa.int64()), *COMMON_COLUMNS, ("judgement_id", pa.int64()),
                      ("annotator", pa.string()), ("pairing", pa.string()), ("comparison_index", pa.int64()),
                      *side_columns("chosen_"), *side_columns("rejected_"), ("score_chosen", pa.float64()),
                      ("score_rejected", pa.float64()), ("margin", pa.float64()), ("is_tie", pa.bool_()),
                      ("rating", pa.int64())]),
}

ROW_SCHEMAS = {  # as SCHEMAS, with storage names in the file columns
    kind: pa.schema([pa.field(f.name, pa.string()) if f.name in FILE_COLUMNS[kind] else f for f in schema])
    for kind, schema in SCHEMAS.items()
}

REF_SCHEMAS = ROW_SCHEMAS  # the same columns: a file column holds the asset's sha256 (hex) instead

# One row per asset of a referenced snapshot, in the order the rows first refer to it.
ASSET_SCHEMA = pa.schema([("sha256", pa.string()), ("kind", pa.string()), ("extension", pa.string()),
                          ("bytes", pa.binary())])


def hf_features(kind: str, assets: str = "embedded") -> dict:
    """The `datasets` Features (as its JSON) of a kind: file columns as Image / Mesh when embedded,
    sha256 strings when referenced."""
    files = FILE_COLUMNS[kind] if assets == "embedded" else {}

    def feature(t: pa.DataType):
        if pa.types.is_struct(t):
            return {t.field(i).name: feature(t.field(i).type) for i in range(t.num_fields)}
        if pa.types.is_list(t):
            return {"feature": feature(t.value_type), "_type": "List"}
        dtype = {"int64": "int64", "string": "string", "bool": "bool", "double": "float64",
                 "binary": "binary"}[str(t)]
        return {"dtype": dtype, "_type": "Value"}

    schema = SCHEMAS[kind] if assets == "embedded" else REF_SCHEMAS[kind]
    return {f.name: ({"_type": files[f.name]} if files.get(f.name) in ("Image", "Mesh") else feature(f.type))
            for f in schema}
