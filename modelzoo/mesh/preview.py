"""The preview image of a candidate: a flat-shaded orthographic render of its mesh in numpy,
and a fast PNG encoder for it. No GPU, no OpenGL: a worker draws one in ~2 ms.

View space: the object frame (metres, +Y up) turned by yaw about +Y, then by elevation
about +X; the viewer looks down -Z, as in the camera frame of `modelzoo.generators.base`.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from modelzoo.mesh.meshing import as_rgba, check_mesh, row_cross

__all__ = ["render_preview", "preview_png", "png_rgba"]


def _view_rotation(yaw_deg: float, elev_deg: float) -> np.ndarray:
    y, e = np.deg2rad(yaw_deg), np.deg2rad(elev_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return rx @ ry


_LIGHT = np.array([-0.4, 0.6, 0.7]) / np.linalg.norm([-0.4, 0.6, 0.7])  # upper left front, view space
_DEPTH_BITS = 20  # depth rank resolution of the z-buffer (1 part in a million of the object's depth)
_WINDOWS = (1, 2, 3, 4, 6, 8, 16, 32, 64)  # triangles are binned by box size; most cover 2-4 px


def render_preview(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None,
                   size: int = 128, yaw: float = -35.0, elevation: float = 25.0,
                   rotation: np.ndarray | None = None) -> np.ndarray:
    """Flat-shaded orthographic render of the mesh, fitted to the frame: size x size x 4 uint8
    (transparent background). A vectorised triangle rasteriser with a z-buffer: ~2 ms for a
    candidate (7k triangles) at 128 px.

    A pixel is covered by a front-facing triangle when its centre is inside (barycentric
    weights >= -1e-5). Barycentric weights and depth are affine in the pixel centre, so each
    is three multiply-adds per candidate pixel; each pixel keeps its nearest triangle through
    one `np.minimum.at` over keys (depth rank << 32 | triangle).
    """
    v, f = check_mesh(vertices, faces)
    R = _view_rotation(yaw, elevation) if rotation is None else np.asarray(rotation)
    p = v.astype(np.float64) @ R.T
    lo, hi = p.min(axis=0), p.max(axis=0)
    center = 0.5 * (lo + hi)
    half = max(0.5 * float((hi - lo)[:2].max()), 1e-9)
    pix = size * 0.45 / half
    x = (p[:, 0] - center[0]) * pix + size / 2
    y = size / 2 - (p[:, 1] - center[1]) * pix
    x0, x1, x2 = x[f[:, 0]], x[f[:, 1]], x[f[:, 2]]
    y0, y1, y2 = y[f[:, 0]], y[f[:, 1]], y[f[:, 2]]
    # Signed area in pixel space (y down): counter-clockwise faces in 3D have area < 0 here.
    area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
    # Pixel centres (i + 0.5) in a triangle's bounding box: i in [ceil(min - 0.5), floor(max - 0.5)].
    bx = np.ceil(np.minimum(np.minimum(x0, x1), x2) - 0.5)
    by = np.ceil(np.minimum(np.minimum(y0, y1), y2) - 0.5)
    span = np.maximum(np.floor(np.maximum(np.maximum(x0, x1), x2) - 0.5) - bx,
                      np.floor(np.maximum(np.maximum(y0, y1), y2) - 0.5) - by) + 1
    keep = np.nonzero((area < -1e-9) & (span > 0))[0]  # front-facing and covering a pixel centre
    img = np.zeros((size, size, 4), np.uint8)
    if len(keep) == 0:
        return img
    f, area, span = f[keep], area[keep], span[keep]
    bx, by = bx[keep].astype(np.int64), by[keep].astype(np.int64)
    x0, x1, x2, y0, y1, y2 = x0[keep], x1[keep], x2[keep], y0[keep], y1[keep], y2[keep]
    # Flat shading from the face normal in view space.
    pf = p[f]
    fn = row_cross(pf[:, 1] - pf[:, 0], pf[:, 2] - pf[:, 0])
    lum = 0.35 + 0.65 * np.clip((fn @ _LIGHT) / (np.sqrt((fn * fn).sum(axis=1)) + 1e-12), 0.0, 1.0)
    c = as_rgba(colors, len(v))[:, :3].astype(np.float32)
    fcol = np.clip((c[f[:, 0]] + c[f[:, 1]] + c[f[:, 2]]) * (lum / 3.0)[:, None], 0, 255).astype(np.uint8)
    # w_i = a_i gx + b_i gy + k_i at pixel centre (bx + gx + 0.5, by + gy + 0.5); w_2 = 1 - w_0 - w_1.
    inv = 1.0 / area
    a0, b0, a1, b1 = (y1 - y2) * inv, (x2 - x1) * inv, (y2 - y0) * inv, (x0 - x2) * inv
    ox, oy = bx + 0.5, by + 0.5
    k0 = ((x1 - ox) * (y2 - oy) - (y1 - oy) * (x2 - ox)) * inv
    k1 = ((x2 - ox) * (y0 - oy) - (y2 - oy) * (x0 - ox)) * inv
    # Depth rank (0 = nearest; larger z = nearer the viewer, who looks down -Z), affine likewise.
    tz = p[:, 2][f]
    zmax = float(tz.max())
    r = (zmax - tz) * (((1 << _DEPTH_BITS) - 1) / max(zmax - float(tz.min()), 1e-12))
    d0, d1 = r[:, 0] - r[:, 2], r[:, 1] - r[:, 2]
    ar, br, kr = a0 * d0 + a1 * d1, b0 * d0 + b1 * d1, k0 * d0 + k1 * d1 + r[:, 2]
    empty = np.iinfo(np.int64).max
    zbuf = np.full(size * size, empty, np.int64)
    prev = 0
    for win in (*_WINDOWS, max(size, int(span.max()))):
        sel = np.nonzero((span > prev) & (span <= win))[0]
        prev = win
        if len(sel) == 0:
            continue
        gy, gx = np.divmod(np.arange(win * win, dtype=np.float64), win)
        w0 = a0[sel, None] * gx + b0[sel, None] * gy + k0[sel, None]
        w1 = a1[sel, None] * gx + b1[sel, None] * gy + k1[sel, None]
        fi, ki = np.nonzero((w0 >= -1e-5) & (w1 >= -1e-5) & (w0 + w1 <= 1.0 + 1e-5))
        sf = sel[fi]
        px, py = bx[sf] + gx[ki].astype(np.int64), by[sf] + gy[ki].astype(np.int64)
        rank = (ar[sf] * gx[ki] + br[sf] * gy[ki] + kr[sf]).astype(np.int64)
        ok = (px >= 0) & (px < size) & (py >= 0) & (py < size)
        np.minimum.at(zbuf, (py * size + px)[ok], ((rank << 32) | sf)[ok])
    hit = np.nonzero(zbuf != empty)[0]
    flat = img.reshape(-1, 4)
    flat[hit, :3] = fcol[zbuf[hit] & 0xFFFFFFFF]
    flat[hit, 3] = 255
    return img


def png_rgba(img: np.ndarray, level: int = 1) -> bytes:
    """An H x W x 4 uint8 image as an 8-bit RGBA PNG: no row filters, one zlib stream at a
    fast level. Half the time of PIL's encoder for a preview, and no larger."""
    h, w, _ = img.shape
    raw = np.empty((h, 1 + 4 * w), np.uint8)
    raw[:, 0] = 0  # filter type None on every row
    raw[:, 1:] = img.reshape(h, 4 * w)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b""))


def preview_png(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None, size: int = 128,
                **view) -> bytes:
    """`render_preview` encoded as a PNG."""
    return png_rgba(render_preview(vertices, faces, colors, size=size, **view))
