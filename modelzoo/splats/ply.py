"""The 3DGS PLY: the layout the reference implementation's ``save_ply`` writes and SAM 3D Objects
and TRELLIS write with it (one ``vertex`` element of float properties)::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..(3K-1)  opacity  scale_0..2  rot_0..3

``f_rest`` is channel-major (all of red's coefficients, then green's, then blue's); ``rot`` is
(w, x, y, z); ``scale`` is the log of the standard deviation, ``opacity`` the logit of alpha.
Written here with numpy (one structured array, one write); read with plyfile, which takes every
variant of the format (ASCII, either byte order, other property types, extra elements).
"""
from __future__ import annotations

import tempfile

import numpy as np

from modelzoo.splats.gaussians import SH_REST, Gaussians, SplatError

__all__ = ["ply_bytes", "read_ply"]

REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]


def _names(k: int) -> list[str]:
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * k)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def ply_bytes(g: Gaussians) -> bytes:
    """A binary little-endian 3DGS PLY of the splat (normals written as zeros, as the reference does)."""
    n = len(g)
    k = 0 if g.sh_rest is None else g.sh_rest.shape[2]
    names = _names(k)
    table = np.zeros((n, len(names)), np.float32)
    table[:, 0:3] = g.positions
    table[:, 6:9] = g.sh_dc
    if k:
        table[:, 9:9 + 3 * k] = np.asarray(g.sh_rest, np.float32).reshape(n, 3 * k)
    tail = 9 + 3 * k
    table[:, tail] = g.opacities
    table[:, tail + 1:tail + 4] = g.scales
    table[:, tail + 4:tail + 8] = g.rotations
    header = "ply\nformat binary_little_endian 1.0\n" + f"element vertex {n}\n" + "".join(
        f"property float {name}\n" for name in names) + "end_header\n"
    return header.encode("ascii") + table.astype("<f4").tobytes()


def read_ply(data: bytes) -> Gaussians:
    """The Gaussians of a 3DGS PLY, or SplatError saying what is missing or malformed. Values are
    not checked here (NaN, limits): `gaussians.check_gaussians` does that for every source."""
    from plyfile import PlyData  # here: only a worker reading a backend's PLY needs it

    if not data.startswith(b"ply"):
        raise SplatError("not a PLY file (it does not start with 'ply')")
    # plyfile reads a binary element in one go only from a file it can memory-map; from a BytesIO it
    # reads property by property (30 s for 300k Gaussians instead of 0.1 s), so the bytes go to a
    # temporary file, and the arrays are copied out before it closes.
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.seek(0)
        try:
            ply = PlyData.read(f, mmap="c")
            return _gaussians(ply)
        except SplatError:
            raise
        except Exception as exc:  # plyfile raises PlyParseError, ValueError, struct errors on bad input
            raise SplatError(f"unreadable PLY: {' '.join(str(exc).split())[:300]}") from None


def _gaussians(ply) -> Gaussians:
    if "vertex" not in ply:
        raise SplatError("the PLY has no 'vertex' element (the Gaussians)")
    v = ply["vertex"].data
    present = set(v.dtype.names or ())
    missing = [name for name in REQUIRED if name not in present]
    if missing:
        raise SplatError(f"the PLY lacks the 3DGS fields {', '.join(missing)}")
    rest = sorted((name for name in present if name.startswith("f_rest_")), key=lambda s: int(s[7:]))
    if len(rest) % 3 or len(rest) // 3 not in SH_REST.values():
        raise SplatError(f"the PLY has {len(rest)} f_rest fields; a splat of SH degree 1, 2 or 3 has 9, 24 or 45")
    if rest and rest != [f"f_rest_{i}" for i in range(len(rest))]:
        raise SplatError("the PLY's f_rest fields are not numbered 0 to n-1")

    def cols(names: list[str]) -> np.ndarray:
        return np.stack([np.array(v[name], np.float32) for name in names], axis=1) if names else None

    k = len(rest) // 3
    return Gaussians(
        positions=cols(["x", "y", "z"]), scales=cols(["scale_0", "scale_1", "scale_2"]),
        rotations=cols(["rot_0", "rot_1", "rot_2", "rot_3"]), opacities=np.array(v["opacity"], np.float32),
        sh_dc=cols(["f_dc_0", "f_dc_1", "f_dc_2"]),
        sh_rest=cols(rest).reshape(-1, 3, k) if k else None,
    )
