"""SPZ, Niantic's compressed splat format (github.com/nianticlabs/spz), which Spark (the browser's
splat renderer) loads: the browser copy of a splat. Written and read here in numpy.

The gzip-stream layout of versions 2 and 3 (Spark reads versions 1 to 3; version 4, zstd streams
with a table of contents, is newer than Spark's reader), little-endian::

    header (16 bytes): magic 0x5053474e "NGSP", version, N (uint32 each), sh degree, fractional bits,
                       flags, reserved (uint8 each)
    positions  N x 3 x 24-bit signed fixed point (value * 2**fractional_bits)
    alphas     N x uint8    sigmoid(opacity) * 255
    colours    N x 3 uint8  sh_dc * 0.15 * 255 + 127.5
    scales     N x 3 uint8  (log scale + 10) * 16
    rotations  version 2: N x 3 uint8 (x, y, z of the unit quaternion with w >= 0, * 127.5 + 127.5);
               version 3: N x uint32 "smallest three" (the largest component's index in the top
               2 bits, then per other component a sign bit and 9 bits of |q| / sqrt(1/2))
    sh         N x (3 K) uint8, coefficient-major then channel, q * 128 + 128

The coordinates are stored as they are: SPZ's own frame is RUB (+X right, +Y up, +Z back), the
engine's object frame and glTF's, and Spark draws them unconverted.
"""
from __future__ import annotations

import gzip
import struct

import numpy as np

from modelzoo.splats.gaussians import SH_REST, Gaussians, SplatError, morton_order

__all__ = ["spz_bytes", "read_spz"]

MAGIC = 0x5053474E
FRACTIONAL_BITS = 12  # 0.24 mm steps, +-2 km: what the reference writer uses
_SQRT1_2 = np.float32(np.sqrt(0.5))


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def spz_bytes(g: Gaussians, *, version: int = 3, sh_degree: int | None = 0, sort: bool = True,
              level: int = 6) -> bytes:
    """SPZ of the splat. `sh_degree` caps the spherical harmonics kept (0, the default, keeps the
    DC colour only: the browser copy's size budget); `sort` orders the Gaussians along a Z-order
    curve first, which gzip rewards (about 10-15% smaller). gzip level 6: the size of level 9 at 2/3
    of its time (300k Gaussians: 2.86 MB either way); level 1 is 5% larger."""
    if version not in (2, 3):
        raise ValueError("SPZ version 2 or 3")
    if sort and len(g) > 1:
        g = g.subset(morton_order(g.positions))
    n = len(g)
    degree = g.sh_degree if sh_degree is None else min(sh_degree, g.sh_degree)
    fixed = np.round(g.positions.astype(np.float64) * (1 << FRACTIONAL_BITS)).astype(np.int64)
    if np.abs(fixed).max(initial=0) >= 1 << 23:
        raise SplatError("a Gaussian lies more than 2 km from the origin: SPZ cannot hold it")
    fixed &= 0xFFFFFF
    positions = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], axis=2).astype(np.uint8)
    alphas = _u8(g.alphas() * 255.0)
    colours = _u8(g.sh_dc.astype(np.float64) * (0.15 * 255.0) + 0.5 * 255.0)
    scales = _u8((g.scales.astype(np.float64) + 10.0) * 16.0)
    q = g.rotations.astype(np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    xyzw = np.concatenate([q[:, 1:], q[:, :1]], axis=1)  # SPZ's order
    if version == 2:
        xyzw = np.where(xyzw[:, 3:4] < 0, -xyzw, xyzw)
        rotations = _u8(xyzw[:, :3] * 127.5 + 127.5)
    else:
        rotations = _smallest_three(xyzw)
    parts = [struct.pack("<IIIBBBB", MAGIC, version, n, degree, FRACTIONAL_BITS, 0, 0),
             positions.tobytes(), alphas.tobytes(), colours.tobytes(), scales.tobytes(), rotations.tobytes()]
    if degree:
        k = SH_REST[degree]
        coeffs = np.asarray(g.sh_rest, np.float64)[:, :, :k].transpose(0, 2, 1)  # N x K x 3
        parts.append(_u8(coeffs * 128.0 + 128.0).tobytes())
    return gzip.compress(b"".join(parts), compresslevel=level, mtime=0)


def _smallest_three(xyzw: np.ndarray) -> np.ndarray:
    largest = np.argmax(np.abs(xyzw), axis=1)
    negate = xyzw[np.arange(len(xyzw)), largest] < 0
    comp = largest.astype(np.uint32)
    for i in range(4):
        keep = largest != i
        value = xyzw[:, i]
        negbit = ((value < 0) ^ negate).astype(np.uint32)
        mag = np.minimum(np.floor(511.0 * (np.abs(value) / _SQRT1_2) + 0.5), 511).astype(np.uint32)
        comp = np.where(keep, (comp << np.uint32(10)) | (negbit << np.uint32(9)) | mag, comp)
    return comp.astype("<u4").view(np.uint8).reshape(-1, 4)


def read_spz(data: bytes) -> Gaussians:
    """The Gaussians of an SPZ file (versions 2 and 3), or SplatError saying why not."""
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise SplatError(f"not a gzip-compressed SPZ file: {exc}") from None
    if len(raw) < 16:
        raise SplatError("SPZ header truncated")
    magic, version, n, degree, frac, _flags, _ = struct.unpack_from("<IIIBBBB", raw, 0)
    if magic != MAGIC:
        raise SplatError("not an SPZ file (bad magic)")
    if version not in (2, 3):
        raise SplatError(f"SPZ version {version} is not supported (2 and 3 are)")
    if degree not in SH_REST:
        raise SplatError(f"SPZ with SH degree {degree}")
    k = SH_REST[degree]
    rot_bytes = 3 if version == 2 else 4
    need = 16 + n * (9 + 1 + 3 + 3 + rot_bytes + 3 * k)
    if len(raw) != need:
        raise SplatError(f"SPZ of {n} Gaussians should hold {need} bytes, holds {len(raw)}")
    at = 16

    def take(count: int) -> np.ndarray:
        nonlocal at
        out = np.frombuffer(raw, np.uint8, count, at)
        at += count
        return out

    p = take(9 * n).reshape(n, 3, 3).astype(np.int32)
    fixed = p[:, :, 0] | (p[:, :, 1] << 8) | (p[:, :, 2] << 16)
    fixed = np.where(fixed >= 1 << 23, fixed - (1 << 24), fixed)
    positions = (fixed / float(1 << frac)).astype(np.float32)
    alpha = np.clip(take(n) / 255.0, 1e-6, 1 - 1e-6)
    opacities = np.log(alpha / (1 - alpha)).astype(np.float32)
    sh_dc = ((take(3 * n).reshape(n, 3) / 255.0 - 0.5) / 0.15).astype(np.float32)
    scales = (take(3 * n).reshape(n, 3) / 16.0 - 10.0).astype(np.float32)
    r = take(rot_bytes * n).reshape(n, rot_bytes)
    if version == 2:
        xyz = r / 127.5 - 1.0
        w = np.sqrt(np.maximum(0.0, 1.0 - (xyz ** 2).sum(axis=1)))
        xyzw = np.concatenate([xyz, w[:, None]], axis=1)
    else:
        comp = r.copy().view("<u4").ravel().astype(np.uint64)
        largest = (comp >> np.uint64(30)).astype(np.int64)
        xyzw = np.zeros((n, 4))
        for i in range(3, -1, -1):
            here = largest != i
            mag = (comp & np.uint64(511)).astype(np.float64)
            sign = ((comp >> np.uint64(9)) & np.uint64(1)).astype(bool)
            value = float(_SQRT1_2) * mag / 511.0
            xyzw[here, i] = np.where(sign, -value, value)[here]
            comp = np.where(here, comp >> np.uint64(10), comp)
        xyzw[np.arange(n), largest] = np.sqrt(np.maximum(0.0, 1.0 - (xyzw ** 2).sum(axis=1)))
    rotations = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1).astype(np.float32)
    sh_rest = None
    if k:
        sh_rest = ((take(3 * k * n).reshape(n, k, 3) - 128.0) / 128.0).transpose(0, 2, 1).astype(np.float32)
    return Gaussians(positions, scales, rotations, opacities, sh_dc, sh_rest)
