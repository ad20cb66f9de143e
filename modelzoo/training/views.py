"""More photos of a real shape: an SFT target mesh rendered at new poses over new backgrounds.

An artist's mesh or a library shape comes with one photo, the item's. SAM 3D's mid-training
pasted renders of its meshes into other images ("render-paste"); here each such mesh is also seen
as the pretraining scenes are drawn (`modelzoo.synth.scene`: an upright pose seen from 5-45 degrees
above, 30-75% of a 128 px image, a random colour, light and background), so that the flow learns
the shape from more than the one view it was annotated in. The shape is the mesh's cell occupancy
(the flow's target) traced through a distance field built from it; the layout is the drawn pose.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from modelzoo.builtin.data import crop_single, mask_box
from modelzoo.builtin.layout import box_features
from modelzoo.builtin.model import BuiltinModel
from modelzoo.synth.render import shade
from modelzoo.synth.scene import (IMAGE_SIZE, MIN_PIXELS, intrinsics_for, random_background, random_color,
                                  trace_at_drawn_pose)

#: The distance field's grid (cells over [-1, 1]^3): finer than the flow's 32^3, so that the
#: render's silhouette and shading are not the voxels'.
RENDER_RESOLUTION = 64


class GridSDF:
    """A signed distance (normalised units) from an occupancy of cell centres over [-1, 1]^3, in the
    `Shape.sdf` interface that `sphere_trace` reads: trilinear between cells, and outside the cube
    the distance to it added, so that a ray from afar is not stopped short."""

    def __init__(self, occupancy: np.ndarray):
        occ = np.asarray(occupancy, bool)
        self.cell = 2.0 / occ.shape[0]
        # Between an inside and an outside cell centre the surface lies half a cell from each.
        outside = ndimage.distance_transform_edt(~occ) - 0.5
        inside = ndimage.distance_transform_edt(occ) - 0.5
        self.grid = np.where(occ, -inside, outside) * self.cell

    def sdf(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float64)
        clamped = np.clip(p, -1.0, 1.0)
        coords = ((clamped + 1.0) / self.cell - 0.5).T
        inner = ndimage.map_coordinates(self.grid, coords, order=1, mode="nearest")
        return inner + np.linalg.norm(p - clamped, axis=1)


@dataclass
class View:
    crop: torch.Tensor  # (4, CROP, CROP): the network's input, as `Encoder.condition` gives it
    features: torch.Tensor  # box features
    box: np.ndarray  # (u, v, size)
    mask: np.ndarray  # H x W bool: where the render shows the shape
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    scale: float  # the layout's uniform scale: object frame = normalised shape * NOMINAL_HALF_SIZE


def render_views(vertices, faces, n: int, rng: np.random.Generator, size: int = IMAGE_SIZE) -> list[View]:
    """`n` photos of the mesh (object frame, any units) at poses drawn as the pretraining scenes'."""
    if n <= 0:
        return []
    field = GridSDF(BuiltinModel.mesh_occupancy(vertices, faces, RENDER_RESOLUTION)[0])
    views = []
    for _ in range(n):
        K = intrinsics_for(size, float(rng.uniform(45, 70)))
        color = random_color(rng)
        light = np.array([rng.uniform(-1, 1), rng.uniform(0.3, 1.5), rng.uniform(0.3, 1.5)])
        render, R, t, scale = trace_at_drawn_pose(field, rng, K, size)
        if render.hit.sum() < MIN_PIXELS:
            continue  # a shape too thin to show at any pose drawn: no view of it
        obj = shade(render, color, light, ambient=float(rng.uniform(0.25, 0.5)))
        img = np.where(render.hit[..., None], obj, random_background(rng, size, size))
        img = img + rng.normal(0, 0.015, size=img.shape)
        image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        box = mask_box(render.hit)
        views.append(View(crop=crop_single(image, render.hit, box)[0],
                          features=torch.from_numpy(box_features(box[None], K))[0].float(),
                          box=box, mask=render.hit, K=K, R=R, t=t, scale=scale))
    return views
