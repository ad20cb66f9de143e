"""Checks that turn untrusted bytes into validated arrays, or an IngestRejected saying why."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from engine import masks as mask_codec
from engine.files import sha256_bytes

ALLOWED_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


class IngestRejected(Exception):
    """One item (an image and its masks) cannot be imported; the message says why."""


@dataclass
class MaskInput:
    """One object mask as it arrived: exactly one of `png_bytes`, `segmentation`, `array`."""

    source_name: str
    label: str = ""
    png_bytes: bytes | None = None
    segmentation: object | None = None
    array: np.ndarray | None = None
    provenance: dict = field(default_factory=dict)


@dataclass
class ItemInput:
    """One image with its masks, as a reader or an upload produced it."""

    name: str
    image_bytes: bytes
    masks: list[MaskInput]
    depth_bytes: bytes | None = None
    depth_name: str = ""
    intrinsics: list | None = None
    source: dict = field(default_factory=dict)


@dataclass
class ValidImage:
    data: bytes
    sha256: str
    width: int
    height: int
    extension: str
    pil: PILImage.Image  # the decoded pixels, for the thumbnail; a JPEG's at a reduced scale


@dataclass
class ValidMask:
    rle_counts: str
    rle_sha256: str
    bbox: list[float]
    area: int
    label: str
    provenance: dict


def _pil_decoded(data: bytes, where: str, *, formats, what: str, formats_text: str,
                 draft: tuple[int, int] | None = None) -> PILImage.Image:
    """The decoded image, or IngestRejected saying what is wrong. The size is checked from the
    header before decoding (INGEST_MAX_PIXELS; PIL's own bomb guard as well), so a small file
    that declares a huge image is refused without being decoded.

    `draft`: a JPEG is decoded at the smallest scale (1/2, 1/4, 1/8) still at least its size
    fitted into that box;
    every byte of its data is still read (a truncated or corrupt file is refused just the same),
    only the inverse DCT and colour conversion of the full size are saved. The header's size is
    kept in `pil.info["header_size"]`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            pil = PILImage.open(io.BytesIO(data))
            width, height = pil.size
            if width * height > settings.INGEST_MAX_PIXELS:
                raise IngestRejected(
                    f"{where}: {width}x{height} is {width * height:,} pixels, above the limit of "
                    f"{settings.INGEST_MAX_PIXELS:,} (INGEST_MAX_PIXELS)."
                )
            if pil.format not in formats:
                raise IngestRejected(f"{where}: format {pil.format} is not accepted; {formats_text}.")
            pil.info["header_size"] = (width, height)
            if draft is not None and pil.format == "JPEG":
                fit = min(1.0, draft[0] / width, draft[1] / height)  # the image's size fitted into the box
                pil.draft("RGB" if pil.mode not in ("RGB", "L") else pil.mode,
                          (max(1, int(width * fit)), max(1, int(height * fit))))
            pil.load()
    except IngestRejected:
        raise
    except UnidentifiedImageError:
        raise IngestRejected(f"{where}: not {what}.") from None
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise IngestRejected(f"{where}: refused as a decompression bomb (too many pixels).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise IngestRejected(f"{where}: the file is truncated or corrupt ({exc}).") from None
    return pil


def validate_image(data: bytes, name: str) -> ValidImage:
    if not data:
        raise IngestRejected(f"{name}: the file is empty.")
    # Ingest keeps the file as it came and draws only the thumbnail from the pixels: a JPEG is
    # decoded at the scale PIL's thumbnail() would draft it to (twice the thumbnail's size).
    thumb = 2 * settings.THUMBNAIL_SIZE
    pil = _pil_decoded(data, name, formats=ALLOWED_FORMATS, what="an image (JPEG, PNG or WebP expected)",
                       formats_text="use JPEG, PNG or WebP", draft=(thumb, thumb))
    (width, height), fmt = pil.info["header_size"], pil.format
    if width < 8 or height < 8:
        raise IngestRejected(f"{name}: {width}x{height} is too small; at least 8x8 pixels.")
    if pil.mode not in ("RGB", "L"):
        pil = pil.convert("RGB")
    return ValidImage(
        data=data,
        sha256=sha256_bytes(data),
        width=width,
        height=height,
        extension=ALLOWED_FORMATS[fmt],
        pil=pil,
    )


def validate_mask(mask_input: MaskInput, width: int, height: int, image_name: str) -> ValidMask:
    """A mask checked and summarised once: an RLE (SA-1B, COCO) from its runs, without drawing its
    pixels; a PNG, a polygon or an array from its pixels."""
    where = f"{image_name}, mask {mask_input.source_name}"
    try:
        if mask_input.segmentation is not None and mask_input.png_bytes is None:
            summary = mask_codec.rle_summary_from_coco_segmentation(mask_input.segmentation, height, width)
        else:
            if mask_input.png_bytes is not None:
                array = _png_mask(mask_input.png_bytes, where)
            elif mask_input.array is not None:
                array = np.asarray(mask_input.array, dtype=bool)
            else:
                raise IngestRejected(f"{where}: no mask data.")
            if array.shape != (height, width):
                raise IngestRejected(
                    f"{where}: the mask is {array.shape[1]}x{array.shape[0]} but the image is {width}x{height}."
                )
            summary = mask_codec.summary_from_mask(array)
    except mask_codec.MaskError as exc:
        raise IngestRejected(f"{where}: {exc}") from None
    if summary.area == 0:
        raise IngestRejected(f"{where}: the mask is empty (no object pixels).")
    return ValidMask(
        rle_counts=summary.counts,
        rle_sha256=sha256_bytes(summary.counts.encode()),
        bbox=summary.bbox,
        area=summary.area,
        label=(mask_input.label or "")[:200],
        provenance=mask_input.provenance,
    )


def _png_mask(data: bytes, where: str) -> np.ndarray:
    pil = _pil_decoded(data, where, formats=("PNG",), what="a PNG image", formats_text="masks must be PNG files")
    return mask_codec.mask_from_png(pil)


def validate_depth(data: bytes, name: str, width: int, height: int) -> np.ndarray:
    """A depth map -> float32 metres. Accepts .npy (float, metres) or a 16-bit PNG in millimetres."""
    try:
        if data[:6] == b"\x93NUMPY":
            depth = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            pil = PILImage.open(io.BytesIO(data))
            if pil.format != "PNG" or pil.mode not in ("I;16", "I", "I;16B"):
                raise IngestRejected(
                    f"{name}: a depth map is a float32 .npy in metres or a 16-bit PNG in millimetres."
                )
            depth = np.asarray(pil, dtype=np.float32) / 1000.0
    except IngestRejected:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of untrusted bytes is a rejection
        raise IngestRejected(f"{name}: cannot read the depth map ({exc}).") from None
    if depth.ndim != 2 or depth.shape != (height, width):
        raise IngestRejected(f"{name}: depth map shape {depth.shape} differs from the image's ({height}, {width}).")
    if not np.issubdtype(depth.dtype, np.floating) and not np.issubdtype(depth.dtype, np.integer):
        raise IngestRejected(f"{name}: depth values must be numbers.")
    depth = depth.astype(np.float32)
    if not np.all(np.isfinite(depth)) or depth.min() < 0:
        raise IngestRejected(f"{name}: depth values must be finite and non-negative (0 = unknown).")
    return depth


INTRINSICS_FORM = "a 3x3 matrix [[fx,0,cx],[0,fy,cy],[0,0,1]] of numbers with fx, fy > 0"


def validate_intrinsics(value, name: str) -> list | None:
    """The camera matrix as a 3x3 list of floats; the rows and the values are checked one by one
    (strings, ragged rows, numbers beyond a float) before numpy sees them."""
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(r, list) and len(r) == 3 for r in value)):
        raise IngestRejected(f"{name}: intrinsics must be {INTRINSICS_FORM}; got rows of lengths "
                             f"{_row_lengths(value)}.")
    for r, row in enumerate(value):
        for c, v in enumerate(row):
            if type(v) not in (int, float) or not _is_finite_float(v):
                raise IngestRejected(f"{name}: intrinsics[{r}][{c}] is {v!r:.40}, not a finite number; "
                                     f"intrinsics must be {INTRINSICS_FORM}.")
    arr = np.asarray(value, dtype=np.float64)
    if arr[0, 0] <= 0 or arr[1, 1] <= 0:
        raise IngestRejected(f"{name}: fx and fy (intrinsics[0][0], [1][1]) must be positive; "
                             f"intrinsics must be {INTRINSICS_FORM}.")
    return arr.tolist()


def _row_lengths(value) -> str:
    if not isinstance(value, list):
        return "none (not a list)"
    return "[" + ", ".join(str(len(r)) if isinstance(r, list) else "not a list" for r in value[:10]) + \
        (", ...]" if len(value) > 10 else "]")


def _is_finite_float(v) -> bool:
    try:
        return np.isfinite(float(v))
    except OverflowError:  # an integer beyond a float
        return False
