"""Readers: turn an import source into ItemInputs (or IngestRejected for a bad entry).

Formats (see the README, "Ingest formats"):

* folder  -- ROOT/images/<stem>.<jpg|jpeg|png|webp>, one binary PNG per object in
             ROOT/masks/<stem>/<label>.png (a trailing _<n> is dropped from the label, so
             cup_1.png and cup_2.png are two cups), optional ROOT/depth/<stem>.npy (float32
             metres) or .png (16-bit millimetres).
* coco    -- a COCO instances JSON (polygons, RLE or compressed RLE), images found
             relative to --images (default: the JSON's folder, then its images/ folder).
* sa1b    -- SA-1B: one <stem>.json per image beside <stem>.jpg, as written by SAM's
             automatic mask generator: {"image": {...}, "annotations": [...]}.

Every path named by the data is resolved inside the import root; one that escapes it
(../, an absolute path, a symlink out) is refused. Every field read from a document is
type-checked first (ids are integers or strings, names strings): a document with a list
where an id belongs is refused naming the file, the field and what was found.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from engine import jsonio
from engine.bounds import BIGINT_MAX, BIGINT_MIN
from engine.errors import ValidationFailed
from engine.files import without_server_paths
from engine.ingest.validation import IngestRejected, ItemInput, MaskInput

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
FORMATS = ("folder", "coco", "sa1b")


class SourceError(Exception):
    """The import source as a whole cannot be read (wrong format, missing folder)."""


@dataclass
class Source:
    """A source's entries in order, each named (an image file, an SA-1B JSON, `images[i]` of a
    COCO file; stray masks and annotations too): an ingest job cuts the names into batches and a
    batch reads its own with `read_source(..., only=names)`."""

    names: list[str]
    entries: Iterator[ItemInput | IngestRejected]

    @property
    def total(self) -> int:
        return len(self.names)


def _source(names: list[str], entry: Callable[[str], ItemInput | IngestRejected],
            only: Collection[str] | None) -> Source:
    """The entries of `names` (those in `only`, if given), each made by `entry` when reached."""
    if only is not None:
        wanted = set(only)
        names = [n for n in names if n in wanted]

    def entries():
        for name in names:
            try:
                yield entry(name)
            except IngestRejected as exc:
                yield exc

    return Source(names=names, entries=entries())


def resolve_inside(root: Path, relative: str) -> Path:
    """root/relative, refusing anything that resolves outside root."""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise IngestRejected(f"{relative!r}: not a valid file name.")
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise IngestRejected(f"{relative}: the path escapes the import folder.")
    return candidate


def _read(path: Path, name: str) -> bytes:
    if not path.is_file():
        raise IngestRejected(f"{name}: file not found in the import.")
    return path.read_bytes()


def read_source(path: Path, fmt: str, *, images_dir: Path | None = None,
                only: Collection[str] | None = None) -> Source:
    """The source's entries; `only`: just the entries of these names (an ingest batch's)."""
    if fmt == "folder":
        return _read_folder(path, only)
    if fmt == "coco":
        return _read_coco(path, images_dir, only)
    if fmt == "sa1b":
        return _read_sa1b(path, only)
    raise SourceError(f"Unknown format '{fmt}'; use one of {', '.join(FORMATS)}.")


# ---------------------------------------------------------------- folder
def _read_folder(root: Path, only: Collection[str] | None = None) -> Source:
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise SourceError(f"{root}: no images/ folder; a folder import has images/ and masks/ (see README).")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    stems = Counter(p.stem for p in images)
    mask_dirs = {p.name for p in (root / "masks").iterdir() if p.is_dir()} if (root / "masks").is_dir() else set()
    orphans = sorted(mask_dirs - set(stems))

    def entry(name: str) -> ItemInput | IngestRejected:
        if name.startswith("masks/"):
            stem = name.removeprefix("masks/")
            return IngestRejected(f"masks/{stem}: masks without an image images/{stem}.*")
        image_path = root / name
        if stems[image_path.stem] > 1:
            raise IngestRejected(f"{name}: several images share the name '{image_path.stem}'.")
        resolve_inside(root, name)
        masks_dir = root / "masks" / image_path.stem
        mask_files = sorted(masks_dir.glob("*.png")) if masks_dir.is_dir() else []
        if not mask_files:
            raise IngestRejected(f"{name}: no masks in masks/{image_path.stem}/.")
        masks = []
        for mask_path in mask_files:
            rel = f"masks/{image_path.stem}/{mask_path.name}"
            resolve_inside(root, rel)
            masks.append(
                MaskInput(
                    source_name=rel,
                    label=re.sub(r"_\d+$", "", mask_path.stem),
                    png_bytes=mask_path.read_bytes(),
                    provenance={"format": "folder", "file": rel},
                )
            )
        depth_bytes, depth_name = None, ""
        for suffix in (".npy", ".png"):
            depth_path = root / "depth" / f"{image_path.stem}{suffix}"
            if depth_path.is_file():
                depth_name = f"depth/{depth_path.name}"
                resolve_inside(root, depth_name)
                depth_bytes = depth_path.read_bytes()
                break
        return ItemInput(
            name=name,
            image_bytes=_read(image_path, name),
            masks=masks,
            depth_bytes=depth_bytes,
            depth_name=depth_name,
            source={"format": "folder", "file": name},
        )

    names = [f"masks/{stem}" for stem in orphans] + [f"images/{p.name}" for p in images]
    return _source(names, entry, only)


# ---------------------------------------------------------------- documents
class DocumentError(ValueError):
    """A field of a COCO or SA-1B document has the wrong type; the message names it."""


def _json_document(path: Path):
    """A document's JSON through the engine's limits (depth, NaN, U+0000); ValidationFailed if bad."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationFailed(f"{path.name}: cannot be read ({exc.strerror}).") from None
    return jsonio.loads(data, what=path.name)


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", float: "a number",
            int: "an integer", type(None): "null"}.get(type(value), type(value).__name__)


def _key(value, where: str, *, optional: bool = False):
    """An id as COCO and SA-1B write them: an integer (64-bit) or a string; None if optional and absent."""
    if value is None and optional:
        return None
    if (type(value) is int and BIGINT_MIN <= value <= BIGINT_MAX) or (type(value) is str and 0 < len(value) <= 200):
        return value
    raise DocumentError(f"{where} must be an integer (64-bit) or a string, not {_kind(value)}.")


def _text(value, where: str, *, optional: bool = True):
    if (value is None and optional) or type(value) is str:
        return value
    raise DocumentError(f"{where} must be a string, not {_kind(value)}.")


def _flag(value, where: str):
    if value is None or value in (0, 1) and type(value) in (int, bool):
        return value
    raise DocumentError(f"{where} must be 0 or 1, not {_kind(value) if type(value) is not int else value}.")


# ---------------------------------------------------------------- COCO
def _load_json(path: Path) -> object:
    try:
        return _json_document(path)
    except ValidationFailed as exc:
        raise SourceError(exc.message) from None


def _coco_checked(data: dict, name: str) -> None:
    """Every field the reader uses has its type, or SourceError naming the first that does not.
    Entries that are not objects, and missing file names, are left to the per-item rejections."""
    categories = data.get("categories", [])
    try:
        if not isinstance(categories, list):
            raise DocumentError(f"'categories' must be a list, not {_kind(categories)}.")
        for i, c in enumerate(categories):
            if not isinstance(c, dict):
                raise DocumentError(f"categories[{i}] must be an object, not {_kind(c)}.")
            _key(c.get("id"), f"categories[{i}].id")
            _text(c.get("name"), f"categories[{i}].name")
        for i, info in enumerate(data["images"]):
            if isinstance(info, dict):
                _key(info.get("id"), f"images[{i}].id")
        for i, a in enumerate(data["annotations"]):
            if isinstance(a, dict):
                _key(a.get("id"), f"annotations[{i}].id", optional=True)
                _key(a.get("image_id"), f"annotations[{i}].image_id", optional=True)
                _key(a.get("category_id"), f"annotations[{i}].category_id", optional=True)
                _flag(a.get("iscrowd"), f"annotations[{i}].iscrowd")
    except DocumentError as exc:
        raise SourceError(f"{name}: {exc}") from None


_COCO_KEPT: dict = {}  # per process: {"key": (path, mtime, size, images_dir), "prepared": ...}


def _coco_prepared(json_path: Path, images_dir: Path | None) -> tuple:
    """A COCO document parsed, checked and indexed: (data, images_dir, categories, image_ids,
    ann_ids, annotations by image, stray annotations' rejections by name). Read-only afterwards."""
    data = _load_json(json_path)
    if not (isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("annotations"), list)):
        raise SourceError(
            f"{json_path.name}: not COCO instances JSON (expected an object with 'images' and 'annotations' lists)."
        )
    _coco_checked(data, json_path.name)
    if images_dir is None:
        images_dir = json_path.parent
        if not any(
            isinstance(i, dict) and isinstance(i.get("file_name"), str) and (images_dir / i["file_name"]).exists()
            for i in data["images"][:5]
        ) and (json_path.parent / "images").is_dir():
            images_dir = json_path.parent / "images"
    categories = {c.get("id"): c.get("name", "") for c in data.get("categories", []) if isinstance(c, dict)}
    image_ids = Counter(i.get("id") for i in data["images"] if isinstance(i, dict))
    ann_ids = Counter(a.get("id") for a in data["annotations"] if isinstance(a, dict))
    by_image: dict[object, list[dict]] = {}
    stray: dict[str, IngestRejected] = {}
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "segmentation" not in ann:
            stray[f"annotations[{index}]"] = IngestRejected(
                f"{json_path.name}: an annotation is not an object with 'segmentation'.")
            continue
        if ann.get("image_id") not in image_ids:
            stray[f"annotations[{index}]"] = IngestRejected(
                f"annotation {ann.get('id')}: image_id {ann.get('image_id')} is not in 'images'.")
            continue
        by_image.setdefault(ann["image_id"], []).append(ann)

    return data, images_dir, categories, image_ids, ann_ids, by_image, stray


def _read_coco(json_path: Path, images_dir: Path | None, only: Collection[str] | None = None) -> Source:
    if not json_path.is_file():
        raise SourceError(f"{json_path}: a COCO import takes the path of the annotations JSON file.")
    if only is None:
        prepared = _coco_prepared(json_path, images_dir)
    else:  # an ingest batch: its worker keeps the last document it parsed (the file may be gigabytes)
        stat = json_path.stat()
        key = (str(json_path.resolve()), stat.st_mtime_ns, stat.st_size, str(images_dir))
        if _COCO_KEPT.get("key") != key:
            _COCO_KEPT.clear()
            _COCO_KEPT.update(key=key, prepared=_coco_prepared(json_path, images_dir))
        prepared = _COCO_KEPT["prepared"]
    data, images_dir, categories, image_ids, ann_ids, by_image, stray = prepared

    def entry(key: str) -> ItemInput | IngestRejected:
        if key in stray:
            return stray[key]
        info = data["images"][int(key.removeprefix("images[").removesuffix("]"))]
        if not isinstance(info, dict):
            return IngestRejected(f"{json_path.name}: an entry of 'images' is not an object.")
        name = str(info.get("file_name", f"image id {info.get('id')}"))
        try:
            if image_ids[info.get("id")] > 1:
                raise IngestRejected(f"{name}: image id {info.get('id')} appears more than once.")
            anns = by_image.get(info.get("id"), [])
            duplicated = sorted({str(a.get("id")) for a in anns if ann_ids[a.get("id")] > 1})
            if duplicated:
                raise IngestRejected(f"{name}: annotation ids {', '.join(duplicated)} appear more than once.")
            image_path = resolve_inside(images_dir, info.get("file_name"))
            image_bytes = _read(image_path, name)
        except IngestRejected as exc:  # named by the image's file name, not the key
            return exc
        masks = [
            MaskInput(
                source_name=f"annotation {a.get('id')}",
                label=str(categories.get(a.get("category_id"), a.get("category_id", "")) or ""),
                segmentation=a["segmentation"],
                provenance={
                    "format": "coco",
                    "annotation_id": a.get("id"),
                    "category_id": a.get("category_id"),
                    "iscrowd": a.get("iscrowd", 0),
                },
            )
            for a in anns
        ]
        return ItemInput(
            name=name,
            image_bytes=image_bytes,
            masks=masks,
            source={"format": "coco", "image_id": info.get("id"), "file": name,
                    "license": info.get("license"), "coco_url": info.get("coco_url")},
            intrinsics=None,
        )

    return _source(list(stray) + [f"images[{i}]" for i in range(len(data["images"]))], entry, only)


# ---------------------------------------------------------------- SA-1B
SAM_PROVENANCE_KEYS = ("predicted_iou", "stability_score", "point_coords", "crop_box", "area", "bbox")


def _read_sa1b(path: Path, only: Collection[str] | None = None) -> Source:
    if path.is_file():
        json_files, root = [path], path.parent
    elif path.is_dir():
        json_files, root = sorted(path.glob("*.json")), path
    else:
        raise SourceError(f"{path}: no such file or folder.")
    if not json_files:
        raise SourceError(f"{path}: no SA-1B .json files found.")
    return _source([p.name for p in json_files], lambda name: _sa1b_item(root / name, root), only)


def _sa1b_item(json_file: Path, root: Path) -> ItemInput:
    try:
        data = _json_document(json_file)
    except ValidationFailed as exc:
        raise IngestRejected(exc.message) from None
    if isinstance(data, list):  # SamAutomaticMaskGenerator's raw list of masks
        data = {"image": {}, "annotations": data}
    if not (isinstance(data, dict) and isinstance(data.get("annotations"), list) and isinstance(data.get("image", {}), dict)):
        raise IngestRejected(f"{json_file.name}: not SA-1B JSON (expected 'image' and 'annotations').")
    info = data.get("image") or {}
    try:
        _key(info.get("image_id"), "image.image_id", optional=True)
        _text(info.get("file_name"), "image.file_name")
        for index, ann in enumerate(data["annotations"]):
            if isinstance(ann, dict):
                _key(ann.get("id"), f"annotations[{index}].id", optional=True)
                _text(ann.get("label"), f"annotations[{index}].label")
    except DocumentError as exc:
        raise IngestRejected(f"{json_file.name}: {exc}") from None
    file_name = info.get("file_name")
    if file_name is None:
        matches = [p for p in json_file.parent.glob(f"{json_file.stem}.*") if p.suffix.lower() in IMAGE_SUFFIXES]
        if not matches:
            raise IngestRejected(f"{json_file.name}: no image {json_file.stem}.jpg beside it.")
        file_name = matches[0].name
    image_path = resolve_inside(root, file_name)
    image_bytes = _read(image_path, file_name)
    ids = Counter(a.get("id") for a in data["annotations"] if isinstance(a, dict) and "id" in a)
    duplicated = sorted(str(k) for k, v in ids.items() if v > 1)
    if duplicated:
        raise IngestRejected(f"{json_file.name}: annotation ids {', '.join(duplicated)} appear more than once.")
    masks = []
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("segmentation"), dict):
            raise IngestRejected(f"{json_file.name}: annotation {index} has no RLE 'segmentation' object.")
        masks.append(
            MaskInput(
                source_name=f"annotation {ann.get('id', index)}",
                segmentation=ann["segmentation"],
                label=ann.get("label") or "",
                provenance={"format": "sa1b", "annotation_id": ann.get("id", index)}
                | {k: ann[k] for k in SAM_PROVENANCE_KEYS if k in ann},
            )
        )
    return ItemInput(
        name=file_name,
        image_bytes=image_bytes,
        masks=masks,
        source={"format": "sa1b", "image_id": info.get("image_id"), "file": file_name},
    )


# ---------------------------------------------------------------- zip uploads
def zip_open_checked(zip_file, destination: Path) -> zipfile.ZipFile:
    """The zip, opened, after the checks its central directory allows without extracting anything:
    a zip at all, member count, total size, every path inside `destination`, no links."""
    try:
        archive = zipfile.ZipFile(zip_file)
    except (zipfile.BadZipFile, EOFError):
        raise SourceError("The upload is not a valid zip file.") from None
    try:
        members = archive.infolist()
        if len(members) > settings.INGEST_MAX_ZIP_MEMBERS:
            raise SourceError(f"The zip has {len(members)} files; at most {settings.INGEST_MAX_ZIP_MEMBERS}.")
        total = sum(m.file_size for m in members)
        if total > settings.INGEST_MAX_ZIP_BYTES:
            raise SourceError(
                f"The zip expands to {total:,} bytes, above the limit of {settings.INGEST_MAX_ZIP_BYTES:,}."
            )
        root = destination.resolve()
        for member in members:
            target = (destination / member.filename).resolve()
            if not target.is_relative_to(root) or member.filename.startswith("/"):
                raise SourceError(f"The zip entry '{member.filename}' escapes the archive's folder.")
            if member.external_attr >> 16 & 0o170000 == 0o120000:
                raise SourceError(f"The zip entry '{member.filename}' is a symbolic link; links are not accepted.")
    except BaseException:
        archive.close()
        raise
    return archive


def extract_zip(zip_file, destination: Path) -> None:
    """Extract an uploaded zip safely: member count, total size and every path are checked first."""
    with zip_open_checked(zip_file, destination) as archive:
        try:
            archive.extractall(destination)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            # An OSError names its file, in the temporary folder (raised here, before ExtractedZip's exit).
            raise SourceError(f"The zip is corrupt ({without_server_paths(str(exc))}).") from None


def detect_format(root: Path) -> tuple[str, Path]:
    """Which format an extracted folder holds, and the path to hand its reader."""
    candidates = [root] + [p for p in root.iterdir() if p.is_dir()]
    for base in candidates:
        if (base / "images").is_dir() and (base / "masks").is_dir():
            return "folder", base
    unreadable = []
    for base in candidates:
        for json_path in sorted(base.glob("*.json")):
            try:
                head = _json_document(json_path)
            except ValidationFailed as exc:
                unreadable.append(exc.message)
                continue
            if isinstance(head, dict) and "images" in head and "annotations" in head:
                return "coco", json_path
            if isinstance(head, dict) and "image" in head and "annotations" in head:
                return "sa1b", base
    raise SourceError(
        "Cannot tell the zip's format: expected images/ + masks/ folders, a COCO JSON or SA-1B JSON files."
        + (f" Unreadable: {unreadable[0]}" if unreadable else "")
    )


class ExtractedZip:
    """Context manager: a zip extracted into a temporary folder removed on exit."""

    def __init__(self, zip_file):
        self.zip_file = zip_file
        self.path: Path | None = None

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="ingest-"))
        try:
            extract_zip(self.zip_file, self.path)
        except Exception:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        return self.path

    def __exit__(self, exc_type, exc, tb) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if isinstance(exc, SourceError):  # messages name files inside the zip, never the temporary folder
            exc.args = (_inside_zip(str(exc), self.path),)


def _inside_zip(message: str, root: Path) -> str:
    for folder in {str(root.resolve()), str(root)}:
        message = message.replace(folder + "/", "").replace(folder, "the zip")
    return message
