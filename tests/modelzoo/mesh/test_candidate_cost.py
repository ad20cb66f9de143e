"""The engine's work per candidate (`modelzoo.services.candidate_files_store`, through the
package's facade): mesh, GLB, compact GLB, preview."""
import time

import numpy as np

from modelzoo import mesh
from modelzoo.synth import sample_scene

pytestmark = []


def test_engine_side_cost_per_candidate():
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
