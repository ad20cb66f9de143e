"""`BuiltinGenerator`: the default generator backend ("builtin"), wrapping `BuiltinModel`."""
from __future__ import annotations

import contextlib
import os
import threading
import time

import numpy as np
import torch

from modelzoo.builtin.data import crop_single, mask_box
from modelzoo.builtin.layout import box_features
from modelzoo.builtin.model import BuiltinModel
from modelzoo.generators.base import CandidateOutput, GenerationRequest, GeneratorError, Layout, default_intrinsics
from modelzoo.mesh.meshing import occupancy_to_mesh
from modelzoo.mesh.preview import preview_png
from modelzoo.splats.gaussians import SH_C0, Gaussians, gaussians_on_surface
from modelzoo.synth.rotations import matrix_to_quat

_CACHE: dict[tuple, "BuiltinGenerator"] = {}
_CACHE_LOCK = threading.Lock()

# Torch threads for inference. One: a batch of 8 is too small to split across cores, and on
# a shared machine the threads wait for each other. Measured on the 2-core machine, a 4-step
# batch of 8: at load ~2.6, 30-36 ms with one thread, 35-43 ms with two (single layers up to
# 20x slower); at load ~8, 48 ms vs 210 ms. Workers scale over cores with processes (Celery
# prefork), not threads; MODELZOO_TORCH_THREADS raises it for a many-core inference server.
THREADS = int(os.environ.get("MODELZOO_TORCH_THREADS", "1"))
# Gaussians of the splat each candidate carries beside its mesh (0: mesh only). 4096 flat discs
# cover a candidate's surface closely at the workbench's size; about 60 KB as SPZ.
GAUSSIANS = int(os.environ.get("MODELZOO_BUILTIN_GAUSSIANS", "4096"))


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with `n` torch threads, then restore the process's setting."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


def seed_noise(seeds: list[int], dim: int) -> torch.Tensor:
    """Initial flow noise x_0 per seed, independent of the other seeds in the batch."""
    rows = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s) % (2**63))
        rows.append(torch.randn(dim, generator=g))
    return torch.stack(rows)


def masked_mean_color(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB uint8: the mean colour of the masked pixels (rounded), grey for an empty mask."""
    mean = image[mask][:, :3].mean(axis=0) if mask.any() else np.array([180.0, 180.0, 180.0])
    return np.clip(mean + 0.5, 0, 255).astype(np.uint8)


def vertex_colors_from_photo(vertices, R, t, s, K, image, mask, fallback: np.ndarray | None = None) -> np.ndarray:
    """RGBA per vertex: the photo's pixel where the vertex projects at the layout, if that
    pixel belongs to the mask; `fallback` (default: `masked_mean_color`) otherwise."""
    if fallback is None:
        fallback = masked_mean_color(image, mask)
    p = t[None, :] + (s * vertices.astype(np.float64)) @ R.T
    z = np.minimum(p[:, 2], -1e-6)
    u = np.floor(K[0, 2] + K[0, 0] * p[:, 0] / -z).astype(np.int64)
    v = np.floor(K[1, 2] - K[1, 1] * p[:, 1] / -z).astype(np.int64)
    H, W = mask.shape
    ok = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    ok[ok] = mask[v[ok], u[ok]]
    out = np.empty((len(vertices), 4), np.uint8)
    out[:, :3] = fallback
    out[ok, :3] = image[v[ok], u[ok], :3]
    out[:, 3] = 255
    return out


class BuiltinGenerator:
    """Image + mask -> N candidates (mesh, vertex colours, layout, preview), one per seed.

    All seeds of a request go through the network as one batch; ``timings`` of each
    candidate hold its share of the batch's model time plus its own meshing and preview
    time, in seconds.
    """

    backend = "builtin"

    def __init__(self, model: BuiltinModel, checkpoint_path: str | None = None, threads: int | None = None,
                 gaussians: int | None = None):
        self.model = model.eval()
        self.checkpoint_path = checkpoint_path
        self.meta = getattr(model, "meta", {})
        self.threads = threads or THREADS
        self.gaussians = GAUSSIANS if gaussians is None else gaussians

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, cached: bool = True) -> "BuiltinGenerator":
        """Load a checkpoint once per process (keyed by path and modification time)."""
        path = os.fspath(path)
        key = (os.path.abspath(path), os.path.getmtime(path))
        with _CACHE_LOCK:
            if cached and key in _CACHE:
                return _CACHE[key]
            gen = cls(BuiltinModel.load(path), checkpoint_path=path)
            if cached:
                _CACHE[key] = gen
            return gen

    # ------------------------------------------------------------------ batch prediction
    def predict(self, image: np.ndarray, mask: np.ndarray, seeds: list[int], steps: int = 4,
                intrinsics: np.ndarray | None = None) -> dict:
        """Raw predictions: occupancy logits (N, 32, 32, 32) and layouts (R, t, s) per seed."""
        if image.ndim != 3 or image.shape[2] < 3 or mask.shape != image.shape[:2]:
            raise GeneratorError("image must be H x W x 3 and mask H x W of the same size")
        if not mask.any():
            raise GeneratorError("the mask is empty: nothing to lift to 3D")
        if steps < 1:
            raise GeneratorError("steps must be >= 1")
        H, W = mask.shape
        K = default_intrinsics(W, H) if intrinsics is None else np.asarray(intrinsics, np.float64)
        box = mask_box(mask)
        feats = torch.from_numpy(box_features(box[None], K))
        noise = seed_noise(seeds, self.model.flow_vector_dim)
        with torch_threads(self.threads), torch.inference_mode():
            crop = crop_single(image, mask.astype(bool, copy=False), box)
            cond = self.model.encode_condition(crop, feats)
            x1 = self.model.sample(cond.expand(len(seeds), -1), noise, steps)
            logits, R, t, s = self.model.decode(x1, box, K)
        # x1 cloned out of inference mode: callers may feed it to autograd (DPO, re-encoding).
        return {"logits": logits.numpy(), "R": R, "t": t, "s": s, "K": K, "box": box, "x1": x1.clone()}

    def generate(self, request: GenerationRequest) -> list[CandidateOutput]:
        if not request.seeds:
            return []
        t0 = time.perf_counter()
        image = np.asarray(request.image)
        mask = np.asarray(request.mask).astype(bool)
        pred = self.predict(image, mask, list(request.seeds), request.steps, request.intrinsics)
        model_share = (time.perf_counter() - t0) / len(request.seeds)
        fallback = masked_mean_color(image, mask)  # once per request, not per candidate
        out = []
        for i, seed in enumerate(request.seeds):
            t1 = time.perf_counter()
            try:
                verts, faces = occupancy_to_mesh(pred["logits"][i], logits=True)
            except ValueError as exc:  # an all-empty grid: report it as the backend's failure
                raise GeneratorError(f"seed {seed}: {exc}") from exc
            R, t, s = pred["R"][i], pred["t"][i].copy(), float(pred["s"][i])
            if request.depth is not None:
                t, s = _fit_depth(verts, R, t, s, np.asarray(request.depth), mask)
            colors = vertex_colors_from_photo(verts, R, t, s, pred["K"], image, mask, fallback)
            t2 = time.perf_counter()
            png = preview_png(verts, faces, colors, size=128)
            t3 = time.perf_counter()
            splat = None
            if self.gaussians:
                splat = surface_splat(verts, faces, colors, R, t, s, pred["K"], image, mask, self.gaussians, seed)
            t4 = time.perf_counter()
            layout = Layout(rotation=tuple(float(x) for x in matrix_to_quat(R)),
                            translation=tuple(float(x) for x in t), scale=(s, s, s))
            out.append(CandidateOutput(
                seed=int(seed), vertices=verts, faces=faces, vertex_colors=colors, layout=layout, splat=splat,
                preview_png=png, timings={"model": model_share, "meshing": t2 - t1, "preview": t3 - t2,
                                          "splatting": t4 - t3},
            ))
        return out


def surface_splat(verts, faces, colors, R, t, s, K, image, mask, n: int, seed: int) -> Gaussians:
    """`n` flat Gaussians on the mesh's surface, each coloured by the photo's pixel where it projects
    at the layout when that pixel is in the mask, else by the mesh's vertex colours there."""
    g = gaussians_on_surface(verts, faces, colors, n, seed=int(seed) % (2**32))
    fallback = g.colors_rgb()
    rgb = vertex_colors_from_photo(g.positions, R, t, s, K, image, mask, fallback)[:, :3]
    g.sh_dc = ((rgb / 255.0 - 0.5) / SH_C0).astype(np.float32)
    return g


def _fit_depth(verts, R, t, s, depth, mask):
    """Resolve the scale/distance ambiguity with a depth map: scale the layout about the
    camera (image unchanged) so the near half of the surface matches the observed depth."""
    d = depth[mask & (depth > 0)]
    if len(d) < 10:
        return t, s
    z = -(t[None, :] + (s * verts.astype(np.float64)) @ R.T)[:, 2]
    near = np.sort(z)[: max(1, len(z) // 2)]
    k = float(np.median(d) / max(np.median(near), 1e-6))
    if not np.isfinite(k) or k <= 0:
        return t, s
    return t * k, s * k
