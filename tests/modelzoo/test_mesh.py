"""Meshing, GLB files (checked by the Khronos validator), previews."""
import io
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from modelzoo import mesh
from modelzoo.synth import NOMINAL_HALF_SIZE, sample_scene
from modelzoo.synth.shapes import grid_points

pytestmark = []

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "frontend" / "scripts" / "validate-gltf.mjs"
VALIDATOR = ROOT / "frontend" / "node_modules" / "gltf-validator"


def sphere_occupancy(radius=0.6, res=32, center=(0.0, 0.0, 0.0)):
    p = grid_points(res)
    return (np.linalg.norm(p - np.asarray(center), axis=1) < radius).reshape(res, res, res).astype(np.float32)


@pytest.fixture(scope="module")
def candidate_mesh():
    s = sample_scene(11)
    from scipy import ndimage

    prob = ndimage.gaussian_filter(s.occupancy.astype(np.float32), 0.6)
    v, f = mesh.occupancy_to_mesh(prob)
    colors = np.tile(np.array([200, 90, 30, 255], np.uint8), (len(v), 1))
    colors[: len(v) // 2, :3] = (40, 160, 220)
    return v, f, colors


def test_sphere_mesh_is_watertight_outward_and_metric():
    v, f = mesh.occupancy_to_mesh(sphere_occupancy(0.6))
    m = trimesh.Trimesh(v, f, process=False)
    assert m.is_watertight
    assert m.volume > 0  # outward winding
    radius_m = 0.6 * NOMINAL_HALF_SIZE
    assert np.linalg.norm(v, axis=1).mean() == pytest.approx(radius_m, rel=0.05)
    assert m.volume == pytest.approx(4 / 3 * np.pi * radius_m**3, rel=0.1)


def test_small_floaters_are_removed():
    occ = np.maximum(sphere_occupancy(0.6), sphere_occupancy(0.08, center=(0.85, 0.85, 0.85)))
    v, f = mesh.occupancy_to_mesh(occ)
    assert len(trimesh.Trimesh(v, f, process=False).split(only_watertight=False)) == 1
    assert np.abs(v).max() < 0.7 * NOMINAL_HALF_SIZE


def test_logits_input_and_empty_grid():
    logits = np.where(sphere_occupancy(0.5) > 0, 4.0, -4.0)
    v, f = mesh.occupancy_to_mesh(logits, logits=True)
    assert len(f) > 100
    with pytest.raises(ValueError):
        mesh.occupancy_to_mesh(np.zeros((32, 32, 32)))


def test_glb_roundtrip(candidate_mesh):
    v, f, c = candidate_mesh
    for writer in (mesh.glb_bytes, mesh.glb_compact_bytes):
        data = writer(v, f, c)
        rv, rf, rc = mesh.read_glb(data)
        assert np.array_equal(rf, f)
        assert np.abs(rv - v).max() < 1e-4 * NOMINAL_HALF_SIZE * 10
        assert np.array_equal(rc, c)
        # trimesh reads it too, +Y up, metres
        scene = trimesh.load(io.BytesIO(data), file_type="glb")
        assert scene is not None


def test_compact_glb_is_small(candidate_mesh):
    v, f, c = candidate_mesh
    full, compact = mesh.glb_bytes(v, f, c), mesh.glb_compact_bytes(v, f, c)
    assert len(compact) < 0.8 * len(full)
    assert len(compact) <= 150_000


@pytest.mark.skipif(shutil.which("node") is None or not VALIDATOR.exists(), reason="node/gltf-validator not installed")
def test_glb_files_pass_the_khronos_validator(tmp_path, candidate_mesh):
    v, f, c = candidate_mesh
    paths = []
    copies = 70_000 // len(v) + 1  # > 65535 vertices: uint32 indices
    big_v = np.concatenate([v + np.float32(0.5 * i) for i in range(copies)])
    big_f = np.concatenate([f + i * len(v) for i in range(copies)])
    for name, data in [("full.glb", mesh.glb_bytes(v, f, c)), ("compact.glb", mesh.glb_compact_bytes(v, f, c)),
                       ("nocolor.glb", mesh.glb_bytes(v, f)), ("big.glb", mesh.glb_compact_bytes(big_v, big_f))]:
        p = tmp_path / name
        p.write_bytes(data)
        paths.append(str(p))
    proc = subprocess.run(["node", str(SCRIPT), *paths], capture_output=True, text=True, timeout=60)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    for entry in report["files"]:
        assert entry["errors"] == 0 and entry["warnings"] == 0, entry


@pytest.mark.skipif(shutil.which("node") is None or not VALIDATOR.exists(), reason="node/gltf-validator not installed")
def test_validator_script_fails_on_a_broken_file(tmp_path):
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"glTF\x02\x00\x00\x00garbage")
    proc = subprocess.run(["node", str(SCRIPT), str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["ok"] is False


def test_preview_png(candidate_mesh):
    v, f, c = candidate_mesh
    png = mesh.preview_png(v, f, c, size=128)
    im = np.asarray(Image.open(io.BytesIO(png)))
    assert im.shape == (128, 128, 4)
    opaque = im[..., 3] == 255
    assert 0.1 < opaque.mean() < 0.9  # the object fills a good part of the frame
    assert im[opaque][:, :3].std() > 5  # shading and colours, not a flat silhouette


def test_engine_side_cost_per_candidate(candidate_mesh):
    """Meshing + GLB + compact GLB + preview stays within the engine's per-candidate budget."""
    s = sample_scene(12)
    logits = np.where(s.occupancy, 3.0, -3.0).astype(np.float32)
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        v, f = mesh.occupancy_to_mesh(logits, logits=True)
        c = np.full((len(v), 4), 180, np.uint8)
        mesh.glb_bytes(v, f, c)
        mesh.glb_compact_bytes(v, f, c)
        mesh.preview_png(v, f, c)
        runs.append(time.perf_counter() - t0)
    assert np.median(runs) < 0.03, f"{np.median(runs) * 1e3:.1f} ms"


def _quad(z, color):
    """Two triangles of a square in the plane z (facing +z, the viewer), with one colour."""
    v = np.array([[-1, -1, z], [1, -1, z], [1, 1, z], [-1, 1, z]], np.float32) * 0.1
    return v, np.array([[0, 1, 2], [0, 2, 3]]), np.tile(np.array([*color, 255], np.uint8), (4, 1))


@pytest.mark.parametrize("near_first", [True, False])
def test_preview_shows_the_nearest_surface_whatever_the_face_order(near_first):
    near, far = _quad(0.5, (250, 0, 0)), _quad(-0.5, (0, 0, 250))
    parts = [near, far] if near_first else [far, near]
    v = np.concatenate([parts[0][0], parts[1][0]])
    f = np.concatenate([parts[0][1], parts[1][1] + 4])
    c = np.concatenate([parts[0][2], parts[1][2]])
    im = mesh.render_preview(v, f, c, size=64, rotation=np.eye(3))
    covered = im[..., 3] == 255
    assert 0.3 < covered.mean() < 0.9
    assert (im[covered][:, 0] > 0).all() and (im[covered][:, 2] == 0).all()  # red (near) everywhere


def test_preview_png_decodes_to_the_rendered_pixels(candidate_mesh):
    v, f, c = candidate_mesh
    png = mesh.preview_png(v, f, c, size=128)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), mesh.render_preview(v, f, c, size=128))
    assert len(png) < 40_000
    noise = np.random.default_rng(0).integers(0, 256, (7, 5, 4), dtype=np.uint8)  # any RGBA image
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(mesh.png_rgba(noise)))), noise)
