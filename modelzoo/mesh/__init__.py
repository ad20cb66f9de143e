"""Triangle meshes of candidates, one idea per module:

* `meshing`: occupancy -> mesh (marching cubes), normals, surface samples, mesh -> occupancy;
* `glb`: GLB files, the full one, the compact browser copy (KHR_mesh_quantization), the reader;
* `preview`: the preview PNG (a numpy rasteriser and PNG encoder).

This facade re-exports their public names for the Django app, the engine, benchmarks and
tests (``from modelzoo import mesh; mesh.read_glb(data)``); modelzoo's plain ML code imports
the submodule it needs.
"""
from modelzoo.mesh.glb import glb_bytes, glb_compact_bytes, read_glb
from modelzoo.mesh.meshing import (
    clean_occupancy,
    mesh_to_cell_occupancy,
    mesh_to_occupancy,
    occupancy_to_mesh,
    remove_degenerate,
    sample_surface,
    vertex_normals,
)
from modelzoo.mesh.preview import png_rgba, preview_png, render_preview

__all__ = [
    "occupancy_to_mesh",
    "clean_occupancy",
    "remove_degenerate",
    "vertex_normals",
    "mesh_to_occupancy",
    "mesh_to_cell_occupancy",
    "sample_surface",
    "glb_bytes",
    "glb_compact_bytes",
    "read_glb",
    "render_preview",
    "preview_png",
    "png_rgba",
]
