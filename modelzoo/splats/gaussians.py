"""3D Gaussian splats as numpy arrays, in the parameterisation of the 3DGS reference implementation
(Kerbl et al. 2023) and of the PLY files it, SAM 3D Objects and TRELLIS write:

* ``positions`` N x 3 float32, metres;
* ``scales`` N x 3 float32, *log* of the standard deviations along the Gaussian's axes;
* ``rotations`` N x 4 float32, quaternion (w, x, y, z), not necessarily unit length;
* ``opacities`` N float32, *logit* of the opacity (alpha = sigmoid(opacity));
* ``sh_dc`` N x 3 float32, the degree-0 spherical-harmonics coefficient per colour channel
  (colour = 0.5 + SH_C0 * sh_dc);
* ``sh_rest`` N x 3 x K float32, the higher-degree coefficients, channel-major as the PLY's
  ``f_rest_*`` fields are laid out (K = 0, 3, 8 or 15 for degree 0 to 3).

The engine stores a splat in the object frame that meshes use (metres, +Y up, centred; the
candidate's layout carries the pose), so one layout places either representation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SH_C0 = 0.28209479177387814
SH_REST = {0: 0, 1: 3, 2: 8, 3: 15}  # coefficients per channel beyond the DC term, by degree


class SplatError(ValueError):
    """A splat that the engine refuses: what is wrong with it, in words."""


@dataclass
class Gaussians:
    positions: np.ndarray
    scales: np.ndarray
    rotations: np.ndarray
    opacities: np.ndarray
    sh_dc: np.ndarray
    sh_rest: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def sh_degree(self) -> int:
        k = 0 if self.sh_rest is None else self.sh_rest.shape[2]
        return {v: d for d, v in SH_REST.items()}[k]

    def subset(self, index: np.ndarray) -> "Gaussians":
        return Gaussians(self.positions[index], self.scales[index], self.rotations[index], self.opacities[index],
                         self.sh_dc[index], None if self.sh_rest is None else self.sh_rest[index])

    def colors_rgb(self) -> np.ndarray:
        """N x 3 uint8: the view-independent colour (DC term)."""
        return np.clip((0.5 + SH_C0 * self.sh_dc) * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def alphas(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.opacities.astype(np.float64)))


def check_gaussians(g: Gaussians, *, max_gaussians: int) -> Gaussians:
    """The splat as contiguous float32 arrays, or SplatError saying why it is refused: shapes that do
    not agree, no Gaussians or more than `max_gaussians`, NaN or infinite values, zero rotations."""
    n = len(g.positions)
    if n == 0:
        raise SplatError("the splat has no Gaussians")
    if n > max_gaussians:
        raise SplatError(f"the splat has {n} Gaussians, more than the limit of {max_gaussians} "
                         "(MODELZOO_MAX_GAUSSIANS)")
    shapes = {"positions": (n, 3), "scales": (n, 3), "rotations": (n, 4), "opacities": (n,), "sh_dc": (n, 3)}
    out = {}
    for name, shape in shapes.items():
        a = np.asarray(getattr(g, name))
        if a.shape != shape:
            raise SplatError(f"{name} has shape {list(a.shape)}, expected {list(shape)}")
        a = np.ascontiguousarray(a, dtype=np.float32)
        bad = ~np.isfinite(a)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise SplatError(f"{name} holds {int(bad.sum())} NaN or infinite values (first at Gaussian {row})")
        out[name] = a
    rest = None
    if g.sh_rest is not None and np.asarray(g.sh_rest).size:
        rest = np.asarray(g.sh_rest)
        if rest.ndim != 3 or rest.shape[:2] != (n, 3) or rest.shape[2] not in SH_REST.values():
            raise SplatError(f"sh_rest has shape {list(rest.shape)}, expected [{n}, 3, K] with K in 3, 8, 15")
        rest = np.ascontiguousarray(rest, dtype=np.float32)
        if not np.isfinite(rest).all():
            raise SplatError(f"sh_rest holds {int((~np.isfinite(rest)).sum())} NaN or infinite values")
    if (np.linalg.norm(out["rotations"], axis=1) < 1e-12).any():
        raise SplatError("a rotation quaternion is zero")
    return Gaussians(**out, sh_rest=rest)


def recentre(g: Gaussians) -> tuple[Gaussians, np.ndarray]:
    """The splat moved so that its bounding box is centred on the origin, and the offset taken
    off (the centre it had): a layout keeps the pose with t' = t + R(s * centre)."""
    lo, hi = g.positions.min(axis=0), g.positions.max(axis=0)
    centre = (0.5 * (lo.astype(np.float64) + hi)).astype(np.float32)
    moved = Gaussians(g.positions - centre, g.scales, g.rotations, g.opacities, g.sh_dc, g.sh_rest)
    return moved, centre


def transform(g: Gaussians, rotation: np.ndarray, scale: float = 1.0) -> Gaussians:
    """The splat rotated by the 3x3 `rotation` (a proper rotation) and scaled uniformly: positions,
    the Gaussians' orientations and sizes. (Higher SH coefficients are not rotated: the compact copy
    keeps the DC term only, and the full PLY is stored as received up to this rotation.)"""
    from modelzoo.synth.rotations import matrix_to_quat

    R = np.asarray(rotation, np.float64)
    q = matrix_to_quat(R)
    rot = quat_multiply(q, g.rotations.astype(np.float64))
    return Gaussians((g.positions.astype(np.float64) @ R.T * scale).astype(np.float32),
                     (g.scales + np.float32(np.log(scale))).astype(np.float32), rot.astype(np.float32),
                     g.opacities, g.sh_dc, g.sh_rest)


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of (w, x, y, z) quaternions; `a` one quaternion or N, `b` N."""
    a = np.broadcast_to(np.asarray(a, np.float64), np.shape(b))
    aw, ax, ay, az = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
    bw, bx, by, bz = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=1)


def morton_order(positions: np.ndarray, bits: int = 10) -> np.ndarray:
    """Indices that sort points along a Z-order curve over their bounding box: neighbours in space
    become neighbours in the file, which lets gzip find the repeated high bytes (SPZ)."""
    p = np.asarray(positions, np.float64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    q = ((p - lo) / np.maximum(hi - lo, 1e-12) * ((1 << bits) - 1)).astype(np.uint64)
    code = np.zeros(len(p), np.uint64)
    for bit in range(bits):
        for axis in range(3):
            code |= ((q[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return np.argsort(code, kind="stable")


def gaussians_on_surface(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, n: int,
                         seed: int = 0) -> Gaussians:
    """`n` flat Gaussians spread over a triangle mesh's surface (area-weighted), each a disc in its
    face's plane about as wide as the spacing between samples, coloured by the face's vertex colours
    (barycentric blend of RGBA uint8 `colors`). Deterministic by `seed`."""
    rng = np.random.default_rng(seed)
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    tri = v[f]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    total = float(areas.sum())
    if total <= 0:
        raise SplatError("the mesh has no area to put Gaussians on")
    fi = np.minimum(np.searchsorted(np.cumsum(areas), rng.random(n) * total), len(f) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    points = np.einsum("nk,nkd->nd", w, tri[fi])
    rgb = np.einsum("nk,nkd->nd", w, np.asarray(colors, np.float64)[f[fi]][:, :, :3]) / 255.0
    normals = cross[fi] / np.maximum(2.0 * areas[fi], 1e-18)[:, None]
    radius = np.sqrt(total / n / np.pi) * 1.2  # discs that overlap a little: a closed surface
    scales = np.log(np.stack([np.full(n, radius), np.full(n, radius), np.full(n, radius * 0.15)], axis=1))
    return Gaussians(points.astype(np.float32), scales.astype(np.float32),
                     _z_to(normals).astype(np.float32), np.full(n, 4.0, np.float32),  # alpha 0.982
                     ((rgb - 0.5) / SH_C0).astype(np.float32))


def _z_to(normals: np.ndarray) -> np.ndarray:
    """(w, x, y, z) quaternions rotating +Z onto each unit normal (the shortest arc)."""
    n = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-18)
    # q = (1 + z.n, z x n) normalised; z x n = (-n_y, n_x, 0)
    q = np.stack([1.0 + n[:, 2], -n[:, 1], n[:, 0], np.zeros(len(n))], axis=1)
    flipped = q[:, 0] < 1e-9  # n = -Z: half a turn about X
    q[flipped] = [0.0, 1.0, 0.0, 0.0]
    return q / np.linalg.norm(q, axis=1, keepdims=True)
