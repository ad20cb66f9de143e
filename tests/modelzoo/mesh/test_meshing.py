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


def test_cell_occupancy_of_a_shape_mesh_is_the_pretraining_occupancy():
    """A training target voxelised from a mesh must be the grid the shape encoder learned from
    (cell centres inside), not the surface-touching shell of `mesh_to_occupancy`, which made every
    SFT target a quarter fatter than the shape it showed."""
    from modelzoo.mesh.meshing import mesh_to_cell_occupancy, mesh_to_occupancy
    from modelzoo.synth import sample_scene

    for seed in (1, 2, 3, 4):
        s = sample_scene(900_000_000 + seed, domain="household")
        v, f = s.gt_mesh(96)  # metres; the occupancy grid spans +-NOMINAL_HALF_SIZE
        cells = mesh_to_cell_occupancy(v, f, 32)
        shell = mesh_to_occupancy(v, f, 32)
        iou = (cells & s.occupancy).sum() / (cells | s.occupancy).sum()
        assert iou > 0.93, (s.shape.describe(), iou)
        assert abs(cells.sum() / s.occupancy.sum() - 1) < 0.06
        assert shell.sum() / s.occupancy.sum() > 1.1  # what the targets were before


def test_cell_occupancy_survives_a_hole_in_the_mesh():
    """Three axes vote: one missing triangle spoils the rays through it along one axis only."""
    from modelzoo.mesh.meshing import mesh_to_cell_occupancy

    box = trimesh.creation.box(extents=(1.0, 0.6, 0.8))
    whole = mesh_to_cell_occupancy(box.vertices, box.faces, 32, half_size=1.0)
    holed = mesh_to_cell_occupancy(box.vertices, box.faces[1:], 32, half_size=1.0)
    # Cell centres sit at +-(k + 0.5) / 16: 16 of them within +-0.5, 10 within +-0.3, 12 within +-0.4.
    assert whole.sum() == 16 * 10 * 12
    assert (holed == whole).mean() > 0.999
