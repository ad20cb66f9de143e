"""The preview: what the rasteriser draws, and the PNG it is encoded to."""
import io

import numpy as np
import pytest
from PIL import Image

from modelzoo.mesh.preview import png_rgba, preview_png, render_preview

pytestmark = []


def test_preview_png(candidate_mesh):
    v, f, c = candidate_mesh
    png = preview_png(v, f, c, size=128)
    im = np.asarray(Image.open(io.BytesIO(png)))
    assert im.shape == (128, 128, 4)
    opaque = im[..., 3] == 255
    assert 0.1 < opaque.mean() < 0.9  # the object fills a good part of the frame
    assert im[opaque][:, :3].std() > 5  # shading and colours, not a flat silhouette


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
    im = render_preview(v, f, c, size=64, rotation=np.eye(3))
    covered = im[..., 3] == 255
    assert 0.3 < covered.mean() < 0.9
    assert (im[covered][:, 0] > 0).all() and (im[covered][:, 2] == 0).all()  # red (near) everywhere


def test_preview_png_decodes_to_the_rendered_pixels(candidate_mesh):
    v, f, c = candidate_mesh
    png = preview_png(v, f, c, size=128)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), render_preview(v, f, c, size=128))
    assert len(png) < 40_000
    noise = np.random.default_rng(0).integers(0, 256, (7, 5, 4), dtype=np.uint8)  # any RGBA image
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_rgba(noise)))), noise)
