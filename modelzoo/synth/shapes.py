"""Procedural shapes as signed distance functions (SDF).

A `Shape` is the union of 1 to 3 primitives (box, cylinder, cone, sphere, torus,
capsule), each with its own size, rotation and offset. Every shape is normalised
so that its axis-aligned bounding box is centred on the origin with a largest
half-extent of `FIT` in the normalised cube [-1, 1]^3; the object frame in metres
is that cube times `NOMINAL_HALF_SIZE` (a layout scale of 1 makes a 0.36 m object).

All functions are vectorised over points of shape (N, 3) and pure numpy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Half-size in metres of the normalised cube [-1, 1]^3 in the object frame.
NOMINAL_HALF_SIZE = 0.2
#: Largest half-extent of a normalised shape inside [-1, 1]^3 (margin for voxel grids).
FIT = 0.9
KINDS = ("box", "cylinder", "cone", "sphere", "torus", "capsule")


def _length2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt(x * x + y * y)


def sdf_box(p: np.ndarray, b: np.ndarray) -> np.ndarray:
    q = np.abs(p) - b
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    inside = np.minimum(q.max(axis=1), 0.0)
    return outside + inside


def sdf_sphere(p: np.ndarray, r: float) -> np.ndarray:
    return np.linalg.norm(p, axis=1) - r


def sdf_cylinder(p: np.ndarray, r: float, h: float) -> np.ndarray:
    """Capped cylinder along Y: radius r, half-height h."""
    dx = _length2(p[:, 0], p[:, 2]) - r
    dy = np.abs(p[:, 1]) - h
    return np.minimum(np.maximum(dx, dy), 0.0) + _length2(np.maximum(dx, 0.0), np.maximum(dy, 0.0))


def sdf_capsule(p: np.ndarray, r: float, h: float) -> np.ndarray:
    """Capsule along Y: segment from -h to +h, radius r."""
    q = p.copy()
    q[:, 1] = p[:, 1] - np.clip(p[:, 1], -h, h)
    return np.linalg.norm(q, axis=1) - r


def sdf_torus(p: np.ndarray, big_r: float, r: float) -> np.ndarray:
    """Torus in the XZ plane: ring radius big_r, tube radius r."""
    qx = _length2(p[:, 0], p[:, 2]) - big_r
    return _length2(qx, p[:, 1]) - r


def sdf_cone(p: np.ndarray, h: float, r1: float, r2: float) -> np.ndarray:
    """Capped cone along Y (exact, after Inigo Quilez): radius r1 at y=-h, r2 at y=+h."""
    qx = _length2(p[:, 0], p[:, 2])
    qy = p[:, 1]
    k1x, k1y = r2, h
    k2x, k2y = r2 - r1, 2.0 * h
    cax = qx - np.minimum(qx, np.where(qy < 0.0, r1, r2))
    cay = np.abs(qy) - h
    tt = np.clip(((k1x - qx) * k2x + (k1y - qy) * k2y) / (k2x * k2x + k2y * k2y), 0.0, 1.0)
    cbx = qx - k1x + k2x * tt
    cby = qy - k1y + k2y * tt
    s = np.where((cbx < 0.0) & (cay < 0.0), -1.0, 1.0)
    return s * np.sqrt(np.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby))


def _local_half_extents(kind: str, params: np.ndarray) -> np.ndarray:
    if kind == "box":
        return params[:3]
    if kind == "sphere":
        return np.full(3, params[0])
    if kind in ("cylinder",):
        r, h = params[:2]
        return np.array([r, h, r])
    if kind == "capsule":
        r, h = params[:2]
        return np.array([r, h + r, r])
    if kind == "torus":
        big_r, r = params[:2]
        return np.array([big_r + r, r, big_r + r])
    if kind == "cone":
        h, r1, r2 = params[:3]
        rr = max(r1, r2)
        return np.array([rr, h, rr])
    raise ValueError(f"unknown primitive kind {kind!r}")


@dataclass
class Primitive:
    kind: str
    params: np.ndarray  # kind-specific sizes, see the sdf_* functions
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))  # local -> shape frame
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def sdf(self, p: np.ndarray) -> np.ndarray:
        local = (p - self.offset) @ self.rotation  # R^T (p - o), row vectors
        k, a = self.kind, self.params
        if k == "box":
            return sdf_box(local, a[:3])
        if k == "sphere":
            return sdf_sphere(local, a[0])
        if k == "cylinder":
            return sdf_cylinder(local, a[0], a[1])
        if k == "capsule":
            return sdf_capsule(local, a[0], a[1])
        if k == "torus":
            return sdf_torus(local, a[0], a[1])
        if k == "cone":
            return sdf_cone(local, a[0], a[1], a[2])
        raise ValueError(f"unknown primitive kind {k!r}")

    def aabb(self) -> tuple[np.ndarray, np.ndarray]:
        e = _local_half_extents(self.kind, self.params)
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * e
        world = corners @ self.rotation.T + self.offset
        return world.min(axis=0), world.max(axis=0)


@dataclass
class Shape:
    """A union of primitives, normalised into [-1, 1]^3 (see module docstring)."""

    primitives: list[Primitive]
    center: np.ndarray  # raw-frame centre of the bounding box
    k: float  # raw -> normalised scale
    category: str = ""  # what it depicts, for a structured domain ("mug", "table"...); "" for random unions

    def sdf(self, p: np.ndarray) -> np.ndarray:
        """Signed distance in normalised units at normalised points p (N, 3)."""
        raw = p / self.k + self.center
        d = self.primitives[0].sdf(raw)
        for prim in self.primitives[1:]:
            d = np.minimum(d, prim.sdf(raw))
        return d * self.k

    def describe(self) -> str:
        return "+".join(p.kind for p in self.primitives)


def normalise(primitives: list[Primitive], category: str = "") -> Shape:
    lows, highs = zip(*(p.aabb() for p in primitives))
    lo, hi = np.min(lows, axis=0), np.max(highs, axis=0)
    center = 0.5 * (lo + hi)
    k = FIT / float(0.5 * (hi - lo).max())
    return Shape(primitives=primitives, center=center, k=k, category=category)


def _rot_axis(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _random_params(kind: str, rng: np.random.Generator, size: float) -> np.ndarray:
    """Sizes in raw units; `size` ~ overall half-extent. Thin parts are avoided so that a
    32^3 grid still resolves them (tube radii >= 0.18 * size)."""
    u = lambda lo, hi: float(rng.uniform(lo, hi)) * size  # noqa: E731
    if kind == "box":
        return np.array([u(0.3, 1.0), u(0.3, 1.0), u(0.3, 1.0)])
    if kind == "sphere":
        return np.array([u(0.5, 1.0)])
    if kind == "cylinder":
        return np.array([u(0.25, 0.9), u(0.25, 1.0)])
    if kind == "capsule":
        return np.array([u(0.25, 0.6), u(0.2, 0.8)])
    if kind == "torus":
        r = u(0.18, 0.35)
        return np.array([r + u(0.25, 0.6), r])
    if kind == "cone":
        return np.array([u(0.35, 1.0), u(0.4, 1.0), u(0.0, 0.3)])
    raise ValueError(kind)


def random_shape(rng: np.random.Generator) -> Shape:
    """1 primitive (45%), 2 (35%) or 3 (20%), parts attached to the first one."""
    n = int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
    kind = str(rng.choice(KINDS))
    base_rot = np.eye(3)
    if kind in ("torus", "cylinder", "capsule", "cone") and rng.random() < 0.3:
        base_rot = _rot_axis("x", np.pi / 2)  # lying on its side
    base = Primitive(kind, _random_params(kind, rng, 1.0), base_rot, np.zeros(3))
    prims = [base]
    for _ in range(n - 1):
        kind = str(rng.choice(KINDS))
        rot = np.eye(3)
        r = rng.random()
        if r < 0.25:
            rot = _rot_axis("x", np.pi / 2)
        elif r < 0.5:
            rot = _rot_axis("z", np.pi / 2)
        rot = _rot_axis("y", float(rng.uniform(0, np.pi))) @ rot
        params = _random_params(kind, rng, float(rng.uniform(0.45, 0.75)))
        lo, hi = base.aabb()
        half = 0.5 * (hi - lo)
        # Attach on a random face of the base's box: centre on the face, inside by a margin.
        axis = int(rng.choice(3, p=[0.3, 0.45, 0.25]))
        sign = 1.0 if rng.random() < 0.7 else -1.0
        offset = rng.uniform(-0.5, 0.5, size=3) * half
        offset[axis] = sign * half[axis] * float(rng.uniform(0.7, 1.0))
        prims.append(Primitive(kind, params, rot, offset))
    return normalise(prims)


def household_shape(rng: np.random.Generator) -> Shape:
    """An everyday tabletop object, upright, made of the same primitives: mug, bottle, can,
    bowl-like dish, lamp, pedestal table, stool, carton, ball. Its own structured
    distribution (parts in fixed arrangements, never lying on a side), unlike the random
    unions of `random_shape` that pretraining sees: the simulated project's target domain."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    kind = str(rng.choice(HOUSEHOLD_KINDS))
    up = np.eye(3)
    if kind == "mug":
        r, h = u(0.45, 0.65), u(0.55, 0.9)
        tube = u(0.12, 0.16)
        ring = u(0.28, 0.4) * h
        handle = Primitive("torus", np.array([ring + tube, tube]), _rot_axis("x", np.pi / 2),
                           np.array([r + ring * 0.6, u(-0.1, 0.1) * h, 0.0]))
        prims = [Primitive("cylinder", np.array([r, h]), up, np.zeros(3)), handle]
    elif kind == "bottle":
        r, h = u(0.3, 0.45), u(0.7, 1.0)
        nr, nh = u(0.12, 0.18), u(0.2, 0.35)
        shoulder = Primitive("cone", np.array([u(0.12, 0.2), r, nr]), up, np.array([0.0, h + 0.1, 0.0]))
        prims = [Primitive("cylinder", np.array([r, h]), up, np.zeros(3)), shoulder,
                 Primitive("cylinder", np.array([nr, nh]), up, np.array([0.0, h + 0.2 + nh, 0.0]))]
    elif kind == "can":
        prims = [Primitive("cylinder", np.array([u(0.35, 0.6), u(0.45, 0.9)]), up, np.zeros(3))]
    elif kind == "dish":
        h = u(0.18, 0.3)
        prims = [Primitive("cone", np.array([h, u(0.45, 0.6), u(0.8, 1.0)]), up, np.zeros(3)),
                 Primitive("cylinder", np.array([u(0.3, 0.4), 0.08]), up, np.array([0.0, -h - 0.06, 0.0]))]
    elif kind == "lamp":
        sh = u(0.25, 0.4)
        stem = u(0.4, 0.7)
        prims = [Primitive("cylinder", np.array([u(0.35, 0.5), 0.07]), up, np.array([0.0, -stem, 0.0])),
                 Primitive("cylinder", np.array([0.12, stem]), up, np.zeros(3)),
                 Primitive("cone", np.array([sh, u(0.5, 0.7), u(0.2, 0.35)]), up, np.array([0.0, stem + sh * 0.8, 0.0]))]
    elif kind == "table":
        top, leg = u(0.7, 1.0), u(0.5, 0.8)
        prims = [Primitive("box", np.array([top, 0.08, top * u(0.6, 1.0)]), up, np.array([0.0, leg, 0.0])),
                 Primitive("cylinder", np.array([u(0.1, 0.15), leg]), up, np.zeros(3)),
                 Primitive("cylinder", np.array([u(0.35, 0.5), 0.06]), up, np.array([0.0, -leg, 0.0]))]
    elif kind == "stool":
        seat = u(0.5, 0.7)
        prims = [Primitive("cylinder", np.array([seat, 0.09]), up, np.array([0.0, 0.6, 0.0])),
                 Primitive("cone", np.array([0.6, u(0.35, 0.5), u(0.12, 0.2)]), up, np.zeros(3))]
    elif kind == "carton":
        prims = [Primitive("box", np.array([u(0.3, 0.5), u(0.6, 1.0), u(0.3, 0.5)]), up, np.zeros(3))]
    else:  # ball
        prims = [Primitive("sphere", np.array([1.0]), up, np.zeros(3))]
    return normalise(prims, category=kind)


HOUSEHOLD_KINDS = ("mug", "bottle", "can", "dish", "lamp", "table", "stool", "carton", "ball")
#: Shape distributions by name: "primitives" (pretraining, the gold set) and "household".
DOMAINS = {"primitives": random_shape, "household": household_shape}


def grid_points(resolution: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """Cell centres of a resolution^3 grid over [lo, hi]^3, indexed [x, y, z] (ij order)."""
    c = lo + (np.arange(resolution) + 0.5) * (hi - lo) / resolution
    gx, gy, gz = np.meshgrid(c, c, c, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1)


_GRID_CACHE: dict[int, np.ndarray] = {}


def occupancy(shape: Shape, resolution: int = 32) -> np.ndarray:
    """Boolean occupancy of the cell centres of a resolution^3 grid over [-1, 1]^3, [x, y, z]."""
    if resolution not in _GRID_CACHE:
        _GRID_CACHE[resolution] = grid_points(resolution)
    d = shape.sdf(_GRID_CACHE[resolution])
    return (d < 0.0).reshape(resolution, resolution, resolution)


def gt_mesh(shape: Shape, resolution: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth mesh: marching cubes of the SDF, object frame in metres (float32, int32)."""
    from skimage.measure import marching_cubes

    pad = 2
    step = 2.0 / resolution
    c = -1.0 + (np.arange(-pad, resolution + pad) + 0.5) * step
    gx, gy, gz = np.meshgrid(c, c, c, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1)
    n = len(c)
    d = shape.sdf(pts).reshape(n, n, n)
    verts, faces, _, _ = marching_cubes(d, level=0.0, spacing=(step, step, step), method="lewiner")
    verts = verts + c[0]
    # With the SDF negative inside, skimage's winding already faces outwards (positive volume).
    return (verts * NOMINAL_HALF_SIZE).astype(np.float32), np.ascontiguousarray(faces, dtype=np.int32)
