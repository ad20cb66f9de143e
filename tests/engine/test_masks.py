import numpy as np
import pytest

from engine import masks


def test_rle_string_matches_pycocotools_encoding():
    # Hand-worked with pycocotools' rleToString: counts [5, 3, 7, 2] -> "5", "3", "7",
    # then 2 - 3 = -1 (difference from two places back) -> 31 + 48 = "O".
    assert masks.rle_string_from_counts([5, 3, 7, 2]) == "537O"
    assert masks.rle_counts_from_string("537O") == [5, 3, 7, 2]


def test_mask_is_column_major_and_starts_with_background():
    mask = np.array([[0, 1], [1, 1]], dtype=bool)  # column-major: 0, 1, 1, 1
    assert masks.rle_counts_from_mask(mask) == [1, 3]
    assert masks.rle_counts_from_mask(np.ones((2, 2), bool)) == [0, 4]


@pytest.mark.parametrize("seed", range(20))
def test_random_masks_round_trip(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 300, size=2)
    mask = rng.random((h, w)) < rng.random()
    assert np.array_equal(masks.decode(masks.encode(mask), h, w), mask)


def test_large_counts_round_trip():
    mask = np.zeros((2000, 3000), bool)
    mask[1500:, 2999] = True
    assert np.array_equal(masks.decode(masks.encode(mask), 2000, 3000), mask)


@pytest.mark.parametrize(
    "counts, message",
    [("5\x7f", "alphabet"), ("5" + chr(48 + 0x20), "middle of a number"), ("59", "add up to")],
)
def test_malformed_rle_is_refused(counts, message):
    with pytest.raises(masks.MaskError, match=message):
        masks.decode(counts, 2, 2)


def test_polygon_rasterises_inside_its_outline():
    mask = masks.mask_from_polygons([[10, 10, 30, 10, 30, 20, 10, 20]], 40, 50)
    assert mask[15, 20] and not mask[5, 5]
    assert masks.bbox_of(mask) == [10.0, 10.0, 21.0, 11.0]


@pytest.mark.parametrize("polygons", [[[1, 2, 3]], [[1, 2, 3, 4]], [["a", 1, 2, 3, 4, 5]], [[1, 2, 3, 4, 5, float("nan")]], []])
def test_bad_polygons_are_refused(polygons):
    with pytest.raises(masks.MaskError):
        masks.mask_from_polygons(polygons, 10, 10)


@pytest.mark.parametrize("counts, message", [
    ([2**70, 4], "integers from 0 to the image's 4 pixels"),  # beyond 64 bits
    ([0, 2**62, 2**62, 2**62, 2**62 + 4], "add up to more than the 4 pixels"),  # would wrap the int64 sum to 4
])
def test_uncompressed_rle_counts_beyond_the_image_are_refused(counts, message):
    with pytest.raises(masks.MaskError, match=message):
        masks.mask_from_coco_segmentation({"size": [2, 2], "counts": counts}, 2, 2)
