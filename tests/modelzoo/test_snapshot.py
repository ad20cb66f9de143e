"""The trainer's snapshot reader decodes the masks the engine exports.

Masks travel as COCO compressed RLE, written by `engine.masks` and read by the trainer with
pycocotools, the reference implementation: the two must agree bit for bit, both ways.
"""
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from engine import masks
from modelzoo.training.snapshot import _mask

# pycocotools 2.0.11 under numpy 2 warns about its own __array__; nothing to act on here.
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")]


def _masks():
    rng = np.random.default_rng(0)
    yield "empty", np.zeros((5, 7), bool)
    yield "full", np.ones((9, 4), bool)
    yield "one pixel off", np.zeros((1, 1), bool)
    yield "one pixel on", np.ones((1, 1), bool)
    yield "one row", rng.random((1, 13)) < 0.5
    yield "one column", rng.random((17, 1)) < 0.5
    corner = np.zeros((31, 29), bool)
    corner[-1, -1] = True  # a run of zeros longer than the others, then a single pixel
    yield "last pixel", corner
    for i in range(8):  # odd sizes, densities from sparse to nearly full, some starting with 1
        h, w = rng.integers(1, 300, size=2) | 1
        yield f"random {i}", rng.random((h, w)) < rng.random()


@pytest.mark.parametrize("mask", [pytest.param(m, id=name) for name, m in _masks()])
def test_engine_rle_decodes_identically_with_pycocotools(mask):
    h, w = mask.shape
    counts = masks.encode(mask)
    assert np.array_equal(coco_mask.decode({"size": [h, w], "counts": counts}), mask)
    assert np.array_equal(_mask({"mask": {"size": [h, w], "counts": counts}}), mask)
    # and pycocotools' own string for the mask is the engine's
    assert coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))["counts"].decode() == counts
