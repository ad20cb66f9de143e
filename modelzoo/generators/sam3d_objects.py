"""SAM 3D Objects (facebookresearch/sam-3d-objects) as a generator backend: "sam3d_objects".

Per seed the adapter makes the call of the project's demo.py and notebook/inference.py:

    output = inference(image, mask, seed=seed, pointmap=None)    # Inference(config_file)
    output["gs"].save_ply(path)        # Gaussians, the 3DGS PLY (x y z nx ny nz f_dc_0..2 opacity
                                       # scale_0..2 rot_0..3; SH degree 0), in the object's Z-up frame
    output["glb"]                      # trimesh.Trimesh with vertex colours, Y-up (to_glb rotated it)
    output["rotation"], ["translation"], ["scale"]   # torch tensors (1, 4) (w, x, y, z), (1, 3), (1, 3)

Frames. SAM 3D poses the Z-up object in PyTorch3D's camera frame (+X left, +Y up, +Z into the
scene) with PyTorch3D's row-vector transforms (scale, then rotate, then translate:
``p_p3d = (s p_z) @ R(q) + t``, as SceneVisualizer.object_pointcloud does). Ours is the object +Y up
(their GLB's frame: ``p_y = M^T p_z`` with M = [[1,0,0],[0,0,-1],[0,1,0]], as their to_glb and
layout code use) in the OpenGL camera frame (+X right, +Y up, looking down -Z: ``p = F p_p3d``, F =
diag(-1, 1, -1)). So ``R_ours = F R(q)^T M``, ``t_ours = F t``, the scale unchanged; the splat's
positions and orientations are turned by M^T into the mesh's frame. SAM 3D estimates its own point
map (MoGe); the request's depth map is not passed (see docs/generators.md).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

from modelzoo.generators._common import to_numpy
from modelzoo.generators.base import CandidateOutput, GenerationRequest, GeneratorError, Layout
from modelzoo.splats.gaussians import transform
from modelzoo.splats.ply import read_ply
from modelzoo.synth.rotations import matrix_to_quat, quat_to_matrix

Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # M: p_z = M p_y
P3D_TO_OPENGL = np.diag([-1.0, 1.0, -1.0])  # F


def layout_from_sam3d(rotation, translation, scale) -> Layout:
    """Their pose (quaternion (w, x, y, z), translation, uniform scale; PyTorch3D) as our Layout."""
    q = to_numpy(rotation).reshape(-1)[:4]
    t = to_numpy(translation).reshape(-1)[:3]
    s = to_numpy(scale).reshape(-1)
    R = P3D_TO_OPENGL @ quat_to_matrix(q / np.linalg.norm(q)).T @ Z_UP_TO_Y_UP
    s = float(s[0])
    return Layout(rotation=tuple(float(x) for x in matrix_to_quat(R)),
                  translation=tuple(float(x) for x in P3D_TO_OPENGL @ t), scale=(s, s, s))


class Sam3dObjectsGenerator:
    backend = "sam3d_objects"

    def __init__(self, inference, *, with_mesh: bool = True):
        self.inference = inference
        self.with_mesh = with_mesh

    def generate(self, request: GenerationRequest) -> list[CandidateOutput]:
        image = np.asarray(request.image, np.uint8)[..., :3]
        mask = np.asarray(request.mask, bool)
        outputs = []
        for seed in request.seeds:
            t0 = time.perf_counter()
            output = self.inference(image, mask, seed=int(seed), pointmap=None)
            t1 = time.perf_counter()
            if output.get("gs") is None:
                raise GeneratorError(f"seed {seed}: SAM 3D Objects returned no Gaussians ('gs')")
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "splat.ply")
                output["gs"].save_ply(path)
                with open(path, "rb") as f:
                    ply = f.read()
            splat = transform(read_ply(ply), Z_UP_TO_Y_UP.T)
            glb = None
            if self.with_mesh and output.get("glb") is not None:
                glb = output["glb"].export(file_type="glb")
            outputs.append(CandidateOutput(
                seed=int(seed), glb=glb, splat=splat,
                layout=layout_from_sam3d(output["rotation"], output["translation"], output["scale"]),
                timings={"model": t1 - t0, "export": time.perf_counter() - t1},
                info={"backend": "sam3d_objects", "call": "Inference(config)(image, mask, seed=seed)",
                      "layout_source": "model", "splat_ply_bytes": len(ply),
                      "pointmap": "estimated by SAM 3D"},
            ))
        return outputs


def load(path: str | None, config: dict):
    """The registry's loader: config {"standin": true} runs the adapter against the stand-in;
    otherwise `path` is SAM 3D's pipeline.yaml (checkpoints/hf/pipeline.yaml) and config["repo"] its
    checkout (for notebook/inference.py's Inference), on a GPU machine with its environment."""
    if config.get("standin"):
        from modelzoo.generators.standins import Sam3dInferenceStandin

        return Sam3dObjectsGenerator(Sam3dInferenceStandin(), with_mesh=config.get("with_mesh", True))
    if not path:
        raise GeneratorError("the sam3d_objects backend needs its pipeline.yaml as the checkpoint path")
    repo = config.get("repo") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    sys.path.insert(0, os.path.join(repo, "notebook"))
    try:
        from inference import Inference
    except ImportError as exc:
        raise GeneratorError(f"the sam3d_objects backend needs SAM 3D Objects' notebook/inference.py: {exc}") from None
    return Sam3dObjectsGenerator(Inference(path, compile=bool(config.get("compile", False))),
                                 with_mesh=config.get("with_mesh", True))
