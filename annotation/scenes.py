"""The scene of one photo as a download: every judged object's mesh and splat, and the splats
composed in the camera frame (the browser's scene view exports the meshes composed as one GLB).

    scene.json            {"image", "width", "height", "intrinsics", "objects": [{"item", "label", "rating",
                           "layout", "candidate", "mesh": "objects/<item>.glb" | null,
                           "splat": "objects/<item>.ply" | null}]}
    objects/<item>.glb    the winner's GLB as stored (object frame: metres, +Y up, centred)
    objects/<item>.ply    its 3DGS PLY as stored (same frame)
    scene_splats.ply      every object's Gaussians placed by its layout, in the camera frame
                          (+Y up, looking down -Z), when any object has a splat
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from django.core.files.storage import default_storage

from engine.errors import NotFound
from modelzoo.models import Candidate
from modelzoo.splats import Gaussians, ply_bytes, read_ply
from modelzoo.splats.gaussians import transform
from modelzoo.synth.rotations import quat_to_matrix


def _read(name: str) -> bytes:
    try:
        with default_storage.open(name, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise NotFound(f"A stored file of the scene is missing ({name}).", code="file_missing") from None


def scene_archive(*, image, objects: list[dict]) -> bytes:
    """The zip of module's docstring for `objects` (from `selectors.scene_objects_for_user`)."""
    names = {c.pk: (c.glb.name, c.splat.name) for c in
             Candidate.objects.filter(pk__in=[o["candidate"]["id"] for o in objects]).only("id", "glb", "splat")}
    listing, placed = [], []
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for o in objects:
            glb, splat = names[o["candidate"]["id"]]
            entry = {k: o[k] for k in ("item", "label", "rating", "layout")} | {
                "candidate": o["candidate"]["id"], "mesh": None, "splat": None}
            if glb:
                entry["mesh"] = f"objects/{o['item']}.glb"
                archive.writestr(entry["mesh"], _read(glb))
            if splat:
                entry["splat"] = f"objects/{o['item']}.ply"
                data = _read(splat)
                archive.writestr(entry["splat"], data)
                placed.append(_placed(read_ply(data), o["layout"]))
            listing.append(entry)
        if placed:
            archive.writestr("scene_splats.ply", ply_bytes(_concat(placed)))
        archive.writestr("scene.json", json.dumps({
            "image": image.pk, "width": image.width, "height": image.height, "intrinsics": image.intrinsics,
            "objects": listing}, indent=1))
    return buf.getvalue()


def _placed(g: Gaussians, layout: dict) -> Gaussians:
    """The Gaussians in the camera frame: p_cam = t + R(q) (s p), orientations and sizes with them."""
    scale = layout["scale"]
    s = float(np.mean(scale if isinstance(scale, (list, tuple)) else [scale]))  # the engine's scales are uniform
    moved = transform(g, quat_to_matrix(layout["rotation"]), s)
    moved.positions = (moved.positions + np.asarray(layout["translation"], np.float32)).astype(np.float32)
    return moved


def _concat(parts: list[Gaussians]) -> Gaussians:
    degree = min(p.sh_degree for p in parts)
    rest = None
    if degree:
        k = {1: 3, 2: 8, 3: 15}[degree]
        rest = np.concatenate([p.sh_rest[:, :, :k] for p in parts])
    return Gaussians(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                       ("positions", "scales", "rotations", "opacities", "sh_dc")), sh_rest=rest)
