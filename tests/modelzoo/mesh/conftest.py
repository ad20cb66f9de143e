"""Fixtures of the mesh tests: a candidate-like mesh (a smoothed synthetic scene, two colours)."""
import numpy as np
import pytest
from scipy import ndimage

from modelzoo.mesh.meshing import occupancy_to_mesh
from modelzoo.synth import sample_scene


@pytest.fixture(scope="package")
def candidate_mesh():
    s = sample_scene(11)
    prob = ndimage.gaussian_filter(s.occupancy.astype(np.float32), 0.6)
    v, f = occupancy_to_mesh(prob)
    colors = np.tile(np.array([200, 90, 30, 255], np.uint8), (len(v), 1))
    colors[: len(v) // 2, :3] = (40, 160, 220)
    return v, f, colors
