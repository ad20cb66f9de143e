"""Binary masks and their COCO encodings, in plain numpy (no pycocotools needed).

COCO RLE is column-major (Fortran order) run lengths that start with a run of zeros.
The compressed string form is pycocotools' `rleToString`: LEB128-like, 5 bits per
character offset by 48, each count after the second stored as a difference from the
count two places before it.

Ingest never needs a mask's pixels when it arrives as RLE (SA-1B, COCO): `rle_summary` checks
the runs, and gives the canonical string, the area and the bbox from them alone; the string
codecs are vectorised (a 2250x1500 SAM mask is about a thousand characters), with the plain
loop kept as the reference and as the path that words the error for malformed input.
"""
from __future__ import annotations

from dataclasses import dataclass

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


def _checked_counts(counts, height: int, width: int) -> np.ndarray:
    """Run lengths as int64, or MaskError: integers from 0 to H*W that add up to H*W."""
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
    return arr


def mask_from_rle_counts(counts: list[int], height: int, width: int) -> np.ndarray:
    arr = _checked_counts(counts, height, width)
    values = np.zeros(arr.size, dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, arr)
    return flat.reshape((height, width), order="F")


def _rle_string_loop(counts: list[int]) -> str:
    """The reference encoder (pycocotools' rleToString, one count at a time)."""
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


def _rle_counts_loop(text: str) -> list[int]:
    """The reference decoder (pycocotools' rleFrString): Python integers, exact error messages."""
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


_MAX_CHUNKS = 12  # 60 bits: every count of a real image; longer numbers take the reference loop


def rle_counts_from_string(text: str) -> list[int]:
    return _counts_array_from_string(text).tolist()


def _counts_array_from_string(text: str) -> np.ndarray:
    return _decoded_string(text)[0]


def _decoded_string(text: str) -> tuple[np.ndarray, bool]:
    """COCO compressed RLE string -> (the run lengths as int64, whether every number is written in
    as few characters as the encoder writes it), vectorised. Anything unusual (a character outside
    the alphabet, a truncated number, a number over 60 bits) is decoded by the reference loop,
    which raises the worded MaskError or returns the exact values."""
    try:
        chars = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        return np.asarray(_rle_counts_loop(text), dtype=object), False
    if chars.size == 0:
        return np.zeros(0, dtype=np.int64), True
    more = (chars & 0x20) != 0
    if chars.min() < 0 or chars.max() > 63 or more[-1]:
        return np.asarray(_rle_counts_loop(text), dtype=object), False
    ends = np.flatnonzero(~more)  # the last character of each number
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > _MAX_CHUNKS:
        return np.asarray(_rle_counts_loop(text), dtype=object), False
    shift = 5 * (np.arange(chars.size) - np.repeat(starts, lengths))
    values = np.add.reduceat((chars & 0x1F) << shift, starts)
    negative = (chars[ends] & 0x10) != 0
    values[negative] |= np.left_shift(-1, 5 * lengths[negative])
    # A number's last character is redundant when it only repeats the sign of the one before
    # (0 after a positive chunk, 31 after a negative one): the encoder would have stopped earlier.
    long = ends[lengths > 1]
    last, before_negative = chars[long] & 0x1F, (chars[long - 1] & 0x10) != 0
    minimal = not np.any(np.where(before_negative, last == 0x1F, last == 0))
    # counts[i] += counts[i - 2] for i > 2: running sums over the odd places and the even ones from 2
    values[1::2] = np.cumsum(values[1::2])
    values[2::2] = np.cumsum(values[2::2])
    return values, minimal


def rle_string_from_counts(counts) -> str:
    """Run lengths -> COCO compressed RLE string (pycocotools' rleToString), vectorised."""
    try:
        x = np.asarray(counts, dtype=np.int64)
    except OverflowError:
        return _rle_string_loop(counts)
    if x.size == 0:
        return ""
    diff = x.copy()
    diff[3:] -= x[1:-2]  # from the fourth count on, the difference from the count two places back
    chars = np.zeros((x.size, 13), dtype=np.uint8)  # 13 chunks of 5 bits hold any int64
    emitted = np.zeros((x.size, 13), dtype=bool)
    active = np.ones(x.size, dtype=bool)
    for j in range(13):
        c = diff & 0x1F
        diff = diff >> 5
        more = active & np.where((c & 0x10) != 0, diff != -1, diff != 0)
        chars[:, j] = c + 48 + (more << 5)
        emitted[:, j] = active
        active = more
        if not active.any():
            break
    return chars[emitted].tobytes().decode("ascii")


def encode(mask: np.ndarray) -> str:
    """Binary mask (H x W) -> COCO compressed RLE string."""
    return rle_string_from_counts(rle_counts_from_mask(mask))


def decode(counts: str, height: int, width: int) -> np.ndarray:
    """COCO compressed RLE string -> binary mask (H x W, bool)."""
    return mask_from_rle_counts(_counts_array_from_string(counts), height, width)


@dataclass(frozen=True)
class RleSummary:
    """What ingest stores of a mask: its canonical compressed RLE, its area and COCO bbox."""

    counts: str
    area: int
    bbox: list[float]


def canonical_counts(counts: np.ndarray) -> np.ndarray:
    """Valid run lengths -> the ones `rle_counts_from_mask` gives for the same pixels: runs of
    zero length inside merge their neighbours, trailing zeros go (a leading 0 stays, meaning
    the first pixel is the object's)."""
    if counts.size <= 1 or counts[1:].all():
        return counts
    values = (np.arange(counts.size) & 1)[counts > 0]
    lengths = counts[counts > 0]
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    runs = np.add.reduceat(lengths, starts)
    return runs if values[0] == 0 else np.concatenate(([0], runs))


def rle_summary(counts: np.ndarray, height: int, width: int, *, text: str | None = None) -> RleSummary:
    """The summary of a mask from its (checked) run lengths, without drawing its pixels; the area
    is 0 for an empty mask (the bbox then [0, 0, 0, 0]). `text`: the string these counts were
    decoded from, when it is written as the encoder writes it (it is then the canonical string
    if the counts are canonical, and is not encoded again)."""
    counts = np.asarray(counts, dtype=np.int64)
    runs = canonical_counts(counts)
    string = text if text is not None and runs is counts else rle_string_from_counts(runs)
    fg = runs[1::2]
    area = int(fg.sum())
    if area == 0:
        return RleSummary(counts=string, area=0, bbox=[0.0, 0.0, 0.0, 0.0])
    first = (np.cumsum(runs) - runs)[1::2]  # the first pixel of each object run (column-major)
    last = first + fg - 1
    col_first, row_first = np.divmod(first, height)
    col_last, row_last = np.divmod(last, height)
    one_column = col_first == col_last  # a run over two columns or more covers the top and bottom rows
    top = int(np.where(one_column, row_first, 0).min())
    bottom = int(np.where(one_column, row_last, height - 1).max())
    left, right = int(col_first.min()), int(col_last.max())
    return RleSummary(counts=string, area=area,
                      bbox=[float(left), float(top), float(right - left + 1), float(bottom - top + 1)])


def summary_from_mask(mask: np.ndarray) -> RleSummary:
    height, width = mask.shape
    return rle_summary(np.asarray(rle_counts_from_mask(mask), dtype=np.int64), height, width)


def rle_summary_from_coco_segmentation(segmentation, height: int, width: int) -> RleSummary:
    """A COCO `segmentation` (polygons, uncompressed or compressed RLE) -> its summary; an RLE is
    checked and summarised from its runs, never drawn."""
    if isinstance(segmentation, dict):
        counts = _rle_counts_of(segmentation, height, width)
        text = None
        if isinstance(counts, tuple):  # a string: (runs, written as the encoder writes it)
            counts, minimal = counts
            text = segmentation["counts"] if minimal else None
        return rle_summary(_checked_counts(counts, height, width), height, width, text=text)
    return summary_from_mask(mask_from_coco_segmentation(segmentation, height, width))


def _rle_counts_of(segmentation: dict, height: int, width: int):
    size = segmentation.get("size")
    counts = segmentation.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise MaskError("RLE 'size' must be [height, width] as two integers.")
    if list(size) != [height, width]:
        raise MaskError(f"RLE size {size[0]}x{size[1]} differs from the image's {height}x{width}.")
    if isinstance(counts, str):
        return _decoded_string(counts)
    if isinstance(counts, list) and all(isinstance(v, int) for v in counts):
        return counts
    raise MaskError("RLE 'counts' must be a string (compressed) or a list of integers (uncompressed).")


def mask_from_coco_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO `segmentation` (polygons, uncompressed RLE or compressed RLE) -> binary mask."""
    if isinstance(segmentation, dict):
        counts = _rle_counts_of(segmentation, height, width)
        return mask_from_rle_counts(counts[0] if isinstance(counts, tuple) else counts, height, width)
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
