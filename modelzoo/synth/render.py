"""A small numpy renderer: sphere tracing of a shape's SDF through a pinhole camera.

Conventions follow `modelzoo.generators.base`: camera at the origin looking down -Z,
+Y up, ``p_cam = t + R @ (s * p_obj)``, pixel ``u = cx + fx x / -z``, ``v = cy - fy y / -z``.
Here ``p_obj`` is in normalised shape units, so ``s`` is the layout scale times
`NOMINAL_HALF_SIZE`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelzoo.synth.shapes import Shape

#: Radius of a sphere holding every normalised shape (sqrt(3) * FIT < 1.6).
BOUND_RADIUS = 1.6


@dataclass
class Render:
    hit: np.ndarray  # H x W bool
    depth: np.ndarray  # H x W float32 metres along -Z (0 where no hit)
    normal: np.ndarray  # H x W x 3 camera-frame unit normals (0 where no hit)


def pixel_rays(K: np.ndarray, width: int, height: int) -> np.ndarray:
    """Unnormalised camera-frame ray directions (z = -1) for every pixel centre, H x W x 3."""
    u = np.arange(width) + 0.5
    v = np.arange(height) + 0.5
    uu, vv = np.meshgrid(u, v)
    x = (uu - K[0, 2]) / K[0, 0]
    y = -(vv - K[1, 2]) / K[1, 1]
    return np.stack([x, y, -np.ones_like(x)], axis=-1)


def sphere_trace(
    shape: Shape,
    R: np.ndarray,
    t: np.ndarray,
    s: float,
    K: np.ndarray,
    width: int,
    height: int,
    max_steps: int = 64,
    eps: float = 2e-3,
) -> Render:
    rays = pixel_rays(K, width, height).reshape(-1, 3)
    dirs_cam = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    # Ray origin and directions in normalised object units: p_obj = R^T (p_cam - t) / s.
    origin = (R.T @ (-t)) / s
    dirs = dirs_cam @ R  # rows: R^T d
    # Intersect with the bounding sphere to start marching close to the surface.
    b = dirs @ origin
    c = origin @ origin - BOUND_RADIUS**2
    disc = b * b - c
    idx = np.nonzero(disc > 0)[0]
    sq = np.sqrt(disc[idx])
    tn = np.maximum(-b[idx] - sq, 0.0)
    tf = -b[idx] + sq
    hit_t = np.full(len(rays), np.inf)
    d_active = dirs[idx]
    for _ in range(max_steps):
        if len(idx) == 0:
            break
        p = origin + tn[:, None] * d_active
        dist = shape.sdf(p)
        done = dist < eps
        hit_t[idx[done]] = tn[done]
        tn = tn + np.maximum(dist, 0.5 * eps)
        keep = (~done) & (tn < tf)
        idx, tn, tf, d_active = idx[keep], tn[keep], tf[keep], d_active[keep]
    hit = np.isfinite(hit_t)
    hidx = np.nonzero(hit)[0]
    pts = origin + hit_t[hidx, None] * dirs[hidx]
    # Normals from central differences of the SDF, rotated back to the camera frame.
    h = 1e-3
    n_obj = np.zeros_like(pts)
    for a in range(3):
        e = np.zeros(3)
        e[a] = h
        n_obj[:, a] = shape.sdf(pts + e) - shape.sdf(pts - e)
    n_obj /= np.linalg.norm(n_obj, axis=1, keepdims=True) + 1e-12
    n_cam = n_obj @ R.T
    p_cam = t + (s * pts) @ R.T
    depth = np.zeros(len(rays), np.float32)
    depth[hidx] = -p_cam[:, 2]
    normal = np.zeros((len(rays), 3), np.float32)
    normal[hidx] = n_cam
    return Render(
        hit=hit.reshape(height, width),
        depth=depth.reshape(height, width),
        normal=normal.reshape(height, width, 3),
    )


def shade(render: Render, color: np.ndarray, light_dir: np.ndarray, ambient: float = 0.35) -> np.ndarray:
    """Lambert + a little Blinn-Phong highlight; returns H x W x 3 float in [0, 1]."""
    l = light_dir / np.linalg.norm(light_dir)
    n = render.normal
    lam = np.clip(n @ l, 0.0, 1.0)
    half = l + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    spec = np.clip(n @ half, 0.0, 1.0) ** 24 * 0.25
    rgb = color[None, None, :] * (ambient + (1.0 - ambient) * lam[..., None]) + spec[..., None]
    return np.clip(rgb, 0.0, 1.0)
