"""The preview image of a splat-only candidate: its Gaussians as discs, nearest in front, seen
as the mesh previews are (`modelzoo.mesh.preview`: same view, fitted to the frame)."""
from __future__ import annotations

import numpy as np

from modelzoo.mesh.preview import _view_rotation
from modelzoo.splats.gaussians import Gaussians


def splat_preview(g: Gaussians, size: int = 128, yaw: float = -35.0, elevation: float = 25.0) -> np.ndarray:
    """size x size x 4 uint8: each Gaussian a disc of its largest standard deviation (at least a
    pixel), opaque where alpha > 0.3, drawn far to near; transparent background."""
    keep = g.alphas() > 0.3
    if not keep.any():
        keep[:] = True
    p = g.positions[keep].astype(np.float64) @ _view_rotation(yaw, elevation).T
    rgb = g.colors_rgb()[keep]
    radius = np.exp(g.scales[keep].astype(np.float64).max(axis=1))
    lo, hi = p.min(axis=0), p.max(axis=0)
    centre = 0.5 * (lo + hi)
    half = max(0.5 * float((hi - lo)[:2].max()), 1e-9)
    pix = size * 0.45 / half
    x = (p[:, 0] - centre[0]) * pix + size / 2
    y = size / 2 - (p[:, 1] - centre[1]) * pix
    r = np.clip(radius * pix, 0.7, 3.0)
    pixels, depths, which = [], [], []
    for dx in (-2, -1, 0, 1, 2):
        for dy in (-2, -1, 0, 1, 2):
            sel = np.flatnonzero(r >= np.hypot(dx, dy))
            u = np.floor(x[sel] + dx).astype(np.int64)
            v = np.floor(y[sel] + dy).astype(np.int64)
            ok = (u >= 0) & (u < size) & (v >= 0) & (v < size)
            pixels.append(v[ok] * size + u[ok])
            depths.append(p[sel[ok], 2])
            which.append(sel[ok])
    pixels, depths, which = np.concatenate(pixels), np.concatenate(depths), np.concatenate(which)
    order = np.lexsort((-depths, pixels))  # per pixel, the nearest (largest z) first
    first = np.ones(len(order), bool)
    first[1:] = pixels[order][1:] != pixels[order][:-1]
    img = np.zeros((size * size, 4), np.uint8)
    img[pixels[order][first], :3] = rgb[which[order][first]]
    img[pixels[order][first], 3] = 255
    return img.reshape(size, size, 4)
