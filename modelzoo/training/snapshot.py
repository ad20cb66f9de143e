"""Read an exported snapshot folder (Parquet, as written by `engine.exports`) into training
examples for the built-in model. Plain Python: no Django, no database.

A folder holds `README.md` (the dataset card, with the provenance in its YAML front matter)
and `data/train-*.parquet`. The kind comes from the columns: SFT rows have `mesh`, DPO rows
have `chosen_mesh` and `rejected_mesh`. Images and meshes are embedded as bytes; masks are
COCO compressed RLE, decoded with pycocotools as any COCO reader would.
A referenced snapshot (`assets/assets-*.parquet` beside `data/`) holds each photo and mesh once;
its rows' file columns (sha256s) are resolved here into the same {bytes, path} as embedded ones.
"""
from __future__ import annotations

import glob
import io
import json
import os
import re
import zlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image
from pycocotools import mask as coco_mask

from modelzoo.builtin.data import crop_single, mask_box
from modelzoo.builtin.layout import box_features
from modelzoo.generators.base import Layout, default_intrinsics
from modelzoo.mesh.glb import read_glb
from modelzoo.training.loaders import FILE_FIELDS, ParquetAssets
from modelzoo.training.views import render_views


class TrainingError(ValueError):
    """A snapshot or checkpoint the trainer cannot use; the message says what to do instead."""


@dataclass
class Snapshot:
    path: str
    kind: str  # "sft" | "dpo"
    rows: list[dict]
    provenance: dict = field(default_factory=dict)

    @property
    def definition_sha256(self) -> str | None:
        return self.provenance.get("definition_sha256")


def _provenance(card: str) -> dict:
    """The few provenance scalars of the card's hand-written YAML (JSON scalars)."""
    out = {}
    block = card.split("---", 2)[1] if card.startswith("---") else ""
    for key in ("project", "definition_sha256", "engine_version", "export_format_version"):
        m = re.search(rf"^\s+{key}: (.+)$", block, re.M)
        if m:
            try:
                out[key] = json.loads(m.group(1))
            except json.JSONDecodeError:
                out[key] = m.group(1).strip()
    return out


def open_snapshot(path: str) -> Snapshot:
    """Rows of a Parquet snapshot folder, or TrainingError saying why it cannot be read."""
    if not os.path.isdir(path):
        raise TrainingError(f"{path}: not a folder; export a snapshot first "
                            "(python manage.py export --format parquet --out DIR).")
    shards = sorted(glob.glob(os.path.join(path, "data", "*.parquet")))
    if not shards:
        others = glob.glob(os.path.join(path, "*.tar")) + glob.glob(os.path.join(path, "data", "*.jsonl"))
        hint = " It holds WebDataset or JSONL files: export it again with --format parquet." if others else ""
        raise TrainingError(f"{path}: no data/*.parquet shards; the trainer reads Parquet snapshots.{hint}")
    tables = [pq.read_table(s) for s in shards]
    columns = set(tables[0].column_names)
    if {"chosen_mesh", "rejected_mesh"} <= columns:
        kind = "dpo"
    elif "mesh" in columns:
        kind = "sft"
    else:
        raise TrainingError(f"{path}: neither an SFT nor a DPO snapshot (columns: {sorted(columns)}).")
    rows = [r for t in tables for r in t.to_pylist()]
    asset_shards = sorted(glob.glob(os.path.join(path, "assets", "*.parquet")))
    if asset_shards:  # referenced: each asset once; rows share its bytes object
        assets, resolved = ParquetAssets(asset_shards), {}
        for r in rows:
            for column in FILE_FIELDS:
                sha = r.get(column)
                if isinstance(sha, str):
                    if sha not in resolved:
                        resolved[sha] = assets.file(sha)
                    r[column] = resolved[sha]
    sidecar = os.path.join(path, "intrinsics.json")
    if os.path.exists(sidecar):  # {image_sha256: 3x3}, written by the engine for photos with intrinsics
        cameras = json.load(open(sidecar))
        for r in rows:
            r.setdefault("intrinsics", cameras.get(r.get("image_sha256")))
    card_path = os.path.join(path, "README.md")
    prov = _provenance(open(card_path, encoding="utf-8").read()) if os.path.exists(card_path) else {}
    return Snapshot(path=path, kind=kind, rows=rows, provenance=prov)


def require_kind(snapshot: Snapshot, kind: str, stage: str) -> None:
    if snapshot.kind != kind:
        what = {"sft": "an SFT snapshot (chosen candidates)", "dpo": "a DPO snapshot (preference pairs)"}
        raise TrainingError(f"The {stage.upper()} stage needs {what[kind]}, but {snapshot.path} is "
                            f"{what[snapshot.kind]}. Export one with --kind {kind}.")
    if not snapshot.rows:
        raise TrainingError(f"{snapshot.path} has no rows: nothing to train the {stage.upper()} stage on.")


# ------------------------------------------------------------------ rows -> tensors
def _image(file: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(file["bytes"])).convert("RGB"))


def _mask(row: dict) -> np.ndarray:
    """The row's mask, a COCO compressed RLE (`{"size": [h, w], "counts": str}`), as H x W bool."""
    h, w = row["mask"]["size"]
    return coco_mask.decode({"size": [int(h), int(w)], "counts": row["mask"]["counts"]}).astype(bool)


def _layout(struct):
    return Layout(rotation=tuple(struct["rotation"]), translation=tuple(struct["translation"]),
                  scale=tuple(struct["scale"]))


class Encoder:
    """Turns rows into (crop, box features, flow target x_1) with one model's shape encoder;
    meshes and photos are decoded once (a winner appears in several DPO pairs)."""

    def __init__(self, model):
        self.model = model
        self._targets: dict[str, torch.Tensor] = {}
        self._conds: dict[tuple, tuple] = {}
        self._occupancies: dict[str, np.ndarray] = {}

    def condition(self, row: dict):
        key = (row["image_sha256"], row["mask"]["counts"])
        if key not in self._conds:
            image, mask = _image(row["image"]), _mask(row)
            # The rows carry no intrinsics: the generator used the default camera unless the
            # photo had some, given by an `intrinsics` column or an intrinsics.json sidecar.
            K = np.asarray(row["intrinsics"], np.float64) if row.get("intrinsics") else \
                default_intrinsics(image.shape[1], image.shape[0])
            box = mask_box(mask)
            crop = crop_single(image, mask, box)[0]
            feats = torch.from_numpy(box_features(box[None], K))[0].float()
            self._conds[key] = (crop, feats, mask, K)
        return self._conds[key]

    @torch.no_grad()
    def target(self, row: dict, prefix: str = "") -> torch.Tensor:
        mesh, layout = row[f"{prefix}mesh"], row[f"{prefix}layout"]
        key = f"{mesh['path']}|{json.dumps(layout, sort_keys=True)}"
        if key not in self._targets:
            if layout is None:
                raise TrainingError(f"row {row['key']}: the {prefix or 'chosen '}mesh has no layout; "
                                    "the built-in model needs one (an artist mesh needs the layout stage).")
            vertices, faces, _ = read_glb(mesh["bytes"])
            _, _, mask, K = self.condition(row)
            self._targets[key] = self.model.encode_candidate(vertices, faces, _layout(layout), mask, K)[0]
        return self._targets[key]

    @torch.no_grad()
    def views(self, row: dict, n: int, seed: int) -> list[tuple]:
        """(crop, box features, flow target) of `n` new photos of the row's mesh
        (`modelzoo.training.views`), the same for the same mesh and seed."""
        mesh = row["mesh"]
        vertices, faces, _ = read_glb(mesh["bytes"])
        rng = np.random.default_rng([seed, zlib.crc32(mesh["path"].encode())])
        occ = self.occupancy(row)
        return [(v.crop, v.features, self.model.encode_target(occ[None], v.R[None], v.t[None], np.array([v.scale]),
                                                              v.box[None], v.K)[0])
                for v in render_views(vertices, faces, n, rng)]

    def occupancy(self, row: dict, prefix: str = "") -> np.ndarray:
        """The row's mesh as the shape encoder reads it (32^3 bool); no layout needed."""
        mesh = row[f"{prefix}mesh"]
        if mesh["path"] not in self._occupancies:
            vertices, faces, _ = read_glb(mesh["bytes"])
            self._occupancies[mesh["path"]] = self.model.mesh_occupancy(vertices, faces)[0]
        return self._occupancies[mesh["path"]]


#: What an SFT row's target is, for `sft_tensors(sources=...)`: an artist's mesh, a candidate of a
#: retrieval backend (a checkpoint named "retrieval", `modelzoo.generators.retrieval`: a real shape
#: from a library), or a candidate the model itself sampled.
SFT_SOURCES = ("artist", "retrieval", "model")


def side_source(row: dict, prefix: str = "") -> str:
    """The source of a row's side (`prefix` "chosen_" / "rejected_" for a DPO row's)."""
    if row.get(f"{prefix}source") == "artist":
        return "artist"
    return "retrieval" if str(row.get(f"{prefix}checkpoint") or "").startswith("retrieval:") else "model"


#: The sources whose meshes are real shapes (an artist's, a library's), worth seeing from more views.
REAL_SHAPE_SOURCES = ("artist", "retrieval")


def sft_tensors(snapshot: Snapshot, encoder: Encoder, sources: tuple[str, ...] | None = None,
                views: int = 0, seed: int = 0) -> dict:
    """Flow targets of the SFT rows (those with a layout), of the `sources` given (`SFT_SOURCES`;
    None: all). SAM 3D fits SFT to targets worth fitting (artists' meshes, real shapes); fitting
    the model's own 4-step samples teaches its bias back to it (docs/loop.md). With `views`, each
    distinct real shape (`REAL_SHAPE_SOURCES`) is also rendered that many times at new poses
    (`modelzoo.training.views`), each render an example with the row's weight."""
    crops, feats, x1, weights = [], [], [], []
    viewed = set()
    for row in snapshot.rows:
        if row.get("layout") is None:
            continue  # an artist mesh without a layout: no flow target for the layout part
        if sources is not None and side_source(row) not in sources:
            continue
        c, f, _, _ = encoder.condition(row)
        crops.append(c)
        feats.append(f)
        x1.append(encoder.target(row))
        weights.append(float(row["rating"] or 1.0))
        if views and side_source(row) in REAL_SHAPE_SOURCES and row["mesh"]["path"] not in viewed:
            viewed.add(row["mesh"]["path"])
            for crop, feat, target in encoder.views(row, views, seed):
                crops.append(crop)
                feats.append(feat)
                x1.append(target)
                weights.append(weights[-1])
    if not x1:
        raise TrainingError(f"{snapshot.path}: no row has a mesh with a layout"
                            + (f" from {', '.join(sources)}." if sources is not None else "."))
    return {"crops": torch.stack(crops), "feats": torch.stack(feats), "x1": torch.stack(x1),
            "weights": torch.tensor(weights)}


def dpo_tensors(snapshot: Snapshot, encoder: Encoder, sources: tuple[str, ...] | None = None) -> dict:
    """Chosen and rejected flow targets of the DPO pairs (not ties, layouts on both sides) whose
    chosen side comes from `sources` (None: all)."""
    crops, feats, xw, xl = [], [], [], []
    for row in snapshot.rows:
        if row.get("is_tie") or row.get("chosen_layout") is None or row.get("rejected_layout") is None:
            continue
        if sources is not None and side_source(row, "chosen_") not in sources:
            continue
        c, f, _, _ = encoder.condition(row)
        crops.append(c)
        feats.append(f)
        xw.append(encoder.target(row, "chosen_"))
        xl.append(encoder.target(row, "rejected_"))
    if not xw:
        raise TrainingError(f"{snapshot.path}: no preference pair with layouts on both sides (ties are skipped)"
                            + (f" whose chosen side is from {', '.join(sources)}." if sources is not None else "."))
    return {"crops": torch.stack(crops), "feats": torch.stack(feats), "x1_w": torch.stack(xw),
            "x1_l": torch.stack(xl)}


def shape_occupancies(snapshot: Snapshot, encoder: Encoder, sources: tuple[str, ...] | None = None) -> torch.Tensor:
    """The distinct meshes of the SFT rows from `sources` (None: all) as occupancies (N, 32, 32, 32)
    in {0, 1}: what the shape decoder should give back from their latents. A layout is not
    needed (an artist's mesh not yet placed still shows the shape). Empty (0, 32, 32, 32) when none."""
    seen, grids = set(), []
    for row in snapshot.rows:
        if sources is not None and side_source(row) not in sources:
            continue
        if row["mesh"]["path"] in seen:
            continue
        seen.add(row["mesh"]["path"])
        grids.append(encoder.occupancy(row))
    if not grids:
        return torch.zeros((0, 32, 32, 32))
    return torch.from_numpy(np.stack(grids)).float()
