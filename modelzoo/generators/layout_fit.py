"""A layout for backends that give none (TRELLIS.2, Hunyuan3D: an object in a canonical box).

The object is assumed upright and facing the camera (its +Y up, its front towards +Z, the
camera), which is how both pipelines orient what they lift from one photo. Then:

* ``depth``: with a depth map, the distance is the median depth of the mask's pixels (the
  visible front surface) plus half the object's depth, and the scale makes the object's projected
  width and height cover the mask's box (the larger of the two fits);
* ``mask_intrinsics``: without one, the scale is a prior (`nominal_size_m`, the object's largest
  extent in metres) and the distance follows from the mask's box and the focal length.

Either way the translation puts the object's centre on the ray through the mask box's centre.
What was used is recorded on the candidate (``received.backend.layout_source``).
"""
from __future__ import annotations

import numpy as np

from modelzoo.generators.base import GeneratorError, Layout, default_intrinsics

NOMINAL_SIZE_M = 0.5


def layout_fit(vertices: np.ndarray, mask: np.ndarray, *, intrinsics: np.ndarray | None = None,
               depth: np.ndarray | None = None, nominal_size_m: float = NOMINAL_SIZE_M) -> tuple[Layout, str]:
    """(layout, source) placing `vertices` (object frame) on the mask; source is
    "depth" or "mask_intrinsics"."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise GeneratorError("the mask is empty: no layout to fit")
    H, W = mask.shape
    K = default_intrinsics(W, H) if intrinsics is None else np.asarray(intrinsics, np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    ys, xs = np.nonzero(mask)
    u0, u1, v0, v1 = xs.min(), xs.max() + 1.0, ys.min(), ys.max() + 1.0
    box_w, box_h = u1 - u0, v1 - v0
    uc, vc = 0.5 * (u0 + u1), 0.5 * (v0 + v1)
    v = np.asarray(vertices, np.float64)
    centre = 0.5 * (v.max(axis=0) + v.min(axis=0))
    extent = v.max(axis=0) - v.min(axis=0)
    extent = np.maximum(extent, 1e-6)
    source = "mask_intrinsics"
    observed = None
    if depth is not None:
        d = np.asarray(depth, np.float64)
        if d.shape == mask.shape:
            values = d[mask & np.isfinite(d) & (d > 0)]
            if len(values) >= 10:
                observed = float(np.median(values))
    if observed is not None:
        # the front surface lies half the object's depth before its centre (z = d + e_z s / 2), and the
        # scale fits the box at that distance (s = a z): s = a d / (1 - a e_z / 2)
        a = max(box_w / fx / extent[0], box_h / fy / extent[1])
        s = a * observed / max(1.0 - 0.5 * a * extent[2], 1e-3)
        z = observed + 0.5 * extent[2] * s
        source = "depth"
    else:
        s = nominal_size_m / float(extent.max())
        z = max(fx * extent[0] * s / box_w, fy * extent[1] * s / box_h)
    # camera frame: looking down -Z, image rows down (modelzoo.generators.base)
    t = np.array([(uc - cx) * z / fx, -(vc - cy) * z / fy, -z]) - s * centre  # the box's centre on the ray
    return Layout(rotation=(1.0, 0.0, 0.0, 0.0), translation=tuple(float(x) for x in t), scale=(s, s, s)), source
