"""Scene sampler: a random shape at a random pose in front of the camera, rendered onto a
random background with optional occluders (the paper's "render-paste" stage, in spirit).

Everything is deterministic from an integer seed: `sample_scene(seed)` always returns the
same image, mask, depth, occupancy and layout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from modelzoo.generators.base import Layout
from modelzoo.synth.render import shade, sphere_trace
from modelzoo.synth.rotations import axis_angle, matrix_to_quat, quat_to_matrix
from modelzoo.synth.shapes import DOMAINS, NOMINAL_HALF_SIZE, Shape, gt_mesh, occupancy

IMAGE_SIZE = 128
OCC_RES = 32


@dataclass
class SynthSample:
    seed: int
    image: np.ndarray  # H x W x 3 uint8
    mask: np.ndarray  # H x W bool, visible part of the object
    depth: np.ndarray  # H x W float32 metres (0 = background / occluder)
    intrinsics: np.ndarray  # 3 x 3
    layout: Layout  # uniform scale; object frame = normalised shape * NOMINAL_HALF_SIZE
    shape: Shape
    occupancy: np.ndarray  # 32^3 bool over [-1, 1]^3, indexed [x, y, z]
    color: np.ndarray  # base RGB in [0, 1]
    occluded: bool

    def gt_mesh(self, resolution: int = 96) -> tuple[np.ndarray, np.ndarray]:
        """Ground-truth mesh in the object frame, metres."""
        return gt_mesh(self.shape, resolution)

    @property
    def rotation_matrix(self) -> np.ndarray:
        return quat_to_matrix(self.layout.rotation)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def random_color(rng: np.random.Generator) -> np.ndarray:
    return _hsv_to_rgb(float(rng.random()), float(rng.uniform(0.25, 0.9)), float(rng.uniform(0.45, 1.0)))


def _upsample(small: np.ndarray, h: int, w: int) -> np.ndarray:
    zoom = (h / small.shape[0], w / small.shape[1]) + (1,) * (small.ndim - 2)
    return ndimage.zoom(small, zoom, order=1, mode="nearest")[:h, :w]


def random_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gradients, smooth noise, stripes/checks or a 'table and wall' split, float in [0, 1]."""
    kind = int(rng.integers(4))
    c1, c2 = random_color(rng) * rng.uniform(0.4, 1.0), random_color(rng) * rng.uniform(0.4, 1.0)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    if kind == 0:  # linear gradient in a random direction
        a = rng.uniform(0, 2 * np.pi)
        g = (np.cos(a) * xx + np.sin(a) * yy)
        g = (g - g.min()) / (np.ptp(g) + 1e-9)
        bg = c1 * (1 - g[..., None]) + c2 * g[..., None]
    elif kind == 1:  # smooth colour noise
        cells = int(rng.integers(2, 9))
        bg = _upsample(rng.random((cells + 1, cells + 1, 3)), h, w)
    elif kind == 2:  # stripes or checks
        period = rng.uniform(0.04, 0.2)
        a = rng.uniform(0, np.pi)
        u = np.cos(a) * xx + np.sin(a) * yy
        m = np.floor(u / period)
        if rng.random() < 0.5:
            m = m + np.floor((-np.sin(a) * xx + np.cos(a) * yy) / period)
        sel = (m % 2)[..., None]
        bg = c1 * sel + c2 * (1 - sel)
    else:  # wall and table: two tones split by a horizon
        horizon = rng.uniform(0.3, 0.8)
        sel = (yy > horizon)[..., None]
        bg = c1 * sel + c2 * (1 - sel)
    bg = bg + rng.normal(0, rng.uniform(0.0, 0.05), size=(h, w, 3))
    return np.clip(bg, 0, 1)


def _random_occluder(rng: np.random.Generator, h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A rectangle or ellipse overlapping an edge of the object's box (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = box
    bh, bw = max(y1 - y0, 4), max(x1 - x0, 4)
    ch = rng.uniform(0.3, 0.8) * bh
    cw = rng.uniform(0.3, 0.8) * bw
    side = int(rng.integers(4))
    cy = rng.uniform(y0, y1)
    cx = rng.uniform(x0, x1)
    if side == 0:
        cy = y0 + rng.uniform(-0.2, 0.2) * bh
    elif side == 1:
        cy = y1 + rng.uniform(-0.2, 0.2) * bh
    elif side == 2:
        cx = x0 + rng.uniform(-0.2, 0.2) * bw
    else:
        cx = x1 + rng.uniform(-0.2, 0.2) * bw
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    if rng.random() < 0.5:
        return (np.abs(yy - cy) < ch / 2 + 0 * xx) & (np.abs(xx - cx) < cw / 2)
    return ((yy - cy) / (ch / 2)) ** 2 + ((xx - cx) / (cw / 2)) ** 2 < 1.0


def intrinsics_for(size: int, fov_deg: float) -> np.ndarray:
    fx = 0.5 * size / np.tan(np.deg2rad(fov_deg) / 2)
    return np.array([[fx, 0.0, size / 2], [0.0, fx, size / 2], [0.0, 0.0, 1.0]])


def sample_pose(rng: np.random.Generator, K: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Upright objects seen from slightly above: yaw anywhere, camera elevation 5-45 degrees,
    small roll; apparent size 30-75% of the image; centre anywhere the object still fits."""
    yaw = rng.uniform(0, 2 * np.pi)
    elev = np.deg2rad(rng.uniform(5, 45))
    roll = np.deg2rad(rng.normal(0, 6))
    R = axis_angle([0, 0, 1], roll) @ axis_angle([1, 0, 0], elev) @ axis_angle([0, 1, 0], yaw)
    scale = float(np.exp(rng.uniform(np.log(0.5), np.log(1.5))))
    radius = 1.2 * scale * NOMINAL_HALF_SIZE  # ~ metric bounding radius of the object
    frac = rng.uniform(0.3, 0.75)
    fx = K[0, 0]
    dist = 2 * radius * fx / (frac * size)
    r_px = 0.5 * frac * size
    u = rng.uniform(r_px, size - r_px)
    v = rng.uniform(r_px, size - r_px)
    t = dist * np.array([(u - K[0, 2]) / fx, -(v - K[1, 2]) / K[1, 1], -1.0])
    return R, t, scale


#: A drawn pose that shows fewer pixels of the object is drawn again (up to 20 times).
MIN_PIXELS = 40


def trace_at_drawn_pose(shape, rng: np.random.Generator, K: np.ndarray, size: int):
    """(render, R, t, scale) of `shape` (anything with `sdf`) at a pose of `sample_pose`, drawn again
    while the object shows fewer than MIN_PIXELS (the last draw is kept after 20)."""
    for _attempt in range(20):
        R, t, scale = sample_pose(rng, K, size)
        r = sphere_trace(shape, R, t, scale * NOMINAL_HALF_SIZE, K, size, size)
        if r.hit.sum() >= MIN_PIXELS:
            break
    return r, R, t, scale


def _connected(occ: np.ndarray) -> bool:
    _, n = ndimage.label(occ)
    return n == 1


def sample_scene(seed: int, size: int = IMAGE_SIZE, domain: str = "primitives") -> SynthSample:
    """The scene of `seed`; `domain` names the shape distribution (`shapes.DOMAINS`)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown scene domain {domain!r}; one of {', '.join(DOMAINS)}")
    make_shape = DOMAINS[domain]
    rng = np.random.default_rng([seed, 20251119])
    while True:
        shape = make_shape(rng)
        occ = occupancy(shape, OCC_RES)
        if occ.sum() > 30 and _connected(occ):
            break
    K = intrinsics_for(size, float(rng.uniform(45, 70)))
    color = random_color(rng)
    light = np.array([rng.uniform(-1, 1), rng.uniform(0.3, 1.5), rng.uniform(0.3, 1.5)])
    r, R, t, scale = trace_at_drawn_pose(shape, rng, K, size)
    obj = shade(r, color, light, ambient=float(rng.uniform(0.25, 0.5)))
    if len(shape.primitives) > 1 and rng.random() < 0.4:
        # A second colour for one part: pick the primitive nearest to each hit point.
        hp = _hit_points_obj(r, R, t, scale, K)
        raw = hp / shape.k + shape.center
        dists = np.stack([p.sdf(raw) for p in shape.primitives], axis=1)
        part = np.zeros(r.hit.shape, int)
        part[r.hit] = dists.argmin(axis=1)
        other = shade(r, random_color(rng), light)
        sel = (part == int(rng.integers(len(shape.primitives))))[..., None]
        obj = np.where(sel, other, obj)
    img = random_background(rng, size, size)
    img = np.where(r.hit[..., None], obj, img)
    mask = r.hit.copy()
    depth = r.depth.copy()
    occluded = False
    if rng.random() < 0.35:
        ys, xs = np.nonzero(mask)
        occ_mask = _random_occluder(rng, size, size, (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1))
        visible = mask & ~occ_mask
        if visible.sum() >= 0.5 * mask.sum():
            occ_col = random_background(rng, size, size) * 0.6 + random_color(rng) * 0.4
            img = np.where(occ_mask[..., None], occ_col, img)
            mask, occluded = visible, True
            depth = np.where(occ_mask, 0.0, depth).astype(np.float32)
    img = img + rng.normal(0, 0.015, size=img.shape)
    image = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    layout = Layout(
        rotation=tuple(float(x) for x in matrix_to_quat(R)),
        translation=tuple(float(x) for x in t),
        scale=(scale, scale, scale),
    )
    return SynthSample(
        seed=seed, image=image, mask=mask, depth=depth, intrinsics=K, layout=layout,
        shape=shape, occupancy=occ, color=color, occluded=occluded,
    )


def _hit_points_obj(r, R, t, scale, K) -> np.ndarray:
    """Normalised object-frame points of the hit pixels, recovered from the depth map."""
    ys, xs = np.nonzero(r.hit)
    depth = r.depth[ys, xs]
    x = (xs + 0.5 - K[0, 2]) / K[0, 0] * depth
    y = -(ys + 0.5 - K[1, 2]) / K[1, 1] * depth
    p_cam = np.stack([x, y, -depth], axis=1)
    return ((p_cam - t) @ R) / (scale * NOMINAL_HALF_SIZE)
