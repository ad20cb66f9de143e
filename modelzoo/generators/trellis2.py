"""TRELLIS.2 (microsoft/TRELLIS.2) as a generator backend: "trellis2".

Per seed the adapter makes the calls of the project's own example.py:

    mesh = pipeline.run(image, num_samples=1, seed=seed, pipeline_type=...)[0]   # MeshWithVoxel
    mesh.simplify(16777216)                                                       # nvdiffrast's limit
    glb = o_voxel.postprocess.to_glb(vertices=mesh.vertices, faces=mesh.faces, attr_volume=mesh.attrs,
                                     coords=mesh.coords, attr_layout=mesh.layout, voxel_size=mesh.voxel_size,
                                     aabb=[[-0.5] * 3, [0.5] * 3], decimation_target=..., texture_size=...,
                                     remesh=True, remesh_band=1, remesh_project=0, verbose=False)
    glb.export(file_type="glb")       # trimesh.Trimesh, TextureVisuals + PBRMaterial: base colour (RGBA),
                                      # metallic-roughness textures; vertices already +Y up

`image` is the photo with the mask as alpha (TRELLIS.2's preprocessing crops to it). The object
comes in TRELLIS's unit box, +Y up (to_glb swaps the axes), facing the camera; TRELLIS.2 gives no
pose, so the layout is fitted (`layout_fit`: from the depth map when the image has one, else from
the mask and the intrinsics with a nominal size) and the candidate records which.
"""
from __future__ import annotations

import time

from modelzoo.generators._common import rgba_photo, to_numpy
from modelzoo.generators.base import CandidateOutput, GenerationRequest, GeneratorError
from modelzoo.generators.layout_fit import NOMINAL_SIZE_M, layout_fit

AABB = [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]


class Trellis2Generator:
    backend = "trellis2"

    def __init__(self, pipeline, to_glb, *, pipeline_type: str | None = None, decimation_target: int = 200_000,
                 texture_size: int = 2048, nominal_size_m: float = NOMINAL_SIZE_M):
        self.pipeline, self.to_glb = pipeline, to_glb
        self.pipeline_type, self.decimation_target, self.texture_size = pipeline_type, decimation_target, texture_size
        self.nominal_size_m = nominal_size_m

    def generate(self, request: GenerationRequest) -> list[CandidateOutput]:
        image = rgba_photo(request.image, request.mask)
        outputs = []
        for seed in request.seeds:
            t0 = time.perf_counter()
            meshes = self.pipeline.run(image, num_samples=1, seed=int(seed), pipeline_type=self.pipeline_type)
            if not meshes:
                raise GeneratorError(f"seed {seed}: TRELLIS.2 returned no mesh")
            mesh = meshes[0]
            mesh.simplify(16777216)
            t1 = time.perf_counter()
            textured = self.to_glb(
                vertices=mesh.vertices, faces=mesh.faces, attr_volume=mesh.attrs, coords=mesh.coords,
                attr_layout=mesh.layout, voxel_size=mesh.voxel_size, aabb=AABB,
                decimation_target=self.decimation_target, texture_size=self.texture_size,
                remesh=True, remesh_band=1, remesh_project=0, verbose=False,
            )
            glb = textured.export(file_type="glb")
            t2 = time.perf_counter()
            layout, source = layout_fit(to_numpy(textured.vertices), request.mask, intrinsics=request.intrinsics,
                                        depth=request.depth, nominal_size_m=self.nominal_size_m)
            outputs.append(CandidateOutput(
                seed=int(seed), glb=glb, layout=layout,
                timings={"model": t1 - t0, "texturing": t2 - t1},
                info={"backend": "trellis2", "call": "Trellis2ImageTo3DPipeline.run + o_voxel.postprocess.to_glb",
                      "layout_source": source, "texture_size": self.texture_size,
                      "decimation_target": self.decimation_target},
            ))
        return outputs


def load(path: str | None, config: dict):
    """The registry's loader: config {"standin": true} runs the adapter against the stand-in
    (modelzoo.generators.standins); otherwise TRELLIS.2 from `path` (a local copy of the weights,
    e.g. microsoft/TRELLIS.2-4B) or config["model"], with the trellis2 and o_voxel packages installed."""
    options = {k: config[k] for k in ("pipeline_type", "decimation_target", "texture_size", "nominal_size_m")
               if k in config}
    if config.get("standin"):
        from modelzoo.generators.standins import Trellis2PipelineStandin, trellis2_to_glb_standin

        return Trellis2Generator(Trellis2PipelineStandin(), trellis2_to_glb_standin, **options)
    try:
        import o_voxel
        from trellis2.pipelines import Trellis2ImageTo3DPipeline
    except ImportError as exc:
        raise GeneratorError(f"the trellis2 backend needs TRELLIS.2 installed (trellis2, o_voxel): {exc}") from None
    pipeline = Trellis2ImageTo3DPipeline.from_pretrained(path or config.get("model", "microsoft/TRELLIS.2-4B"))
    pipeline.cuda()
    return Trellis2Generator(pipeline, o_voxel.postprocess.to_glb, **options)

