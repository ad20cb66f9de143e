"""Binary masks and their COCO encodings, in plain numpy (no pycocotools needed).

COCO RLE is column-major (Fortran order) run lengths that start with a run of zeros.
The compressed string form is pycocotools' `rleToString`: LEB128-like, 5 bits per
character offset by 48, each count after the second stored as a difference from the
count two places before it.
"""
from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw


class MaskError(ValueError):
    """The mask data is malformed; the message says how."""


def rle_counts_from_mask(mask: np.ndarray) -> list[int]:
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0] + counts
    return counts


def mask_from_rle_counts(counts: list[int], height: int, width: int) -> np.ndarray:
    total = height * width
    try:
        arr = np.asarray(counts, dtype=np.int64)
    except OverflowError:  # a count beyond 64 bits: no image has that many pixels
        raise MaskError(f"RLE counts must be integers from 0 to the image's {total} pixels.") from None
    if arr.size and arr.min() < 0:
        raise MaskError("RLE counts must not be negative.")
    if arr.size and arr.max() > total:  # before the sum, which a crafted list could wrap around
        raise MaskError(f"RLE counts add up to more than the {total} pixels of the size {height}x{width}.")
    if int(arr.sum()) != total:
        raise MaskError(f"RLE counts add up to {int(arr.sum())} pixels but the size {height}x{width} has {total}.")
    values = np.zeros(arr.size, dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, arr)
    return flat.reshape((height, width), order="F")


def rle_string_from_counts(counts: list[int]) -> str:
    out = []
    for i, count in enumerate(counts):
        x = int(count)
        if i > 2:  # pycocotools' quirk: i > 2, not i >= 2
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def rle_counts_from_string(text: str) -> list[int]:
    counts: list[int] = []
    p = 0
    n = len(text)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise MaskError("RLE string ends in the middle of a number.")
            c = ord(text[p]) - 48
            if c < 0 or c > 63:
                raise MaskError(f"RLE string has a character outside the COCO alphabet at position {p}.")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> str:
    """Binary mask (H x W) -> COCO compressed RLE string."""
    return rle_string_from_counts(rle_counts_from_mask(mask))


def decode(counts: str, height: int, width: int) -> np.ndarray:
    """COCO compressed RLE string -> binary mask (H x W, bool)."""
    return mask_from_rle_counts(rle_counts_from_string(counts), height, width)


def mask_from_coco_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO `segmentation` (polygons, uncompressed RLE or compressed RLE) -> binary mask."""
    if isinstance(segmentation, dict):
        size = segmentation.get("size")
        counts = segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
            raise MaskError("RLE 'size' must be [height, width] as two integers.")
        if list(size) != [height, width]:
            raise MaskError(f"RLE size {size[0]}x{size[1]} differs from the image's {height}x{width}.")
        if isinstance(counts, str):
            return decode(counts, height, width)
        if isinstance(counts, list) and all(isinstance(v, int) for v in counts):
            return mask_from_rle_counts(counts, height, width)
        raise MaskError("RLE 'counts' must be a string (compressed) or a list of integers (uncompressed).")
    if isinstance(segmentation, list):
        return mask_from_polygons(segmentation, height, width)
    raise MaskError("'segmentation' must be a list of polygons or an RLE object.")


def mask_from_polygons(polygons, height: int, width: int) -> np.ndarray:
    """COCO polygons ([[x1, y1, x2, y2, ...], ...], pixel coordinates) -> binary mask."""
    if not polygons:
        raise MaskError("Polygon list is empty.")
    canvas = PILImage.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise MaskError("Each polygon must be a flat list of at least 3 (x, y) pairs.")
        coords = np.asarray(polygon, dtype=np.float64) if all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in polygon
        ) else None
        if coords is None or not np.all(np.isfinite(coords)):
            raise MaskError("Polygon coordinates must be finite numbers.")
        draw.polygon([tuple(pt) for pt in coords.reshape(-1, 2)], fill=1)
    return np.asarray(canvas, dtype=bool)


def bbox_of(mask: np.ndarray) -> list[float]:
    """COCO bbox [x, y, width, height] of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def mask_from_png(image: PILImage.Image) -> np.ndarray:
    """A binary PNG mask -> bool array.

    The rule: one channel (modes 1, L, P, or LA/RGB/RGBA whose colour channels are equal,
    alpha ignored), holding at most two values: 0 for background and one other value
    (1 or 255 usually) for the object. Anti-aliased or multi-label PNGs, with more values,
    are refused rather than guessed at.
    """
    if image.mode == "1":
        return np.asarray(image, dtype=bool)
    if image.mode == "P":
        image = image.convert("L") if "transparency" not in image.info else image.convert("LA")
    if image.mode in ("I;16", "I", "L"):
        arr = np.asarray(image)
    elif image.mode in ("LA", "RGB", "RGBA"):
        arr = np.asarray(image)
        colour = arr[..., :1] if image.mode == "LA" else arr[..., :3]
        if colour.shape[-1] == 3 and not (
            np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])
        ):
            raise MaskError("Mask PNG is in colour; a mask must be grey (one channel, 0 and one other value).")
        arr = colour[..., 0]
    else:
        raise MaskError(f"Mask PNG mode {image.mode} is not supported; save it as 8-bit grey.")
    values = np.unique(arr)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6])
        raise MaskError(
            f"Mask PNG is not binary: it holds values {shown}{'...' if values.size > 6 else ''}; "
            "use 0 for background and one other value for the object."
        )
    return arr > 0
