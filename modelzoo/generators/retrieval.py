"""A retrieval backend: the shapes of a team's own library nearest to the photo's object,
each at a layout fitted to the photo. SAM 3D mixed retrieval with its own checkpoints in its
early rounds; a chosen retrieval candidate is a real shape, an SFT target worth fitting.

    python -m modelzoo.generators.retrieval build --glb-dir my_shapes/ --out library.npz
    python -m modelzoo.generators.retrieval build --domain household --count 300 --out household.npz
    python -m modelzoo.generators.retrieval query --library library.npz --image photo.png --mask mask.png

The library (one ``.npz``, registered as the weights of a checkpoint of backend "retrieval")
holds every shape's mesh (object frame, metres, +Y up) and, for each of `VIEWS` viewpoints,
the embedding of its render: the **silhouette descriptor**, a fixed, deterministic embedding
(the render's silhouette in the square crop `mask_box` takes around a mask, area-sampled to
32 x 32). Nothing is learnt or downloaded: the same code embeds the library's renders and the
photo's mask. A query ranks every (shape, view) by the soft IoU of the descriptors and returns
the best distinct shapes, seed k the k-th.

Layout, fitted to the photo: the rotation is the view's, made allocentric (turned onto the ray
through the crop centre, as the built-in model's layout is); the distance makes the shape's
silhouette as large as the mask's crop at the library's metric scale (`config["scale"]`,
default 1: the library's sizes are real ones), and the translation puts the shape's origin
where the view's projection puts it relative to the silhouette. With a depth map, the scale
and distance are refitted so that the near half of the surface matches it (as the built-in
generator does). Plain numpy: no torch.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time

import numpy as np

from modelzoo.generators.base import CandidateOutput, GenerationRequest, GeneratorError, Layout, default_intrinsics

FORMAT = "modelzoo.retrieval/1"
DESCRIPTOR = "silhouette-32"
RES = 32  # descriptor side
RENDER = 96  # px of the library's renders
CROP_MARGIN = 1.2  # as modelzoo.builtin.data.mask_box: the square crop is 1.2 x the longer side
#: Viewpoints of the library's renders: yaw every 15 degrees, camera elevation 10/25/40 degrees
#: (objects seen from slightly above, as photos of objects on tables and floors are).
YAWS = tuple(range(0, 360, 15))
ELEVATIONS = (10, 25, 40)
KEYS = ("format", "descriptor", "names", "vertices", "vertex_offsets", "faces", "face_offsets", "views",
        "descriptors", "crop_side_m", "origin_offset")


def view_rotations() -> np.ndarray:
    """(V, 3, 3) object -> view rotations: yaw about +Y, then elevation about +X (the viewer looks down -Z)."""
    from modelzoo.mesh.preview import _view_rotation

    return np.stack([_view_rotation(-yaw, elev) for elev in ELEVATIONS for yaw in YAWS])


def _square_crop_box(mask: np.ndarray) -> tuple[float, float, float]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise GeneratorError("empty mask: nothing to retrieve")
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    side = max(CROP_MARGIN * max(x1 - x0, y1 - y0), 4.0)
    return 0.5 * (x0 + x1), 0.5 * (y0 + y1), float(side)


def silhouette_descriptor(mask: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(RES*RES float32 in [0, 1], crop box (u, v, side) px): the mask in its square crop,
    area-sampled (each descriptor cell the covered fraction, from a 4x supersampled grid)."""
    mask = np.asarray(mask).astype(bool)
    u, v, side = _square_crop_box(mask)
    n = RES * 4
    g = (np.arange(n) + 0.5) / n - 0.5
    xs = np.floor(u + g * side).astype(np.int64)
    ys = np.floor(v + g * side).astype(np.int64)
    H, W = mask.shape
    okx, oky = (xs >= 0) & (xs < W), (ys >= 0) & (ys < H)
    grid = np.zeros((n, n), np.float32)
    grid[np.ix_(oky, okx)] = mask[np.ix_(ys[oky], xs[okx])]
    return grid.reshape(RES, 4, RES, 4).mean(axis=(1, 3)).ravel(), (u, v, side)


def _render_view(vertices: np.ndarray, faces: np.ndarray, R: np.ndarray):
    """Descriptor, crop side in metres and the origin's offset from the crop centre (crop
    units, image axes) of the mesh seen through view rotation R (orthographic)."""
    from modelzoo.mesh.preview import render_preview

    alpha = render_preview(vertices, faces, None, size=RENDER, rotation=R)[..., 3] > 0
    desc, (u, v, side) = silhouette_descriptor(alpha)
    # render_preview's framing: the view-space xy box of the vertices, fitted to 0.9 of the frame.
    p = vertices.astype(np.float64) @ R.T
    lo, hi = p.min(axis=0), p.max(axis=0)
    center = 0.5 * (lo + hi)
    pix = RENDER * 0.45 / max(0.5 * float((hi - lo)[:2].max()), 1e-9)
    ou, ov = -center[0] * pix + RENDER / 2, RENDER / 2 + center[1] * pix  # where the origin lands
    return desc, side / pix, ((ou - u) / side, (ov - v) / side)


# ------------------------------------------------------------------ the library
def build_library(meshes: list[tuple[str, np.ndarray, np.ndarray]], log=print) -> dict[str, np.ndarray]:
    """[(name, vertices (object frame, metres), faces)] -> the library's arrays."""
    if not meshes:
        raise GeneratorError("a retrieval library needs at least one mesh")
    views = view_rotations()
    descs, sides, offsets = [], [], []
    t0 = time.time()
    for k, (_, v, f) in enumerate(meshes):
        rows = [_render_view(v, f, R) for R in views]
        descs.append(np.stack([r[0] for r in rows]))
        sides.append([r[1] for r in rows])
        offsets.append([r[2] for r in rows])
        if log and (k + 1) % 50 == 0:
            log(f"rendered {k + 1}/{len(meshes)} shapes x {len(views)} views ({time.time() - t0:.0f}s)")
    vo = np.cumsum([0] + [len(m[1]) for m in meshes])
    fo = np.cumsum([0] + [len(m[2]) for m in meshes])
    return {
        "format": np.array(FORMAT), "descriptor": np.array(DESCRIPTOR),
        "names": np.array([m[0] for m in meshes]),
        "vertices": np.concatenate([m[1] for m in meshes]).astype(np.float32), "vertex_offsets": vo.astype(np.int64),
        "faces": np.concatenate([m[2] for m in meshes]).astype(np.int32), "face_offsets": fo.astype(np.int64),
        "views": views.astype(np.float32),
        "descriptors": np.round(np.stack(descs) * 255).astype(np.uint8),  # (N, V, RES*RES)
        "crop_side_m": np.asarray(sides, np.float32), "origin_offset": np.asarray(offsets, np.float32),
    }


def save_library(arrays: dict, path: str) -> None:
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def read_library(data) -> dict[str, np.ndarray]:
    """The library's arrays from a path, a file object or bytes; GeneratorError saying what is
    wrong when it is not one (`allow_pickle=False`: nothing in the file runs)."""
    if isinstance(data, bytes):
        data = io.BytesIO(data)
    try:
        with np.load(data, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # np.load raises many kinds of errors on foreign bytes
        raise GeneratorError(f"not a retrieval library (an .npz that `build` writes): {exc}") from None
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise GeneratorError(f"not a retrieval library: it lacks {', '.join(missing)}")
    if str(arrays["format"]) != FORMAT or str(arrays["descriptor"]) != DESCRIPTOR:
        raise GeneratorError(f"retrieval library of format {arrays['format']} / {arrays['descriptor']}; "
                             f"this code reads {FORMAT} / {DESCRIPTOR}")
    n, nv = len(arrays["names"]), len(arrays["views"])
    shapes_ok = (arrays["descriptors"].shape == (n, nv, RES * RES) and arrays["crop_side_m"].shape == (n, nv)
                 and arrays["origin_offset"].shape == (n, nv, 2) and arrays["views"].shape == (nv, 3, 3)
                 and len(arrays["vertex_offsets"]) == n + 1 and len(arrays["face_offsets"]) == n + 1
                 and arrays["vertex_offsets"][-1] == len(arrays["vertices"])
                 and arrays["face_offsets"][-1] == len(arrays["faces"]) and n > 0)
    if not shapes_ok:
        raise GeneratorError("retrieval library: its arrays' shapes do not agree with each other")
    return arrays


def check_library(data: bytes) -> None:
    """The registry's weights check of backend "retrieval"."""
    read_library(data)


# ------------------------------------------------------------------ the backend
class RetrievalGenerator:
    """Image + mask -> the library's nearest shapes at fitted layouts, one per seed (seed k: the
    k-th best distinct shape)."""

    backend = "retrieval"

    def __init__(self, library: dict[str, np.ndarray], scale: float = 1.0):
        self.lib = library
        self.scale = float(scale)
        d = library["descriptors"].astype(np.float32) / 255.0
        self.n_shapes, self.n_views = d.shape[:2]
        self.desc = d.reshape(-1, RES * RES)
        self.desc_sum = self.desc.sum(axis=1)

    @classmethod
    def from_file(cls, path: str, config: dict | None = None) -> "RetrievalGenerator":
        return cls(read_library(path), scale=float((config or {}).get("scale", 1.0)))

    def mesh(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        vo, fo = self.lib["vertex_offsets"], self.lib["face_offsets"]
        return self.lib["vertices"][vo[k]:vo[k + 1]], self.lib["faces"][fo[k]:fo[k + 1]]

    def rank(self, mask: np.ndarray, count: int) -> tuple[list[tuple[int, int, float]], tuple]:
        """The best `count` distinct shapes as (shape, view, soft IoU), and the mask's crop box."""
        q, box = silhouette_descriptor(mask)
        inter = np.minimum(self.desc, q[None]).sum(axis=1)
        iou = inter / np.maximum(self.desc_sum + q.sum() - inter, 1e-6)
        order = np.argsort(-iou, kind="stable")
        out, seen = [], set()
        for idx in order:
            shape, view = divmod(int(idx), self.n_views)
            if shape not in seen:
                seen.add(shape)
                out.append((shape, view, float(iou[idx])))
                if len(out) == count:
                    break
        return out, box

    def generate(self, request: GenerationRequest) -> list[CandidateOutput]:
        from modelzoo.builtin.generator import _fit_depth, masked_mean_color, vertex_colors_from_photo
        from modelzoo.builtin.layout import box_ray, rays_rotation
        from modelzoo.mesh.preview import preview_png
        from modelzoo.synth.rotations import matrix_to_quat

        if not request.seeds:
            return []
        t0 = time.perf_counter()
        image = np.asarray(request.image)
        mask = np.asarray(request.mask).astype(bool)
        if mask.shape != image.shape[:2]:
            raise GeneratorError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
        K = np.asarray(request.intrinsics, np.float64) if request.intrinsics is not None else \
            default_intrinsics(image.shape[1], image.shape[0])
        seeds = [int(s) for s in request.seeds]
        if min(seeds) < 0:
            raise GeneratorError("seeds must be non-negative (seed k is the k-th nearest shape)")
        ranked, (u, v, side) = self.rank(mask, min(self.n_shapes, max(seeds) + 1))
        R_ray = rays_rotation(box_ray(np.array([[u, v, side]]), K))[0]
        fallback = masked_mean_color(image, mask)
        share = (time.perf_counter() - t0) / len(seeds)
        out = []
        for seed in seeds:
            t1 = time.perf_counter()
            shape, view, _ = ranked[seed % len(ranked)]
            verts, faces = self.mesh(shape)
            R = R_ray @ self.lib["views"][view].astype(np.float64)
            s = self.scale
            depth = K[0, 0] * float(self.lib["crop_side_m"][shape, view]) * s / side
            du, dv = self.lib["origin_offset"][shape, view]
            cu, cv = u + float(du) * side, v + float(dv) * side
            t = depth * np.array([(cu - K[0, 2]) / K[0, 0], -(cv - K[1, 2]) / K[1, 1], -1.0])
            if request.depth is not None:
                t, s = _fit_depth(verts, R, t, s, np.asarray(request.depth), mask)
            colors = vertex_colors_from_photo(verts, R, t, s, K, image, mask, fallback)
            t2 = time.perf_counter()
            png = preview_png(verts, faces, colors, size=128)
            layout = Layout(rotation=tuple(float(x) for x in matrix_to_quat(R)),
                            translation=tuple(float(x) for x in t), scale=(s, s, s))
            out.append(CandidateOutput(seed=seed, vertices=np.asarray(verts, np.float32), faces=np.asarray(faces),
                                       vertex_colors=colors, layout=layout, preview_png=png,
                                       timings={"model": share, "layout": t2 - t1,
                                                "preview": time.perf_counter() - t2}))
        return out


def load(path: str | None, config: dict) -> RetrievalGenerator:
    """The registry's loader of backend "retrieval": `path` is the library file."""
    if not path:
        raise GeneratorError("The retrieval backend needs its library file as the checkpoint's weights "
                             "(python -m modelzoo.generators.retrieval build ...).")
    return RetrievalGenerator.from_file(path, config)


# ------------------------------------------------------------------ command line
def synthetic_meshes(domain: str, count: int, seed_base: int, resolution: int = 32):
    """Shapes of a `modelzoo.synth` domain (scene seeds seed_base..seed_base+count-1) as a stand-in
    for a team's library: the simulation's retrieval source (seeds disjoint from its photos)."""
    from modelzoo.synth.scene import OCC_RES, _connected
    from modelzoo.synth.shapes import DOMAINS, gt_mesh, occupancy

    out = []
    for i in range(count):
        rng = np.random.default_rng([seed_base + i, 20251119])
        while True:  # as sample_scene draws its shape
            shape = DOMAINS[domain](rng)
            occ = occupancy(shape, OCC_RES)
            if occ.sum() > 30 and _connected(occ):
                break
        v, f = gt_mesh(shape, resolution)
        out.append((f"{domain}-{seed_base + i}", v.astype(np.float32), f.astype(np.int32)))
    return out


def glb_meshes(folder: str):
    import os

    from modelzoo.mesh import read_glb

    out = []
    for name in sorted(os.listdir(folder)):
        if name.lower().endswith(".glb"):
            with open(os.path.join(folder, name), "rb") as fh:
                v, f, _ = read_glb(fh.read())
            v = np.asarray(v, np.float64)
            v = v - 0.5 * (v.min(axis=0) + v.max(axis=0))  # the object frame's origin: the box centre
            out.append((os.path.splitext(name)[0], v.astype(np.float32), np.asarray(f, np.int32)))
    if not out:
        raise GeneratorError(f"no .glb file in {folder}")
    return out


#: Scene seeds of the household library the simulation retrieves from (disjoint from the
#: simulation's photos, 7e8 + ..., the gold set, 9e8 + i, and pretraining, i < 1e8).
LIBRARY_SEED_BASE = 600_000_000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="render and embed a library of shapes")
    b.add_argument("--out", required=True)
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--glb-dir", help="a folder of .glb meshes (object frame, metres, +Y up)")
    src.add_argument("--domain", help="a modelzoo.synth domain (household, primitives): a synthetic library")
    b.add_argument("--count", type=int, default=300)
    b.add_argument("--seed-base", type=int, default=LIBRARY_SEED_BASE)
    q = sub.add_parser("query", help="the nearest shapes of a photo's object")
    q.add_argument("--library", required=True)
    q.add_argument("--image", required=True)
    q.add_argument("--mask", required=True, help="a PNG whose non-zero pixels are the object")
    q.add_argument("--top", type=int, default=5)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        t0 = time.time()
        meshes = glb_meshes(args.glb_dir) if args.glb_dir else synthetic_meshes(args.domain, args.count,
                                                                                 args.seed_base)
        arrays = build_library(meshes, log=lambda m: print(m, flush=True))
        save_library(arrays, args.out)
        print(json.dumps({"out": args.out, "shapes": len(meshes), "views": len(arrays["views"]),
                          "seconds": round(time.time() - t0, 1)}))
        return 0
    from PIL import Image

    gen = RetrievalGenerator.from_file(args.library)
    mask = np.asarray(Image.open(args.mask).convert("L")) > 0
    ranked, box = gen.rank(mask, args.top)
    for shape, view, iou in ranked:
        print(f"{gen.lib['names'][shape]:<32} view {view:>3} silhouette IoU {iou:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
