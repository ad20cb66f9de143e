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


def _random_mask(rng) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(1, 80, size=2))
    if rng.random() < 0.5:
        return rng.random((h, w)) < rng.random()
    mask = np.zeros((h, w), bool)  # a block: runs over several columns, top and bottom rows
    mask[rng.integers(h):rng.integers(h) + 1 + h // 2, rng.integers(w):] = True
    return mask


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_codecs_match_pycocotools_and_the_reference_loops(seed):
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(seed)
    for _ in range(60):
        mask = _random_mask(rng)
        reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
        counts = masks.rle_counts_from_mask(mask)
        assert masks.encode(mask) == reference == masks._rle_string_loop(counts)
        assert masks.rle_counts_from_string(reference) == masks._rle_counts_loop(reference) == counts


@pytest.mark.parametrize("seed", range(5))
def test_rle_summary_is_what_the_pixels_give_without_drawing_them(seed):
    """Ingest summarises an RLE from its runs: the same string, area and bbox as decoding it to
    pixels and encoding them again, for canonical input and for input that is not (runs of zero
    length, a number written with a redundant character)."""
    rng = np.random.default_rng(seed)
    for _ in range(60):
        mask = _random_mask(rng)
        if not mask.any():
            continue
        h, w = mask.shape
        expected = (masks.encode(mask), int(mask.sum()), masks.bbox_of(mask))
        counts = masks.rle_counts_from_mask(mask)
        padded = counts[:1] + [x for c in counts[1:] for x in (c, 0, 0)] + [0]  # same pixels
        first = ord(expected[0][0]) - 48
        redundant = [chr(first + 48 + 0x20) + "0" + expected[0][1:]] if first < 0x10 else []
        for given in [expected[0], padded, masks._rle_string_loop(padded), *redundant]:
            summary = masks.rle_summary_from_coco_segmentation({"size": [h, w], "counts": given}, h, w)
            assert (summary.counts, summary.area, summary.bbox) == expected, given


def test_rle_summary_of_a_mask_across_the_last_column():
    mask = np.zeros((2000, 3000), bool)
    mask[1500:, 2998:] = True
    summary = masks.rle_summary_from_coco_segmentation({"size": [2000, 3000], "counts": masks.encode(mask)},
                                                       2000, 3000)
    assert summary.area == 1000 and summary.bbox == [2998.0, 1500.0, 2.0, 500.0]
