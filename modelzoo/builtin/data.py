"""Crops for the image encoder and the synthetic training set (cached as .npz)."""
from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

CROP = 64
#: The crop is this much larger than the mask's bounding box (context around the object).
CROP_MARGIN = 1.2
_MEAN, _STD = 0.5, 0.25


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Square crop box (u, v, size) in pixels around a mask: bbox centre, 1.2 x its longer side."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("empty mask")
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    size = max(CROP_MARGIN * max(x1 - x0, y1 - y0), 8.0)
    return np.array([0.5 * (x0 + x1), 0.5 * (y0 + y1), size], np.float64)


def crop_batch(images: torch.Tensor, boxes: torch.Tensor, size: int = CROP) -> torch.Tensor:
    """Bilinear crops (B, C, size, size) of images (B, C, H, W) at boxes (B, 3) = (u, v, side)."""
    B, _, H, W = images.shape
    theta = torch.zeros(B, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = boxes[:, 2] / W
    theta[:, 0, 2] = 2 * boxes[:, 0] / W - 1
    theta[:, 1, 1] = boxes[:, 2] / H
    theta[:, 1, 2] = 2 * boxes[:, 1] / H - 1
    grid = F.affine_grid(theta, (B, images.shape[1], size, size), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_input(rgb_mask: torch.Tensor) -> torch.Tensor:
    """uint8-range RGB + {0,1} mask (B, 4, h, w) float -> normalised network input."""
    out = rgb_mask.clone()
    out[:, :3] = (rgb_mask[:, :3] / 255.0 - _MEAN) / _STD
    out[:, 3] = rgb_mask[:, 3] * 2 - 1
    return out


def crop_single(image: np.ndarray, mask: np.ndarray, box: np.ndarray, size: int = CROP) -> torch.Tensor:
    """Network input (1, 4, size, size) for one photo of any resolution.

    Large boxes are first box-filtered by an integer factor (so the final bilinear step
    never minifies by more than 2x, as in training on 128 px renders).
    """
    u, v, side = (float(x) for x in box)
    factor = max(1, int(side // (2 * size)))
    x0, y0 = int(np.floor(u - side / 2)) - factor, int(np.floor(v - side / 2)) - factor
    n = int(np.ceil(side)) + 2 * factor
    n += (-n) % factor
    H, W = mask.shape
    region = np.zeros((n, n, 4), np.float32)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + n, W), min(y0 + n, H)
    if sx1 > sx0 and sy1 > sy0:
        region[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0, :3] = image[sy0:sy1, sx0:sx1, :3]
        region[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0, 3] = mask[sy0:sy1, sx0:sx1]
    if factor > 1:
        region = region.reshape(n // factor, factor, n // factor, factor, 4).mean(axis=(1, 3))
    t = torch.from_numpy(np.ascontiguousarray(region.transpose(2, 0, 1)))[None]
    local = torch.tensor([[(u - x0) / factor, (v - y0) / factor, side / factor]], dtype=torch.float32)
    return to_input(crop_batch(t, local, size))


# --------------------------------------------------------------------------- dataset


def _one(seed: int) -> dict:
    from modelzoo.synth import sample_scene
    from modelzoo.synth.rotations import quat_to_matrix

    s = sample_scene(seed)
    return {
        "image": s.image, "mask": s.mask, "occ": s.occupancy,
        "R": quat_to_matrix(s.layout.rotation), "t": np.asarray(s.layout.translation),
        "s": s.layout.scale[0], "K": s.intrinsics,
    }


def build_dataset(start: int, n: int, workers: int = 2, cache_dir: str | None = "/tmp",
                  log=print) -> dict[str, np.ndarray]:
    """Render scenes seeds start..start+n-1 (in `workers` processes), cached as an .npz."""
    path = None
    if cache_dir:
        path = os.path.join(cache_dir, f"modelzoo_synth_v1_{start}_{n}.npz")
        if os.path.exists(path):
            with np.load(path) as z:
                data = {k: z[k] for k in z.files}
            data["occ"] = np.unpackbits(data["occ"], axis=1)[:, : 32 ** 3].reshape(n, 32, 32, 32).astype(bool)
            return data
    t0 = time.time()
    seeds = list(range(start, start + n))
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            rows = pool.map(_one, seeds, chunksize=64)
    else:
        rows = [_one(s) for s in seeds]
    data = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    data["seeds"] = np.asarray(seeds)
    log(f"rendered {n} scenes in {time.time() - t0:.1f}s")
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        packed = dict(data, occ=np.packbits(data["occ"].reshape(n, -1), axis=1))
        np.savez(path + ".tmp.npz", **packed)
        os.replace(path + ".tmp.npz", path)
    return data
