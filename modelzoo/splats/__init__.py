"""Gaussian splats of candidates, plain numpy, one idea per module:

* `gaussians`: the arrays (3DGS parameterisation), their checks, recentring, Gaussians on a mesh's surface;
* `ply`: the 3DGS PLY (the stored full file; read with plyfile);
* `spz`: SPZ, the browser copy (Spark loads it).
"""
from modelzoo.splats.gaussians import (
    SH_C0,
    Gaussians,
    SplatError,
    check_gaussians,
    gaussians_on_surface,
    recentre,
)
from modelzoo.splats.ply import ply_bytes, read_ply
from modelzoo.splats.spz import read_spz, spz_bytes

__all__ = ["SH_C0", "Gaussians", "SplatError", "check_gaussians", "gaussians_on_surface", "recentre",
           "ply_bytes", "read_ply", "spz_bytes", "read_spz", "read_splat"]


def read_splat(data: bytes) -> Gaussians:
    """A splat from the bytes of a 3DGS PLY or an SPZ file (told apart by their first bytes)."""
    if data.startswith(b"ply"):
        return read_ply(data)
    if data.startswith(b"\x1f\x8b"):
        return read_spz(data)
    raise SplatError("not a splat file: neither a PLY ('ply' header) nor an SPZ (gzip stream)")
