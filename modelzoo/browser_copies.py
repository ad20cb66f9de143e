"""The browser copies' sizes on the wire for the issue's targets (a textured candidate at most 1 MB,
a 300k-Gaussian splat at most 4 MB): candidates as the real backends hand them over, encoded by the
engine (`modelzoo.representations.encode_candidate`). bench/workbench.py reports these figures
beside what the browser fetched; `python -m modelzoo.browser_copies` prints them.

* textured: the TRELLIS.2 adapter on its stand-in, 2048 px base colour and metallic-roughness textures
  (TRELLIS.2's example writes 4096 px; the compact copy keeps 1024 px WebP either way);
* splat: `n` Gaussians on a bumpy surface with photo-like colour variation, SH degree 0 (SAM 3D's).
"""
from __future__ import annotations

import json

import numpy as np

from modelzoo.generators.base import CandidateOutput, GenerationRequest, Layout
from modelzoo.representations import EncodedFiles, encode_candidate
from modelzoo.splats.gaussians import SH_C0, gaussians_on_surface

LAYOUT = Layout(rotation=(1.0, 0.0, 0.0, 0.0), translation=(0.0, 0.0, -2.0), scale=(0.5, 0.5, 0.5))


def _photo(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:240, 0:320]
    image = np.stack([120 + 80 * np.sin(xx / 17.0), 90 + 60 * np.cos(yy / 11.0), 60 + 40 * np.sin((xx + yy) / 23.0)],
                     axis=2) + rng.normal(0, 12, (240, 320, 3))
    mask = (((xx - 160) / 90.0) ** 2 + ((yy - 120) / 80.0) ** 2) < 1
    return np.clip(image, 0, 255).astype(np.uint8), mask


def textured_candidate(seed: int = 0, texture_size: int = 2048) -> EncodedFiles:
    from modelzoo.generators.registry import load_generator

    image, mask = _photo(seed)
    generator = load_generator(backend="trellis2", config={"standin": True, "texture_size": texture_size})
    output = generator.generate(GenerationRequest(image=image, mask=mask, seeds=[seed]))[0]
    return encode_candidate(output)


def splat_candidate(n: int = 300_000, seed: int = 0) -> EncodedFiles:
    from modelzoo.generators.standins import blob_mesh

    v, f, uv = blob_mesh(seed, rings=96, segments=128)
    rng = np.random.default_rng(seed)
    shade = 0.5 + 0.35 * np.sin(uv[:, :1] * 40) * np.cos(uv[:, 1:] * 25) + rng.normal(0, 0.05, (len(v), 1))
    colours = np.clip(np.concatenate([shade * [220, 150, 90], np.ones((len(v), 1)) * 255], axis=1), 0, 255)
    g = gaussians_on_surface(v, f, colours.astype(np.uint8), n, seed=seed)
    g.sh_dc += rng.normal(0, 0.05 / SH_C0, g.sh_dc.shape).astype(np.float32)  # texture within a face
    g.scales += rng.normal(0, 0.2, g.scales.shape).astype(np.float32)  # as optimised splats vary
    return encode_candidate(CandidateOutput(seed=seed, splat=g, layout=LAYOUT))


def browser_copy_sizes(n_gaussians: int = 300_000) -> dict:
    """{"textured_kb_per_candidate", "splat_kb_per_candidate"} (the compact copies, kB = 1000 bytes),
    with the full files' sizes beside them."""
    textured, splat = textured_candidate(), splat_candidate(n_gaussians)
    return {"textured_kb_per_candidate": round(len(textured.glb_compact) / 1000, 1),
            "textured_full_kb": round(len(textured.glb) / 1000, 1), "textured_faces": textured.num_faces,
            "splat_kb_per_candidate": round(len(splat.splat_spz) / 1000, 1),
            "splat_ply_kb": round(len(splat.splat_ply) / 1000, 1), "splat_gaussians": splat.num_gaussians}


if __name__ == "__main__":
    print(json.dumps(browser_copy_sizes()))
