"""A backend's output -> the engine's files (modelzoo.representations): PBR GLBs taken, recentred and
compacted; malformed GLBs, splats and layouts refused with their reason."""
import io
import json
import struct

import numpy as np
import pytest
import trimesh
from PIL import Image

from modelzoo.generators.base import CandidateOutput, Layout
from modelzoo.mesh.glb import read_glb
from modelzoo.mesh.gltf import GltfLimits, parse_glb
from modelzoo.representations import CandidateRefused, Limits, encode_candidate
from modelzoo.splats import ply_bytes, read_ply, read_spz
from modelzoo.synth.rotations import quat_to_matrix
from tests.modelzoo.test_splats import random_splat

LAYOUT = Layout(rotation=(0.9238795, 0.0, 0.3826834, 0.0), translation=(0.1, -0.2, -2.0), scale=(0.5, 0.5, 0.5))


def pbr_glb(texture_px: int = 1024, offset=(0.0, 0.0, 0.0), count=(24, 32)) -> bytes:
    """A textured PBR GLB as TRELLIS.2 and Hunyuan3D hand them over: UVs, base colour and
    metallic-roughness textures (trimesh's PBRMaterial, exported as they export)."""
    mesh = trimesh.creation.uv_sphere(radius=0.3, count=list(count))
    uv = np.stack([0.5 + np.arctan2(mesh.vertices[:, 0], mesh.vertices[:, 2]) / (2 * np.pi),
                   np.arccos(np.clip(mesh.vertices[:, 1] / 0.3, -1, 1)) / np.pi], axis=1)
    yy, xx = np.mgrid[0:texture_px, 0:texture_px]
    base = np.stack([(xx * 255 // texture_px), (yy * 255 // texture_px), np.full_like(xx, 90),
                     np.full_like(xx, 255)], axis=2).astype(np.uint8)
    mr = np.stack([np.zeros_like(xx), np.full_like(xx, 180), np.full_like(xx, 30)], axis=2).astype(np.uint8)
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(base, "RGBA"), metallicRoughnessTexture=Image.fromarray(mr, "RGB"),
        metallicFactor=1.0, roughnessFactor=1.0)
    mesh.vertices = mesh.vertices + np.asarray(offset)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return mesh.export(file_type="glb")


def repack(data: bytes, edit) -> bytes:
    """The GLB with its JSON changed by `edit(gltf)` (the binary chunk kept)."""
    gltf, blob = parse_glb(data)
    edit(gltf)
    js = json.dumps(gltf).encode()
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    return b"".join([struct.pack("<4sII", b"glTF", 2, 28 + len(js) + len(blob)), struct.pack("<I4s", len(js), b"JSON"),
                     js, struct.pack("<I4s", len(blob), b"BIN\x00"), blob])


def test_a_pbr_glb_is_recentred_with_its_layout_and_compacted_under_a_megabyte():
    glb = pbr_glb(texture_px=2048, offset=(0.5, 0.0, 0.0))
    files = encode_candidate(CandidateOutput(seed=1, glb=glb, layout=LAYOUT))
    assert files.textured and files.num_faces > 1000 and files.splat_ply is None
    assert files.received["mesh"]["recentred_by"] == pytest.approx([-0.5, 0.0, 0.0], abs=1e-6)
    # the recentred mesh under the new layout lands where the original did under the old one
    v0, _, _ = read_glb(glb)
    v1, _, _ = read_glb(files.glb)
    assert np.abs(v1.mean(axis=0)).max() < 0.02 and np.abs(v1 - (v0 - [0.5, 0, 0])).max() < 1e-6
    R0 = quat_to_matrix(LAYOUT.rotation)
    R1 = quat_to_matrix(files.layout["rotation"])
    placed0 = v0.astype(np.float64) @ R0.T * 0.5 + LAYOUT.translation
    placed1 = v1.astype(np.float64) @ R1.T * 0.5 + np.asarray(files.layout["translation"])
    assert np.abs(placed0 - placed1).max() < 1e-5
    # the browser copy: quantised, WebP textures of at most 1024 px, under 1 MB
    gltf, blob = parse_glb(files.glb_compact)
    assert set(gltf["extensionsRequired"]) == {"KHR_mesh_quantization", "EXT_texture_webp"}
    sizes = [Image.open(io.BytesIO(blob[gltf["bufferViews"][im["bufferView"]]["byteOffset"]:][
        :gltf["bufferViews"][im["bufferView"]]["byteLength"]])).size for im in gltf["images"]]
    assert sizes == [(1024, 1024)] * 2 and len(files.glb_compact) < 1_000_000
    vc, fc, _ = read_glb(files.glb_compact)
    assert len(fc) == files.num_faces and np.abs(np.sort(vc, axis=0) - np.sort(v1, axis=0)).max() < 1e-3


def test_a_dense_textured_mesh_is_decimated_for_the_browser_and_keeps_its_texture(tmp_path):
    """TRELLIS.2 exports up to a million faces: the stored GLB keeps every one, the browser copy keeps
    COMPACT_MAX_TRIANGLES of them, on the same surface, with its UVs on the texture, under 1 MB."""
    from modelzoo.mesh.gltf import COMPACT_MAX_TRIANGLES
    from tests.modelzoo.test_adapters import VALIDATOR, khronos

    glb = pbr_glb(texture_px=1024, count=(400, 500))
    files = encode_candidate(CandidateOutput(seed=1, glb=glb, layout=LAYOUT))
    assert files.num_faces > 350_000 and len(read_glb(files.glb)[1]) == files.num_faces  # stored as received
    vc, fc, _ = read_glb(files.glb_compact)
    assert 0.8 * COMPACT_MAX_TRIANGLES <= len(fc) <= COMPACT_MAX_TRIANGLES
    assert np.abs(np.linalg.norm(vc - vc.mean(axis=0), axis=1) - 0.3).max() < 0.01  # still the sphere
    assert len(files.glb_compact) < 1_000_000
    gltf, blob = parse_glb(files.glb_compact)
    assert len(gltf["images"]) == 2 and "TEXCOORD_0" in gltf["meshes"][0]["primitives"][0]["attributes"]
    accessor = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"]]
    assert accessor["count"] == len(vc)
    if VALIDATOR.exists():
        report = khronos(tmp_path, {"dense-compact.glb": files.glb_compact})
        assert report["dense-compact.glb"]["errors"] == 0, report


def test_a_splat_alone_is_recentred_stored_as_ply_and_spz_with_a_preview():
    g = random_splat(n=800)
    g.positions += np.float32([0.0, 1.0, 0.0])
    files = encode_candidate(CandidateOutput(seed=2, splat=ply_bytes(g), layout=LAYOUT))
    assert files.glb is None and files.num_gaussians == 800 and files.preview_png.startswith(b"\x89PNG")
    assert files.received["splat"]["format"] == "ply" and files.received["splat"]["bytes"] == len(ply_bytes(g))
    stored = read_ply(files.splat_ply)
    assert np.abs(stored.positions.max(axis=0) + stored.positions.min(axis=0)).max() < 1e-5  # centred
    assert len(read_spz(files.splat_spz)) == 800


def test_a_mesh_and_splat_share_the_mesh_frame():
    g = random_splat(n=300)
    files = encode_candidate(CandidateOutput(seed=3, glb=pbr_glb(256, offset=(0, 0.2, 0)), splat=g, layout=LAYOUT))
    shift = np.asarray(files.received["mesh"]["recentred_by"])
    assert files.received["splat"]["recentred_by"] == pytest.approx(list(shift))
    assert np.abs(read_ply(files.splat_ply).positions - (g.positions + shift)).max() < 1e-6


def ext_buffer(gltf):
    gltf["buffers"][0]["uri"] = "https://example.com/mesh.bin"


def ext_image(gltf):
    gltf["images"][0] = {"uri": "textures/albedo.png"}


def bad_indices(gltf):
    gltf["accessors"][gltf["meshes"][0]["primitives"][0]["indices"]]["count"] += 3000


def ktx2(gltf):
    gltf["extensionsRequired"] = ["KHR_texture_basisu"]


def huge(gltf):
    gltf["nodes"][0]["scale"] = [10000.0, 10000.0, 10000.0]


@pytest.mark.parametrize("edit, reason", [
    (ext_buffer, "buffer 0 refers to an external URI"),
    (ext_image, "image 0 refers to an external URI"),
    (bad_indices, "accessor .* reaches past the end"),
    (ktx2, "the GLB requires extensions the engine cannot read: KHR_texture_basisu"),
    (huge, "the mesh is 6000 m across: not metres"),
])
def test_malformed_glbs_are_refused_with_their_reason(edit, reason):
    glb = repack(pbr_glb(128), edit)
    with pytest.raises(CandidateRefused, match="seed 4: GLB refused: " + reason):
        encode_candidate(CandidateOutput(seed=4, glb=glb, layout=LAYOUT))


def test_a_glb_over_the_size_limit_or_not_a_glb_is_refused():
    glb = pbr_glb(128)
    with pytest.raises(CandidateRefused, match=f"has {len(glb)} bytes, more than the limit of 1000"):
        encode_candidate(CandidateOutput(seed=1, glb=glb, layout=LAYOUT), Limits(gltf=GltfLimits(max_bytes=1000)))
    with pytest.raises(CandidateRefused, match="not a GLB"):
        encode_candidate(CandidateOutput(seed=1, glb=b"solid cube\nendsolid\n" * 3, layout=LAYOUT))
    with pytest.raises(CandidateRefused, match="shorter than its header|says .* bytes"):
        encode_candidate(CandidateOutput(seed=1, glb=glb[:-100], layout=LAYOUT))


def test_splats_with_nan_too_many_gaussians_or_no_layout_are_refused():
    g = random_splat(n=50)
    g.scales[7, 2] = np.nan
    with pytest.raises(CandidateRefused, match="splat refused: scales holds 1 NaN"):
        encode_candidate(CandidateOutput(seed=1, splat=ply_bytes(g), layout=LAYOUT))
    with pytest.raises(CandidateRefused, match="50 Gaussians, more than the limit of 10"):
        encode_candidate(CandidateOutput(seed=1, splat=random_splat(n=50), layout=LAYOUT), Limits(max_gaussians=10))
    with pytest.raises(CandidateRefused, match="no layout"):
        encode_candidate(CandidateOutput(seed=1, splat=random_splat(n=50)))
    with pytest.raises(CandidateRefused, match="neither a mesh nor a splat"):
        encode_candidate(CandidateOutput(seed=1, layout=LAYOUT))
