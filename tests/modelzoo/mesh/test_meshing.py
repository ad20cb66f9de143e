"""Meshing: occupancy grids to watertight, outward, metric meshes."""
import numpy as np
import pytest
import trimesh

from modelzoo.mesh.meshing import occupancy_to_mesh
from modelzoo.synth import NOMINAL_HALF_SIZE
from modelzoo.synth.shapes import grid_points

pytestmark = []


def sphere_occupancy(radius=0.6, res=32, center=(0.0, 0.0, 0.0)):
    p = grid_points(res)
    return (np.linalg.norm(p - np.asarray(center), axis=1) < radius).reshape(res, res, res).astype(np.float32)


def test_sphere_mesh_is_watertight_outward_and_metric():
    v, f = occupancy_to_mesh(sphere_occupancy(0.6))
    m = trimesh.Trimesh(v, f, process=False)
    assert m.is_watertight
    assert m.volume > 0  # outward winding
    radius_m = 0.6 * NOMINAL_HALF_SIZE
    assert np.linalg.norm(v, axis=1).mean() == pytest.approx(radius_m, rel=0.05)
    assert m.volume == pytest.approx(4 / 3 * np.pi * radius_m**3, rel=0.1)


def test_small_floaters_are_removed():
    occ = np.maximum(sphere_occupancy(0.6), sphere_occupancy(0.08, center=(0.85, 0.85, 0.85)))
    v, f = occupancy_to_mesh(occ)
    assert len(trimesh.Trimesh(v, f, process=False).split(only_watertight=False)) == 1
    assert np.abs(v).max() < 0.7 * NOMINAL_HALF_SIZE


def test_logits_input_and_empty_grid():
    logits = np.where(sphere_occupancy(0.5) > 0, 4.0, -4.0)
    v, f = occupancy_to_mesh(logits, logits=True)
    assert len(f) > 100
    with pytest.raises(ValueError):
        occupancy_to_mesh(np.zeros((32, 32, 32)))
