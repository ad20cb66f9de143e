"""Stand-ins for the real models behind the `trellis2`, `sam3d_objects` and `hunyuan3d` adapters.

The real models need a 24-32 GB GPU and gated weights; these replace only the model. Each returns
objects of the types and structure its pipeline returns (read from their public source), so the
adapters run unchanged against them: in the tests, in the demo's three-backend item
(`manage.py demo --backends`) and behind `python -m modelzoo.serve --backend trellis2 --config
'{"standin": true}'`. What they draw is procedural: a seed-shaped blob coloured from the photo.

* TRELLIS.2: `Trellis2PipelineStandin.run(image, num_samples, seed, ...)` -> [MeshWithVoxel-like]
  (torch tensors `vertices`, `faces`, `coords`, `attrs`, dict `layout`, `voxel_size`, `simplify`),
  and `trellis2_to_glb_standin(**o_voxel.postprocess.to_glb's keywords)` -> trimesh.Trimesh with
  TextureVisuals(uv, PBRMaterial(baseColorTexture RGBA, metallicRoughnessTexture, factors,
  alphaMode, doubleSided)), +Y up, in the unit box.
* SAM 3D Objects: `Sam3dInferenceStandin(image, mask, seed=, pointmap=)` -> dict with `gs` (a
  Gaussian whose `save_ply` writes SAM 3D's attribute list from the same hidden parameters and
  activations), `glb` (trimesh.Trimesh with vertex colours, Y-up), `rotation` (1, 4), `translation`
  (1, 3), `scale` (1, 3) torch tensors in PyTorch3D's camera frame, `pointmap` (H, W, 3).
* Hunyuan3D-2.1: `Hunyuan3dShapeStandin(image=, num_inference_steps=, generator=, ...)` ->
  [trimesh.Trimesh]; `Hunyuan3dPaintStandin(mesh_path=, image_path=, output_mesh_path=)` writes the
  OBJ and, beside it, a GLB whose PBR images are data: URIs, as convert_utils does, and returns the
  OBJ's path.
"""
from __future__ import annotations

import base64
import io
import os

import numpy as np

from modelzoo.generators.layout_fit import layout_fit
from modelzoo.synth.rotations import axis_angle, matrix_to_quat


def blob_mesh(seed: int, *, half: float = 0.5, rings: int = 48, segments: int = 64):
    """A UV sphere bumped by the seed, fitted in [-half, half]^3, +Y up: (vertices, faces, uv).
    The seam column is duplicated so the UVs run 0..1 without wrapping."""
    rng = np.random.default_rng(seed)
    theta = np.linspace(0, np.pi, rings + 1)  # from +Y down
    phi = np.linspace(0, 2 * np.pi, segments + 1)
    T, P = np.meshgrid(theta, phi, indexing="ij")
    direction = np.stack([np.sin(T) * np.sin(P), np.cos(T), np.sin(T) * np.cos(P)], axis=-1)
    radius = np.ones_like(T)
    for _ in range(4):
        k = rng.integers(1, 4, size=2)
        radius += 0.08 * rng.standard_normal() * np.cos(k[0] * T) * np.cos(k[1] * P + rng.random() * 6.28)
    stretch = np.array([1.0, 0.7 + 0.6 * rng.random(), 1.0 - 0.3 * rng.random()])
    v = (direction * radius[..., None] * stretch).reshape(-1, 3)
    v = (v - 0.5 * (v.max(axis=0) + v.min(axis=0))) / np.abs(v).max() * half
    uv = np.stack([P / (2 * np.pi), T / np.pi], axis=-1).reshape(-1, 2)
    faces = []
    w = segments + 1
    for i in range(rings):
        for j in range(segments):
            a, b, c, d = i * w + j, i * w + j + 1, (i + 1) * w + j, (i + 1) * w + j + 1
            if i > 0:
                faces.append((a, c, b))
            if i < rings - 1:
                faces.append((b, c, d))
    return v.astype(np.float32), np.asarray(faces, np.int64), uv.astype(np.float32)


def _photo_colours(image) -> tuple[np.ndarray, np.ndarray]:
    """(RGB crop of the photo inside its alpha's box, mean colour) of an RGBA PIL image."""
    a = np.asarray(image.convert("RGBA"))
    ys, xs = np.nonzero(a[..., 3] > 127)
    if len(xs) == 0:
        return a[..., :3], np.array([180, 180, 180], np.uint8)
    crop = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1, :3]
    return crop, a[ys, xs, :3].mean(axis=0).astype(np.uint8)


def _textures(crop: np.ndarray, size: int, seed: int):
    """Base colour (RGBA: the photo's crop wrapped around, a seed's tint and stripes) and
    metallic-roughness (G roughness, B metallic) textures, size x size PIL images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = np.asarray(Image.fromarray(crop).resize((size, size)), np.float64)
    yy, xx = np.mgrid[0:size, 0:size] / size
    stripes = 0.85 + 0.15 * np.sign(np.sin(2 * np.pi * (6 + seed % 5) * (xx + 0.3 * yy)))
    tint = 0.8 + 0.4 * rng.random(3)
    base = np.clip(base * stripes[..., None] * tint, 0, 255).astype(np.uint8)
    rgba = np.concatenate([base, np.full((size, size, 1), 255, np.uint8)], axis=2)
    rough = (120 + 100 * (0.5 + 0.5 * np.sin(8 * np.pi * yy))).astype(np.uint8)
    metal = (40 * (xx > 0.5)).astype(np.uint8)
    mr = np.stack([np.zeros_like(rough), rough, metal], axis=2)
    return Image.fromarray(rgba, "RGBA"), Image.fromarray(mr, "RGB")


# ------------------------------------------------------------------ TRELLIS.2
class MeshWithVoxelStandin:
    """The attributes of trellis2's MeshWithVoxel that the adapter and to_glb read."""

    def __init__(self, vertices, faces, coords, attrs, layout: dict, voxel_size: float):
        self.vertices, self.faces, self.coords, self.attrs = vertices, faces, coords, attrs
        self.layout, self.voxel_size = layout, voxel_size

    def simplify(self, target: int) -> None:
        """TRELLIS.2 decimates to `target` faces for nvdiffrast; the stand-in is far below it."""


class Trellis2PipelineStandin:
    def run(self, image, num_samples: int = 1, seed: int = 42, sparse_structure_sampler_params: dict | None = None,
            shape_slat_sampler_params: dict | None = None, tex_slat_sampler_params: dict | None = None,
            preprocess_image: bool = True, return_latent: bool = False, pipeline_type: str | None = None,
            max_num_tokens: int = 49152):
        import torch

        crop, _ = _photo_colours(image)
        out = []
        for k in range(num_samples):
            v, f, uv = blob_mesh(seed * 7 + k)
            # TRELLIS's mesh is Z-up inside the unit box; to_glb swaps to +Y up
            v_z = np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)
            coords = torch.from_numpy(np.floor((v_z + 0.5) * 63).astype(np.int32))
            attrs = {"uv": torch.from_numpy(uv), "photo": torch.from_numpy(crop.copy()), "seed": seed * 7 + k}
            out.append(MeshWithVoxelStandin(torch.from_numpy(v_z), torch.from_numpy(f.astype(np.int32)), coords,
                                            attrs, {"base_color": slice(0, 3)}, 1.0 / 64))
        return out


def trellis2_to_glb_standin(*, vertices, faces, attr_volume, coords, attr_layout, voxel_size, aabb,
                            decimation_target: int = 1000000, texture_size: int = 2048, remesh: bool = False,
                            remesh_band: float = 1, remesh_project: float = 0.9, mesh_cluster_threshold_cone_half_angle_rad=None,
                            mesh_cluster_refine_iterations: int = 0, mesh_cluster_global_iterations: int = 1,
                            mesh_cluster_smooth_strength: float = 1, verbose: bool = False, use_tqdm: bool = False):
    import trimesh

    base, mr = _textures(attr_volume["photo"].numpy(), texture_size, attr_volume["seed"])
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=base, baseColorFactor=np.array([255, 255, 255, 255], dtype=np.uint8),
        metallicRoughnessTexture=mr, metallicFactor=1.0, roughnessFactor=1.0, alphaMode="OPAQUE",
        doubleSided=True if not remesh else False,
    )
    v = vertices.numpy().astype(np.float64)
    v = np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1)  # as to_glb: swap Y and Z, invert the new Z
    uv = attr_volume["uv"].numpy().copy()
    uv[:, 1] = 1 - uv[:, 1]  # as to_glb: flip V
    return trimesh.Trimesh(vertices=v, faces=faces.numpy(), process=False,
                           visual=trimesh.visual.TextureVisuals(uv=uv, material=material))


# ------------------------------------------------------------------ SAM 3D Objects
def _inverse_sigmoid(x):
    import torch

    return torch.log(x / (1 - x))


class Sam3dGaussianStandin:
    """The parameters and activations of SAM 3D's Gaussian (representations/gaussian/gaussian_model.py)
    that its save_ply reads: _xyz in the aabb, _features_dc (N, 1, 3), _scaling, _rotation,
    _opacity with their biases; SH degree 0."""

    def __init__(self, aabb, scaling_bias: float = 0.01, opacity_bias: float = 0.1):
        import torch

        self.sh_degree = 0
        self.aabb = torch.tensor(aabb, dtype=torch.float32)
        self.mininum_kernel_size = 0.0
        self.scale_bias = torch.log(torch.tensor(scaling_bias))
        self.rots_bias = torch.zeros(4)
        self.rots_bias[0] = 1
        self.opacity_bias = _inverse_sigmoid(torch.tensor(opacity_bias))
        self._xyz = self._features_dc = self._features_rest = self._scaling = self._rotation = self._opacity = None

    @property
    def get_xyz(self):
        return self._xyz * self.aabb[None, 3:] + self.aabb[None, :3]

    @property
    def get_scaling(self):
        import torch

        scales = torch.exp(self._scaling + self.scale_bias)
        return torch.sqrt(torch.square(scales) + self.mininum_kernel_size ** 2)

    @property
    def get_opacity(self):
        import torch

        return torch.sigmoid(self._opacity + self.opacity_bias)

    def construct_list_of_attributes(self):
        names = ["x", "y", "z", "nx", "ny", "nz"]
        names += [f"f_dc_{i}" for i in range(self._features_dc.shape[1] * self._features_dc.shape[2])]
        names.append("opacity")
        names += [f"scale_{i}" for i in range(self._scaling.shape[1])]
        names += [f"rot_{i}" for i in range(self._rotation.shape[1])]
        return names

    def save_ply(self, path):
        import torch
        from plyfile import PlyData, PlyElement

        xyz = self.get_xyz.detach().cpu().numpy()
        normals = np.zeros_like(xyz)
        f_dc = self._features_dc.detach().transpose(1, 2).flatten(start_dim=1).contiguous().cpu().numpy()
        opacities = _inverse_sigmoid(self.get_opacity).detach().cpu().numpy()
        scale = torch.log(self.get_scaling).detach().cpu().numpy()
        rotation = (self._rotation + self.rots_bias[None, :]).detach().cpu().numpy()
        elements = np.empty(xyz.shape[0], dtype=[(name, "f4") for name in self.construct_list_of_attributes()])
        elements[:] = list(map(tuple, np.concatenate((xyz, normals, f_dc, opacities, scale, rotation), axis=1)))
        PlyData([PlyElement.describe(elements, "vertex")]).write(path)


class Sam3dInferenceStandin:
    """`Inference(config)(image, mask, seed=, pointmap=)` of SAM 3D Objects' notebook/inference.py."""

    def __init__(self, gaussians: int = 6000):
        self.gaussians = gaussians

    def __call__(self, image, mask, seed=None, pointmap=None) -> dict:
        import torch
        import trimesh
        from PIL import Image

        from modelzoo.splats.gaussians import gaussians_on_surface

        seed = 0 if seed is None else int(seed)
        image = np.asarray(image)[..., :3]
        mask = np.asarray(mask, bool)
        _, mean = _photo_colours(Image.fromarray(np.concatenate(
            [image, (mask * 255).astype(np.uint8)[..., None]], axis=2), "RGBA"))
        v_y, f, _ = blob_mesh(seed * 13 + 1, rings=32, segments=48)
        rng = np.random.default_rng(seed)
        shade = np.clip(mean[None, :] * (0.75 + 0.5 * (v_y[:, 1:2] + 0.5)) * (0.9 + 0.2 * rng.random(3)), 0, 255)
        colours = np.concatenate([shade, np.full((len(v_y), 1), 255)], axis=1).astype(np.uint8)
        M = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        v_z = v_y @ M.T  # their Gaussians live in the Z-up frame; to_glb rotated the mesh to Y-up
        g = gaussians_on_surface(v_z, f, colours, self.gaussians, seed=seed)
        gs = Sam3dGaussianStandin(aabb=[-0.5, -0.5, -0.5, 1.0, 1.0, 1.0])
        gs._xyz = (torch.from_numpy(g.positions) - gs.aabb[None, :3]) / gs.aabb[None, 3:]
        gs._features_dc = torch.from_numpy(g.sh_dc)[:, None, :]
        gs._scaling = torch.log(torch.exp(torch.from_numpy(g.scales))) - gs.scale_bias
        gs._rotation = torch.from_numpy(g.rotations) - gs.rots_bias[None, :]
        gs._opacity = torch.from_numpy(g.opacities)[:, None] - gs.opacity_bias
        glb = trimesh.Trimesh(vertices=v_y, faces=f, process=False)
        glb.visual.vertex_colors = colours
        # a pose that puts the object on the mask, turned by the seed about the vertical, in their frame
        ours, _ = layout_fit(v_y, mask)
        R_ours = axis_angle([0.0, 1.0, 0.0], (seed % 7 - 3) * 0.3)
        F = np.diag([-1.0, 1.0, -1.0])
        R_q = M @ R_ours.T @ F  # so that F R_q^T M = R_ours (see the adapter)
        s = ours.scale[0]
        height, width = mask.shape
        return {
            "gs": gs, "gaussian": [gs], "glb": glb,
            "rotation": torch.tensor(matrix_to_quat(R_q), dtype=torch.float32)[None],
            "translation": torch.tensor(F @ np.asarray(ours.translation), dtype=torch.float32)[None],
            "scale": torch.tensor([[s, s, s]], dtype=torch.float32),
            "pointmap": torch.zeros((height, width, 3)),
        }


# ------------------------------------------------------------------ Hunyuan3D-2.1
class Hunyuan3dShapeStandin:
    """`Hunyuan3DDiTFlowMatchingPipeline.__call__(image=, num_inference_steps=, generator=, ...)`."""

    def __call__(self, image=None, num_inference_steps: int = 50, guidance_scale: float = 5.0, generator=None,
                 box_v: float = 1.01, octree_resolution: int = 384, mc_level: float = 0.0, num_chunks: int = 8000,
                 output_type: str = "trimesh", **kwargs):
        import trimesh

        seed = int(generator.initial_seed()) if generator is not None else 0
        v, f, _ = blob_mesh(seed * 3 + 2, half=box_v * 0.95, rings=40, segments=56)
        return [trimesh.Trimesh(vertices=v, faces=f, process=False)]


class Hunyuan3dPaintStandin:
    """`Hunyuan3DPaintPipeline.__call__(mesh_path, image_path, output_mesh_path, use_remesh, save_glb)`:
    UVs (their mesh_uv_wrap), albedo and metallic-roughness textures, the OBJ, then the GLB with
    data: URI images that their convert_utils writes."""

    def __init__(self, texture_size: int = 1024):
        self.texture_size = texture_size

    def __call__(self, mesh_path=None, image_path=None, output_mesh_path=None, use_remesh=True, save_glb=True):
        import pygltflib
        import trimesh
        from PIL import Image

        mesh = trimesh.load(mesh_path, force="mesh")
        v = np.asarray(mesh.vertices)
        d = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
        uv = np.stack([0.5 + np.arctan2(d[:, 0], d[:, 2]) / (2 * np.pi), np.arccos(np.clip(d[:, 1], -1, 1)) / np.pi],
                      axis=1)
        if output_mesh_path is None:
            output_mesh_path = os.path.join(os.path.dirname(mesh_path), "textured_mesh.obj")
        crop, _ = _photo_colours(Image.open(image_path))
        albedo, mr = _textures(crop, self.texture_size, len(v))
        textured = trimesh.Trimesh(vertices=v, faces=np.asarray(mesh.faces), process=False,
                                   visual=trimesh.visual.TextureVisuals(uv=uv))
        textured.export(output_mesh_path)
        if save_glb:
            glb_path = output_mesh_path.replace(".obj", ".glb")
            temp = os.path.join(os.path.dirname(output_mesh_path), "temp.glb")
            textured.export(temp)
            gltf = pygltflib.GLTF2().load(temp)
            images, textures = [], []
            for picture in (albedo.convert("RGB"), mr):
                buf = io.BytesIO()
                picture.save(buf, "PNG")
                images.append(pygltflib.Image(uri="data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()))
                textures.append(pygltflib.Texture(source=len(images) - 1))
            pbr = pygltflib.PbrMetallicRoughness(baseColorTexture=pygltflib.TextureInfo(index=0),
                                                 metallicRoughnessTexture=pygltflib.TextureInfo(index=1),
                                                 metallicFactor=1.0, roughnessFactor=1.0)
            gltf.images, gltf.textures = images, textures
            gltf.materials = [pygltflib.Material(name="PBR_Material", pbrMetallicRoughness=pbr)]
            for primitive in gltf.meshes[0].primitives:
                primitive.material = 0
            gltf.save(glb_path)
        return output_mesh_path
