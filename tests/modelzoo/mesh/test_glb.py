"""GLB files: round trips, size of the compact copy, the Khronos validator."""
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import trimesh

from modelzoo.mesh.glb import glb_bytes, glb_compact_bytes, read_glb
from modelzoo.synth import NOMINAL_HALF_SIZE

pytestmark = []

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "frontend" / "scripts" / "validate-gltf.mjs"
VALIDATOR = ROOT / "frontend" / "node_modules" / "gltf-validator"


def test_glb_roundtrip(candidate_mesh):
    v, f, c = candidate_mesh
    for writer in (glb_bytes, glb_compact_bytes):
        data = writer(v, f, c)
        rv, rf, rc = read_glb(data)
        assert np.array_equal(rf, f)
        assert np.abs(rv - v).max() < 1e-4 * NOMINAL_HALF_SIZE * 10
        assert np.array_equal(rc, c)
        # trimesh reads it too, +Y up, metres
        scene = trimesh.load(io.BytesIO(data), file_type="glb")
        assert scene is not None


def test_compact_glb_is_small(candidate_mesh):
    v, f, c = candidate_mesh
    full, compact = glb_bytes(v, f, c), glb_compact_bytes(v, f, c)
    assert len(compact) < 0.8 * len(full)
    assert len(compact) <= 150_000


@pytest.mark.skipif(shutil.which("node") is None or not VALIDATOR.exists(), reason="node/gltf-validator not installed")
def test_glb_files_pass_the_khronos_validator(tmp_path, candidate_mesh):
    v, f, c = candidate_mesh
    paths = []
    copies = 70_000 // len(v) + 1  # > 65535 vertices: uint32 indices
    big_v = np.concatenate([v + np.float32(0.5 * i) for i in range(copies)])
    big_f = np.concatenate([f + i * len(v) for i in range(copies)])
    for name, data in [("full.glb", glb_bytes(v, f, c)), ("compact.glb", glb_compact_bytes(v, f, c)),
                       ("nocolor.glb", glb_bytes(v, f)), ("big.glb", glb_compact_bytes(big_v, big_f))]:
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
