"""Meshing: occupancy -> triangle mesh, and the geometry around it (normals, surface
samples, voxelisation back to occupancy).

Conventions: object frame, metres, +Y up (glTF's own convention, so no axis swap).
Occupancy grids are indexed [x, y, z] over the normalised cube [-1, 1]^3 (cell centres),
which maps to metres by `half_size` (`NOMINAL_HALF_SIZE` by default).

A mesh is a pair of arrays: vertices V x 3 (float32, metres) and faces F x 3 (vertex
indices, counter-clockwise seen from outside), optionally with per-vertex colours.
Everything here is numpy + skimage/scipy and takes a few milliseconds for a 32^3 grid.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import marching_cubes

from modelzoo.synth.shapes import NOMINAL_HALF_SIZE


def check_mesh(vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """(vertices float32 V x 3, faces int64 F x 3), both contiguous, or ValueError saying
    what is wrong: the arrays every writer and the preview start from."""
    v = np.ascontiguousarray(vertices, dtype=np.float32)
    f = np.ascontiguousarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError("vertices must be a non-empty V x 3 array")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or f.min() < 0 or f.max() >= len(v):
        raise ValueError("faces must be a non-empty F x 3 array of vertex indices")
    return v, f


def as_rgba(colors: np.ndarray | None, n: int) -> np.ndarray:
    """Per-vertex colours as n x 4 uint8 RGBA: uint8 kept, floats in [0, 1] scaled, one
    colour broadcast, RGB given opaque alpha; light grey when None."""
    if colors is None:
        return np.full((n, 4), 200, np.uint8)
    c = np.asarray(colors)
    if c.dtype != np.uint8:
        c = (np.clip(c, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    if c.ndim == 1:
        c = np.broadcast_to(c, (n, c.shape[0]))
    if c.shape[1] == 3:
        c = np.concatenate([c, np.full((n, 1), 255, np.uint8)], axis=1)
    return np.ascontiguousarray(c, dtype=np.uint8)


def row_cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of N x 3 arrays (np.cross, without its per-call overhead)."""
    return np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
                     a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                     a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], axis=1)


def clean_occupancy(prob: np.ndarray, level: float = 0.5, min_fraction: float = 0.1) -> np.ndarray:
    """Zero the probability outside the connected components (6-connected) that hold at
    least `min_fraction` of the largest one's voxels: drops floaters before meshing."""
    solid = prob > level
    labels, n = ndimage.label(solid)
    if n <= 1:
        return prob
    sizes = np.bincount(labels.ravel())[1:]
    keep_ids = np.nonzero(sizes >= min_fraction * sizes.max())[0] + 1
    keep = np.isin(labels, keep_ids)
    # One 6-neighbour dilation keeps the sub-level values around kept voxels, so the
    # iso-surface is placed exactly where it would be without the cleanup.
    keep = ndimage.binary_dilation(keep)
    return np.where(keep, prob, 0.0)


def remove_degenerate(vertices: np.ndarray, faces: np.ndarray, eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Drop zero-area and repeated-index triangles, then unreferenced vertices."""
    f = faces
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    v = vertices.astype(np.float64)
    ok &= (row_cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]) ** 2).sum(axis=1) > eps * eps
    f = f[ok]
    used = np.zeros(len(vertices), bool)
    used[f.ravel()] = True
    remap = np.cumsum(used) - 1
    return vertices[used], remap[f].astype(np.int32)


def occupancy_to_mesh(
    grid: np.ndarray,
    level: float = 0.5,
    half_size: float = NOMINAL_HALF_SIZE,
    logits: bool = False,
    min_fraction: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of an occupancy (probabilities, or logits with ``logits=True``).

    Returns (vertices V x 3 float32 metres, faces F x 3 int32) with outward winding; the
    grid is zero-padded so the surface is closed (watertight) whenever the kept part is.
    """
    g = np.asarray(grid, dtype=np.float32)
    if logits:
        g = 0.5 * (1.0 + np.tanh(0.5 * g))  # the sigmoid, without overflow at the decoder's large logits
    if g.max() <= level:  # nothing solid: mesh the most confident region instead of failing
        level = 0.5 * float(g.max())
        if level <= 1e-6:
            raise ValueError("empty occupancy grid: nothing to mesh")
    g = clean_occupancy(g, level, min_fraction)
    res = g.shape[0]
    step = 2.0 / res
    padded = np.pad(g, 1)
    verts, faces, _, _ = marching_cubes(padded, level=level, spacing=(step, step, step), method="lewiner")
    verts = verts + (-1.0 + 0.5 * step - step)
    faces = faces[:, ::-1]  # values grow inwards here, so flip skimage's winding to face outwards
    verts, faces = remove_degenerate(verts.astype(np.float32), faces)
    return (verts * half_size).astype(np.float32), faces


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, unit length (float32); (0, 1, 0) for isolated vertices."""
    v = vertices.astype(np.float64)
    fn = row_cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    n = np.zeros_like(v)
    idx = faces.ravel()
    for a in range(3):
        w = np.repeat(fn[:, a], 3)
        n[:, a] = np.bincount(idx, weights=w, minlength=len(v))
    norm = np.linalg.norm(n, axis=1)
    bad = norm < 1e-20
    n[bad] = (0.0, 1.0, 0.0)
    norm[bad] = 1.0
    n = (n / norm[:, None]).astype(np.float32)
    # Renormalise in float32 so the validator's unit-length check passes to the last bit.
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def mesh_to_occupancy(vertices: np.ndarray, faces: np.ndarray, resolution: int = 32, normalise: bool = False,
                      half_size: float = NOMINAL_HALF_SIZE, samples: int | None = None,
                      seed: int = 0) -> np.ndarray:
    """Solid voxelisation over [-1, 1]^3 (cell centres, [x, y, z]) of a closed mesh.

    Surface points mark the shell, then enclosed cavities are filled. Coordinates are
    divided by `half_size` (metres -> normalised cube) unless ``normalise=True``, which
    centres the bounding box and scales its largest half-extent to 1 first.
    """
    v = np.asarray(vertices, np.float64)
    if normalise:
        lo, hi = v.min(axis=0), v.max(axis=0)
        v = (v - 0.5 * (lo + hi)) / max(0.5 * float((hi - lo).max()), 1e-12)
    else:
        v = v / half_size
    cell = 2.0 / resolution
    if samples is None:
        area = _face_areas(v, faces).sum()
        samples = int(min(2_000_000, max(20_000, 12 * area / (cell * cell))))
    pts = sample_surface(v, faces, samples, seed=seed)
    pts = pts[(np.abs(pts) <= 1.0 + 1e-6).all(axis=1)]  # outside the cube: ignored
    # Points on the cube's faces (normalised shapes touch them) belong to the edge cells.
    idx = np.clip(np.floor((pts + 1.0) / cell).astype(np.int64), 0, resolution - 1)
    shell = np.zeros((resolution,) * 3, bool)
    shell[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    return ndimage.binary_fill_holes(shell)


def mesh_to_cell_occupancy(vertices: np.ndarray, faces: np.ndarray, resolution: int = 32,
                           half_size: float = NOMINAL_HALF_SIZE) -> np.ndarray:
    """Which cell centres of a resolution^3 grid over [-1, 1]^3 ([x, y, z]) lie inside a closed
    mesh: the test the pretraining occupancies make (`modelzoo.synth.shapes.occupancy`, SDF < 0
    at the centres), so a mesh of a shape voxelises as the shape encoder saw it in training.

    `mesh_to_occupancy` marks every cell the surface touches (the shell), so its shapes come out
    half a cell fatter on every side (a can 25% more voxels, a lamp 40%): right for comparing two
    meshes voxelised alike, wrong as the encoder's input. Here rays through the centres along
    each axis count the surface crossings (odd: inside), and the three axes vote, so a mesh with
    a small hole gives a wrong answer on one axis' rays, not a streak through the grid.
    """
    v = np.asarray(vertices, np.float64) / half_size
    tri = v[np.asarray(faces)]
    votes = np.zeros((resolution,) * 3, np.int8)
    for axis in range(3):
        votes += _parity_along(tri, axis, resolution)
    return votes >= 2


def _parity_along(tri: np.ndarray, axis: int, res: int) -> np.ndarray:
    """Inside (1) / outside (0) of the cell centres by the parity of surface crossings of rays along `axis`."""
    cell = 2.0 / res
    a, b = [d for d in range(3) if d != axis]
    # A tiny irrational offset keeps the rays off vertices and edges, where a crossing would count twice.
    pa, pb = tri[:, :, a] - 1.1e-7 * np.pi, tri[:, :, b] - 1.3e-7 * np.e
    lo_a, hi_a = _centres_within(pa, cell, res)
    lo_b, hi_b = _centres_within(pb, cell, res)
    na, nb = np.maximum(hi_a - lo_a + 1, 0), np.maximum(hi_b - lo_b + 1, 0)
    count = na * nb
    t = np.repeat(np.arange(len(tri)), count)  # one (triangle, ray) pair per ray under its bounding box
    k = np.arange(len(t)) - np.repeat(np.cumsum(count) - count, count)
    ia = lo_a[t] + k // np.maximum(nb[t], 1)
    ib = lo_b[t] + k % np.maximum(nb[t], 1)
    x, y = -1 + (ia + 0.5) * cell, -1 + (ib + 0.5) * cell
    (x0, x1, x2), (y0, y1, y2) = pa[t].T, pb[t].T
    det = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
    ok = np.abs(det) > 1e-18
    det = np.where(ok, det, 1.0)
    l0 = ((y1 - y2) * (x - x2) + (x2 - x1) * (y - y2)) / det
    l1 = ((y2 - y0) * (x - x2) + (x0 - x2) * (y - y2)) / det
    l2 = 1 - l0 - l1
    hit = ok & (l0 >= 0) & (l1 >= 0) & (l2 >= 0)
    z = (l0 * tri[t, 0, axis] + l1 * tri[t, 1, axis] + l2 * tri[t, 2, axis])[hit]
    ia, ib = ia[hit], ib[hit]
    # Each crossing flips inside/outside for the centres beyond it; the running sum's parity says which.
    first = np.clip(np.ceil((z + 1) / cell - 0.5), 0, res).astype(np.int64)
    flips = np.zeros((res, res, res + 1), np.int64)
    np.add.at(flips, (ia, ib, first), 1)
    inside = (np.cumsum(flips, axis=2)[:, :, :res] % 2).astype(np.int8)
    # (a, b, axis) -> [x, y, z]
    order = [0, 0, 0]
    order[a], order[b], order[axis] = 0, 1, 2
    return np.transpose(inside, order)


def _centres_within(p: np.ndarray, cell: float, res: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last cell-centre index within each triangle's extent along one axis (last < first: none)."""
    lo = np.clip(np.ceil((p.min(1) + 1) / cell - 0.5), 0, res).astype(np.int64)
    hi = np.clip(np.floor((p.max(1) + 1) / cell - 0.5), -1, res - 1).astype(np.int64)
    return lo, hi


def _face_areas(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    cr = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    return 0.5 * np.linalg.norm(cr, axis=1)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n points uniformly distributed on the surface (area-weighted), deterministic by seed."""
    rng = np.random.default_rng(seed)
    v = np.asarray(vertices, np.float64)
    areas = _face_areas(v, faces)
    cdf = np.cumsum(areas)
    if cdf[-1] <= 0:
        return v[rng.integers(len(v), size=n)]
    fi = np.searchsorted(cdf, rng.random(n) * cdf[-1])
    fi = np.minimum(fi, len(faces) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    a, b, c = 1 - s, s * (1 - r2), s * r2
    tri = v[faces[fi]]
    return a[:, None] * tri[:, 0] + b[:, None] * tri[:, 1] + c[:, None] * tri[:, 2]
