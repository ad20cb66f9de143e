"""The adapters of real models (sam3d_objects, trellis2, hunyuan3d) against stand-ins that return
their pipelines' types (modelzoo/generators/standins.py), through the engine's encoding, and served
by `modelzoo.serve`."""
import io
import json
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import trimesh

from modelzoo.generators.base import GenerationRequest, default_intrinsics
from modelzoo.generators.http import HttpGenerator
from modelzoo.generators.registry import backend_names, load_generator
from modelzoo.generators.sam3d_objects import P3D_TO_OPENGL, Z_UP_TO_Y_UP
from modelzoo.mesh.glb import read_glb
from modelzoo.mesh.gltf import check_glb
from modelzoo.representations import encode_candidate
from modelzoo.serve import make_server
from modelzoo.splats import read_ply
from modelzoo.synth.rotations import quat_to_matrix

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "frontend" / "scripts" / "validate-gltf.mjs"
VALIDATOR = ROOT / "frontend" / "node_modules" / "gltf-validator"
needs_validator = pytest.mark.skipif(shutil.which("node") is None or not VALIDATOR.exists(),
                                     reason="node/gltf-validator not installed")


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(3)
    image = (rng.random((120, 160, 3)) * 60 + np.array([40, 120, 60])).astype(np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[30:90, 50:110] = True
    return image, mask


def request(photo, seeds, **extra):
    image, mask = photo
    return GenerationRequest(image=image, mask=mask, seeds=seeds, steps=4, **extra)


def khronos(tmp_path, files: dict[str, bytes]) -> dict:
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    result = subprocess.run(["node", str(SCRIPT), *paths], capture_output=True, text=True, timeout=120)
    return {Path(f["path"]).name: f for f in json.loads(result.stdout)["files"]}


def test_the_three_adapters_are_registered_by_name():
    assert {"sam3d_objects", "trellis2", "hunyuan3d"} <= set(backend_names())


def test_trellis2_gives_a_textured_pbr_glb_with_a_layout_fitted_to_the_mask(photo):
    gen = load_generator(backend="trellis2", config={"standin": True, "texture_size": 512})
    out = gen.generate(request(photo, [3, 4]))
    assert [o.seed for o in out] == [3, 4] and out[0].glb != out[1].glb
    assert out[0].vertices is None and out[0].splat is None and out[0].info["layout_source"] == "mask_intrinsics"
    files = encode_candidate(out[0])
    assert files.textured and files.received["mesh"]["textured"]
    assert [(t["width"], t["mime"]) for t in files.received["mesh"]["textures"]] == [(512, "image/png")] * 2
    # the layout puts the object's box centre on the ray through the mask box's centre
    image, mask = photo
    K = default_intrinsics(160, 120)
    t = np.asarray(files.layout["translation"])
    u, v = K[0, 2] + K[0, 0] * t[0] / -t[2], K[1, 2] - K[1, 1] * t[1] / -t[2]
    assert abs(u - 80) < 1 and abs(v - 60) < 1


def test_trellis2_with_a_depth_map_fits_the_distance_to_it(photo):
    image, mask = photo
    depth = np.full(mask.shape, 2.5, np.float32)
    gen = load_generator(backend="trellis2", config={"standin": True, "texture_size": 256})
    out = gen.generate(request(photo, [1], depth=depth))[0]
    assert out.info["layout_source"] == "depth"
    files = encode_candidate(out)
    s, z = files.layout["scale"][0], -files.layout["translation"][2]
    vertices, _, _ = read_glb(files.glb)
    depth_extent = float(np.ptp(vertices[:, 2]))
    # the front of the object at the observed depth: its centre half its (scaled) depth behind it
    assert abs(z - (2.5 + 0.5 * depth_extent * s)) < 1e-6


def their_pose_applied(points_z, rotation, translation, scale) -> np.ndarray:
    """SAM 3D's SceneVisualizer.object_pointcloud (PyTorch3D row vectors: scale, rotate, translate),
    then PyTorch3D's camera frame -> ours."""
    R = quat_to_matrix(rotation.numpy().reshape(4))
    p3d = (points_z * scale.numpy().reshape(-1)[None, :]) @ R + translation.numpy().reshape(1, 3)
    return p3d @ P3D_TO_OPENGL.T


def test_sam3d_objects_frames_map_their_pose_onto_ours(photo):
    from modelzoo.generators.standins import Sam3dInferenceStandin

    image, mask = photo
    theirs = Sam3dInferenceStandin()(image, mask, seed=5)  # what the adapter gets for seed 5
    gen = load_generator(backend="sam3d_objects", config={"standin": True})
    out = gen.generate(request(photo, [5]))[0]
    assert out.info["layout_source"] == "model" and len(out.splat) == 6000
    files = encode_candidate(out)
    assert files.num_gaussians == 6000 and files.splat_spz and files.glb and not files.textured
    R = quat_to_matrix(files.layout["rotation"])
    t, s = np.asarray(files.layout["translation"]), files.layout["scale"][0]
    # the splat as stored (Y-up, recentred), placed by our layout, lands where SAM 3D puts its Gaussians
    ours = read_ply(files.splat_ply).positions.astype(np.float64) @ R.T * s + t
    expected = their_pose_applied(theirs["gs"].get_xyz.numpy().astype(np.float64), theirs["rotation"],
                                  theirs["translation"], theirs["scale"])
    assert np.abs(np.sort(ours, axis=0) - np.sort(expected, axis=0)).max() < 1e-4
    # and the mesh (their GLB is Y-up: their layout applies to M @ v_y) lands where theirs does
    mesh = trimesh.load(io.BytesIO(files.glb), file_type="glb", force="mesh")
    v_ours = np.asarray(mesh.vertices) @ R.T * s + t
    v_theirs = their_pose_applied(np.asarray(theirs["glb"].vertices) @ Z_UP_TO_Y_UP.T, theirs["rotation"],
                                  theirs["translation"], theirs["scale"])
    assert np.abs(np.sort(v_ours, axis=0) - np.sort(v_theirs, axis=0)).max() < 1e-4


def test_hunyuan3d_glb_with_data_uri_images_is_taken_and_compacted(photo):
    gen = load_generator(backend="hunyuan3d", config={"standin": True})
    out = gen.generate(request(photo, [7]))[0]
    files = encode_candidate(out)
    assert files.textured and {t["embedded"] for t in files.received["mesh"]["textures"]} == {"data_uri"}
    assert b"image/webp" in files.glb_compact and b"data:image" not in files.glb_compact
    assert b"data:image" in out.glb and b"data:image" not in files.glb  # the stored GLB embeds them in BIN
    assert check_glb(files.glb).textured
    assert len(files.glb_compact) < 0.5 * len(out.glb)


@needs_validator
def test_textured_and_splat_backends_glbs_pass_the_khronos_validator(photo, tmp_path):
    produced = {}
    for backend in ("trellis2", "hunyuan3d", "sam3d_objects"):
        config = {"standin": True, "texture_size": 512} if backend == "trellis2" else {"standin": True}
        files = encode_candidate(load_generator(backend=backend, config=config).generate(request(photo, [2]))[0])
        produced[f"{backend}.glb"], produced[f"{backend}-compact.glb"] = files.glb, files.glb_compact
    report = khronos(tmp_path, produced)
    for name, result in report.items():
        assert result["errors"] == 0, (name, result["messages"])
        assert result["warnings"] == 0, (name, result["messages"])  # Hunyuan's data: URIs moved into the GLB
    compact = trimesh.load(io.BytesIO(produced["trellis2-compact.glb"]), file_type="glb")
    assert compact is not None


def test_modelzoo_serve_serves_an_adapter(photo):
    generator = load_generator(backend="trellis2", config={"standin": True, "texture_size": 256})
    server = make_server(generator, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = HttpGenerator(url=f"http://127.0.0.1:{server.server_address[1]}")
        assert client.health()["backend"] == "trellis2"
        remote = client.generate(request(photo, [9]))
        local = generator.generate(request(photo, [9]))
        assert remote[0].glb == local[0].glb and remote[0].info["layout_source"] == "mask_intrinsics"
        assert remote[0].layout == local[0].layout
        assert encode_candidate(remote[0]).textured
    finally:
        server.shutdown()
        server.server_close()
