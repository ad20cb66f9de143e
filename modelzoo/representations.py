"""A backend's `CandidateOutput` -> the files the engine stores, after checking every representation.

`encode_candidate` is all-or-nothing: it returns the bytes of every file (full GLB, compact GLB,
3DGS PLY, SPZ, preview PNG), the layout in the normalised frame and the `received` record, or
raises `CandidateRefused` with the reason before anything is stored. Plain numpy; the engine's
generation step (engine/rounds/generate.py) stores what it returns.

Frames. Arrays (the built-in model) are stored as given: the model's grid is already centred.
A GLB or a splat is recentred on its bounding box (a candidate with both: on the mesh's, so
that the two stay aligned), and the layout's translation takes the offset: with
``p_obj' = p_obj - c``, ``t' = t + R(q) (s * c)`` places every point where it was.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from modelzoo.generators.base import CandidateOutput, Layout
from modelzoo.mesh.glb import glb_bytes, glb_compact_bytes
from modelzoo.mesh.gltf import GltfError, GltfLimits, check_glb, compact_glb, recentred_glb, \
    vertex_colours_from_textures
from modelzoo.mesh.meshing import vertex_normals
from modelzoo.mesh.preview import png_rgba, preview_png
from modelzoo.splats import Gaussians, SplatError, check_gaussians, ply_bytes, read_splat, spz_bytes
from modelzoo.splats.preview import splat_preview
from modelzoo.synth.rotations import quat_to_matrix

DEFAULT_MAX_GAUSSIANS = 2_000_000


class CandidateRefused(ValueError):
    """A candidate the engine will not store; the message says why (it goes on the item)."""


@dataclass(frozen=True)
class Limits:
    max_gaussians: int = DEFAULT_MAX_GAUSSIANS
    gltf: GltfLimits = GltfLimits()


@dataclass
class EncodedFiles:
    layout: dict
    preview_png: bytes
    glb: bytes | None = None
    glb_compact: bytes | None = None
    splat_ply: bytes | None = None
    splat_spz: bytes | None = None
    num_vertices: int = 0
    num_faces: int = 0
    num_gaussians: int = 0
    textured: bool = False
    received: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


def layout_recentred(layout: Layout, centre: np.ndarray) -> Layout:
    """The layout that places an object moved by -centre where it was."""
    R = quat_to_matrix(layout.rotation)
    s = np.asarray(layout.scale, np.float64)
    t = np.asarray(layout.translation, np.float64) + R @ (s * np.asarray(centre, np.float64))
    return Layout(rotation=layout.rotation, translation=tuple(float(x) for x in t), scale=layout.scale)


def _check_layout(layout) -> Layout:
    if not isinstance(layout, Layout):
        raise CandidateRefused("the backend gave no layout (rotation, translation, scale) for the candidate")
    values = [*layout.rotation, *layout.translation, *layout.scale]
    if len(layout.rotation) != 4 or len(layout.translation) != 3 or len(layout.scale) != 3:
        raise CandidateRefused("the layout needs a 4-component rotation, a translation and 3 scales")
    if not np.isfinite(values).all():
        raise CandidateRefused("the layout holds NaN or infinite values")
    if min(layout.scale) <= 0:
        raise CandidateRefused("the layout's scale must be positive")
    norm = float(np.linalg.norm(layout.rotation))
    if not 0.5 < norm < 2.0:
        raise CandidateRefused(f"the layout's rotation is not a unit quaternion (length {norm:.3g})")
    return Layout(rotation=tuple(float(x) / norm for x in layout.rotation), translation=layout.translation,
                  scale=layout.scale)


def encode_candidate(output: CandidateOutput, limits: Limits = Limits()) -> EncodedFiles:
    """Every file of one candidate, or CandidateRefused (see the module's docstring)."""
    t0 = time.perf_counter()
    if not output.has_mesh() and output.splat is None:
        raise CandidateRefused(f"seed {output.seed}: the backend gave neither a mesh nor a splat")
    layout = _check_layout(output.layout)
    received: dict = {}
    out = EncodedFiles(layout={}, preview_png=b"")
    centre = None
    preview_mesh = None  # (vertices, faces, colours) for the preview
    if output.glb is not None:
        data = bytes(output.file_bytes("glb"))
        try:
            summary = check_glb(data, limits.gltf)
        except GltfError as exc:
            raise CandidateRefused(f"seed {output.seed}: GLB refused: {exc}") from None
        lo, hi = summary.bounds()
        centre = 0.5 * (lo + hi)
        try:
            out.glb = recentred_glb(summary, centre)
            out.glb_compact = compact_glb(summary, centre=centre)
        except Exception as exc:  # an image that decoded but cannot be re-encoded, and the like
            raise CandidateRefused(f"seed {output.seed}: GLB refused: {' '.join(str(exc).split())[:300]}") from None
        out.num_vertices, out.num_faces, out.textured = summary.num_vertices, summary.num_faces, summary.textured
        received["mesh"] = {
            "format": "glb", "bytes": len(data), "vertices": summary.num_vertices, "faces": summary.num_faces,
            "primitives": len(summary.primitives), "materials": len(summary.gltf.get("materials", [])),
            "textured": summary.textured, "vertex_colours": summary.vertex_colours, "textures": summary.textures,
            "extensions": summary.extensions, "recentred_by": [float(-c) for c in centre],
        }
        colours = vertex_colours_from_textures(summary)
        base, verts, faces = 0, [], []
        for p in summary.primitives:
            verts.append(p.positions - centre)
            faces.append(p.indices + base)
            base += len(p.positions)
        preview_mesh = (np.concatenate(verts).astype(np.float32), np.concatenate(faces), np.concatenate(colours))
    elif output.vertices is not None:
        try:
            normals = vertex_normals(np.asarray(output.vertices, np.float32), np.asarray(output.faces))
            out.glb = glb_bytes(output.vertices, output.faces, output.vertex_colors, normals=normals)
            out.glb_compact = glb_compact_bytes(output.vertices, output.faces, output.vertex_colors, normals=normals)
        except (ValueError, IndexError, TypeError) as exc:
            raise CandidateRefused(f"seed {output.seed}: mesh arrays refused: {exc}") from None
        if not np.isfinite(np.asarray(output.vertices, np.float64)).all():
            raise CandidateRefused(f"seed {output.seed}: mesh arrays refused: vertices hold NaN or infinite values")
        out.num_vertices, out.num_faces = len(output.vertices), len(output.faces)
        received["mesh"] = {"format": "arrays", "vertices": out.num_vertices, "faces": out.num_faces,
                            "vertex_colours": output.vertex_colors is not None}
        preview_mesh = (output.vertices, output.faces, output.vertex_colors)
    t1 = time.perf_counter()
    if output.splat is not None:
        source = output.file_bytes("splat")
        try:
            if isinstance(source, Gaussians):
                g, fmt, size = source, "arrays", None
            else:
                source = bytes(source)
                g, fmt, size = read_splat(source), ("ply" if source.startswith(b"ply") else "spz"), len(source)
            g = check_gaussians(g, max_gaussians=limits.max_gaussians)
        except SplatError as exc:
            raise CandidateRefused(f"seed {output.seed}: splat refused: {exc}") from None
        splat_centre = None
        if output.glb is not None or output.vertices is None:
            # a GLB's frame was recentred: the splat follows it; a splat alone is recentred on itself
            splat_centre = centre if centre is not None else 0.5 * (g.positions.min(axis=0).astype(np.float64)
                                                                    + g.positions.max(axis=0))
            if centre is None:
                centre = splat_centre
            g = Gaussians((g.positions - splat_centre).astype(np.float32), g.scales, g.rotations, g.opacities,
                          g.sh_dc, g.sh_rest)
        try:
            out.splat_ply = ply_bytes(g)
            out.splat_spz = spz_bytes(g)
        except SplatError as exc:
            raise CandidateRefused(f"seed {output.seed}: splat refused: {exc}") from None
        out.num_gaussians = len(g)
        received["splat"] = {"format": fmt, "bytes": size, "gaussians": len(g), "sh_degree": g.sh_degree}
        if splat_centre is not None:
            received["splat"]["recentred_by"] = [float(-c) for c in splat_centre]
        if preview_mesh is None and not output.preview_png:
            out.preview_png = png_rgba(splat_preview(g, size=128))
    t2 = time.perf_counter()
    if not out.preview_png:
        out.preview_png = output.preview_png or preview_png(*preview_mesh)
    if centre is not None:
        layout = layout_recentred(layout, centre)
    out.layout = layout.as_dict()
    if output.info:
        received["backend"] = output.info
    out.received = received
    out.timings = {k: float(v) for k, v in output.timings.items()}
    out.timings.update(glb_encoding=t1 - t0, splat_encoding=t2 - t1)
    if not output.preview_png:
        out.timings["preview"] = time.perf_counter() - t2
    return out
