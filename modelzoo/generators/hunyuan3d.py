"""Hunyuan3D-2.1 (Tencent-Hunyuan/Hunyuan3D-2.1) as a generator backend: "hunyuan3d".

Per seed the adapter makes the calls of the project's demo.py, shape then paint:

    mesh = shape_pipeline(image=image, num_inference_steps=steps, octree_resolution=...,
                          generator=torch.Generator().manual_seed(seed))[0]     # trimesh.Trimesh, untextured
    mesh.export(folder / "white_mesh.glb")
    paint_pipeline(mesh_path=..., image_path=..., output_mesh_path=folder / "textured_mesh.obj")
    # Hunyuan3DPaintPipeline writes the OBJ, then (save_glb) textured_mesh.glb beside it: a GLB with a
    # PBR material whose images are embedded as data: URIs (convert_utils.create_glb_with_pbr_materials)

`image` is the photo with the mask as alpha (their preprocessing crops and recentres on it). The
object comes +Y up in Hunyuan's box ([-1.01, 1.01]); Hunyuan3D gives no pose, so the layout is
fitted (`layout_fit`: depth map when there is one, else mask and intrinsics) and recorded.
"""
from __future__ import annotations

import os
import tempfile
import time

from modelzoo.generators._common import rgba_photo
from modelzoo.generators.base import CandidateOutput, GenerationRequest, GeneratorError
from modelzoo.generators.layout_fit import NOMINAL_SIZE_M, layout_fit
from modelzoo.mesh.gltf import GltfError, parse_glb, primitives


class Hunyuan3dGenerator:
    backend = "hunyuan3d"

    def __init__(self, shape_pipeline, paint_pipeline, *, steps: int = 50, octree_resolution: int = 384,
                 nominal_size_m: float = NOMINAL_SIZE_M):
        self.shape_pipeline, self.paint_pipeline = shape_pipeline, paint_pipeline
        self.steps, self.octree_resolution, self.nominal_size_m = steps, octree_resolution, nominal_size_m

    def generate(self, request: GenerationRequest) -> list[CandidateOutput]:
        import torch

        image = rgba_photo(request.image, request.mask)
        outputs = []
        for seed in request.seeds:
            t0 = time.perf_counter()
            meshes = self.shape_pipeline(image=image, num_inference_steps=self.steps,
                                         octree_resolution=self.octree_resolution,
                                         generator=torch.Generator().manual_seed(int(seed)))
            if not meshes or meshes[0] is None:
                raise GeneratorError(f"seed {seed}: Hunyuan3D's shape pipeline returned no mesh")
            t1 = time.perf_counter()
            with tempfile.TemporaryDirectory() as folder:
                white = os.path.join(folder, "white_mesh.glb")
                meshes[0].export(white)
                photo = os.path.join(folder, "image.png")
                image.save(photo)
                obj = self.paint_pipeline(mesh_path=white, image_path=photo,
                                          output_mesh_path=os.path.join(folder, "textured_mesh.obj"))
                glb_path = os.path.splitext(obj)[0] + ".glb"
                if not os.path.exists(glb_path):
                    raise GeneratorError(f"seed {seed}: Hunyuan3D's paint pipeline wrote no GLB beside {obj}")
                with open(glb_path, "rb") as f:
                    glb = f.read()
            t2 = time.perf_counter()
            try:
                gltf, blob = parse_glb(glb)
                import numpy as np

                vertices = np.concatenate([p.positions for p in primitives(gltf, blob)])
            except (GltfError, ValueError) as exc:
                raise GeneratorError(f"seed {seed}: Hunyuan3D's GLB does not read: {exc}") from None
            layout, source = layout_fit(vertices, request.mask, intrinsics=request.intrinsics,
                                        depth=request.depth, nominal_size_m=self.nominal_size_m)
            outputs.append(CandidateOutput(
                seed=int(seed), glb=glb, layout=layout, timings={"model": t1 - t0, "texturing": t2 - t1},
                info={"backend": "hunyuan3d", "layout_source": source, "steps": self.steps,
                      "call": "Hunyuan3DDiTFlowMatchingPipeline(image=...) + Hunyuan3DPaintPipeline(...)"},
            ))
        return outputs


def load(path: str | None, config: dict):
    """The registry's loader: config {"standin": true} runs the adapter against the stand-ins;
    otherwise Hunyuan3D-2.1 from `path` (or config["model"], default tencent/Hunyuan3D-2.1) with its
    hy3dshape and hy3dpaint packages importable (config["repo"]: the checkout to put on sys.path)."""
    options = {k: config[k] for k in ("steps", "octree_resolution", "nominal_size_m") if k in config}
    if config.get("standin"):
        from modelzoo.generators.standins import Hunyuan3dPaintStandin, Hunyuan3dShapeStandin

        return Hunyuan3dGenerator(Hunyuan3dShapeStandin(), Hunyuan3dPaintStandin(), **options)
    import sys

    repo = config.get("repo", "")
    for sub in ("hy3dshape", "hy3dpaint"):
        sys.path.insert(0, os.path.join(repo, sub))
    try:
        from hy3dshape.pipelines import Hunyuan3DDiTFlowMatchingPipeline
        from textureGenPipeline import Hunyuan3DPaintConfig, Hunyuan3DPaintPipeline
    except ImportError as exc:
        raise GeneratorError(f"the hunyuan3d backend needs Hunyuan3D-2.1 (hy3dshape, hy3dpaint): {exc}") from None
    shape = Hunyuan3DDiTFlowMatchingPipeline.from_pretrained(path or config.get("model", "tencent/Hunyuan3D-2.1"))
    paint_config = Hunyuan3DPaintConfig(int(config.get("max_num_view", 6)), int(config.get("resolution", 512)))
    for key in ("realesrgan_ckpt_path", "multiview_cfg_path", "custom_pipeline"):
        if key in config:
            setattr(paint_config, key, config[key])
    return Hunyuan3dGenerator(shape, Hunyuan3DPaintPipeline(paint_config), **options)
