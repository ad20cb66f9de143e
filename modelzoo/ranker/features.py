"""What the ranker sees of one object and one candidate. Plain numpy/torch, no Django.

* The photo: the 32 x 32 RGB + mask crop of the mask's box (`modelzoo.builtin.data.crop_single`,
  the generator's own crop at a quarter of its pixels).
* The candidate, as seen from the photo's camera: surface points of the posed mesh projected
  through the intrinsics (perspective), drawn into a 32 x 32 silhouette and a relative-depth map.
  The box they are drawn in is built from the projected points as `mask_box` builds the photo's
  from the mask (centre, 1.2 x the longer side): so the silhouette lines up with the mask crop
  whatever the candidate's translation and scale, and what differs is its shape and rotation,
  which is what people judge first.
* Its geometry: a 16^3 occupancy of the mesh turned into the camera's orientation and normalised
  to its bounding box (the frame in which the gold metrics and the simulated annotators compare
  shapes).
* Four numbers: the silhouette's IoU, precision and recall against the mask crop (both in their
  own boxes), and its IoU in the mask's box (where the layout put it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from modelzoo.builtin.data import crop_single, mask_box
from modelzoo.mesh.meshing import mesh_to_occupancy, sample_surface
from modelzoo.synth.rotations import quat_to_matrix

VIEW = 32  # pixels of the photo crop and of the candidate's view
OCC = 16  # voxels per side of the candidate's occupancy
POINTS = 3000  # surface points drawn into the view
N_SCALARS = 4


@dataclass
class ObjectInput:
    """The photo side, computed once per object: crop (4, VIEW, VIEW) and its mask channel."""

    crop: torch.Tensor
    mask_crop: np.ndarray  # VIEW x VIEW bool: the mask in its own box
    box: np.ndarray  # (u, v, side) of the mask
    K: np.ndarray


@dataclass
class CandidateInput:
    view: torch.Tensor  # (2, VIEW, VIEW): silhouette in its own box, relative depth
    occ: torch.Tensor  # (OCC, OCC, OCC) float {0, 1}
    scalars: torch.Tensor  # (N_SCALARS,)


def object_input(image: np.ndarray, mask: np.ndarray, K: np.ndarray) -> ObjectInput:
    mask = np.asarray(mask).astype(bool)
    box = mask_box(mask)
    crop = crop_single(np.asarray(image), mask, box, size=VIEW)[0]
    return ObjectInput(crop=crop, mask_crop=(crop[3] > 0).numpy(), box=box, K=np.asarray(K, np.float64))


def _draw(uv: np.ndarray, z: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (pixels, depths) drawn into a VIEW x VIEW grid over `box`: silhouette (closed by one
    dilation and one erosion, so gaps between points do not show) and nearest relative depth."""
    u0, v0, side = box[0] - box[2] / 2, box[1] - box[2] / 2, box[2]
    ij = np.floor((uv - [u0, v0]) / side * VIEW).astype(np.int64)
    ok = (ij >= 0).all(axis=1) & (ij < VIEW).all(axis=1)
    ij, z = ij[ok], z[ok]
    sil = np.zeros((VIEW, VIEW), np.float32)
    sil[ij[:, 1], ij[:, 0]] = 1.0
    t = torch.from_numpy(sil)[None, None]
    t = -F.max_pool2d(-F.max_pool2d(t, 3, 1, 1), 3, 1, 1)  # closing
    depth = np.full((VIEW, VIEW), np.inf, np.float32)
    if len(z):
        rel = (z / np.median(z) - 1.0).astype(np.float32)
        np.minimum.at(depth, (ij[:, 1], ij[:, 0]), rel)
    depth[~np.isfinite(depth)] = 0.0
    return t[0, 0].numpy(), depth


def _iou(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    a, b = a > 0.5, b > 0.5
    inter = float((a & b).sum())
    union = float((a | b).sum())
    return (inter / union if union else 0.0, inter / max(float(a.sum()), 1.0), inter / max(float(b.sum()), 1.0))


def candidate_input(obj: ObjectInput, vertices: np.ndarray, faces: np.ndarray, layout) -> CandidateInput:
    """`layout`: a `modelzoo.generators.base.Layout` or its dict (rotation w,x,y,z; translation; scale)."""
    if isinstance(layout, dict):
        rotation, translation, scale = layout["rotation"], layout["translation"], layout["scale"]
    else:
        rotation, translation, scale = layout.rotation, layout.translation, layout.scale
    R = quat_to_matrix(np.asarray(rotation, np.float64))
    s = float(np.mean(np.atleast_1d(np.asarray(scale, np.float64))))
    v, f = np.asarray(vertices, np.float64), np.asarray(faces, np.int64)
    pts = sample_surface(v, f, POINTS, seed=0)
    p = np.asarray(translation, np.float64)[None] + (s * pts) @ R.T
    z = np.maximum(-p[:, 2], 1e-6)
    K = obj.K
    uv = np.stack([K[0, 2] + K[0, 0] * p[:, 0] / z, K[1, 2] - K[1, 1] * p[:, 1] / z], axis=1)
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    own = np.array([0.5 * (lo[0] + hi[0]), 0.5 * (lo[1] + hi[1]), max(1.2 * float((hi - lo).max()), 1e-6)])
    sil, depth = _draw(uv, z, own)
    sil_placed, _ = _draw(uv, z, obj.box)
    iou, precision, recall = _iou(sil, obj.mask_crop)
    placed_iou, _, _ = _iou(sil_placed, obj.mask_crop)
    occ = mesh_to_occupancy(v @ R.T, f, OCC, normalise=True, samples=8_000)
    return CandidateInput(view=torch.from_numpy(np.stack([sil, depth])),
                          occ=torch.from_numpy(occ.astype(np.float32)),
                          scalars=torch.tensor([iou, precision, recall, placed_iou], dtype=torch.float32))


def stack(objects: list[ObjectInput], candidates: list[CandidateInput]) -> dict:
    """A batch: object i of the batch goes with candidate i."""
    return {"crop": torch.stack([o.crop for o in objects]), "view": torch.stack([c.view for c in candidates]),
            "occ": torch.stack([c.occ for c in candidates]), "scalars": torch.stack([c.scalars for c in candidates])}
