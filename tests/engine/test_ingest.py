"""Ingest through the `ingest` command and the service: formats, idempotency, bad input."""
from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from PIL import Image as PILImage

from engine import masks as mask_codec
from engine.ingest.services import ingest_item
from engine.ingest.validation import IngestRejected, ItemInput, MaskInput
from engine.models import Image, ObjectMask, Role
from tests.engine import builders
from tests.engine.imports import ImportResult

pytestmark = pytest.mark.django_db


def run_ingest(path, project, fmt, *extra) -> str:
    out = io.StringIO()
    call_command("ingest", str(path), "--project", project.slug, "--format", fmt, *extra, stdout=out,
                 stderr=io.StringIO())
    return out.getvalue()


def test_folder_import_then_again_changes_nothing(tmp_path, project):
    root = builders.write_folder(tmp_path / "src")
    first = run_ingest(root, project, "folder")
    assert "imported 2 images (4 masks)" in first
    labels = set(ObjectMask.objects.filter(image__project=project).values_list("label", flat=True))
    assert labels == {"cup"}  # cup_1.png and cup_2.png are two cups
    second = run_ingest(root, project, "folder")
    assert "imported 0 images (0 masks); skipped as duplicates 2 images (4 masks); rejected 0" in second
    assert Image.objects.filter(project=project).count() == 2
    assert ObjectMask.objects.filter(image__project=project).count() == 4


def test_stored_mask_is_the_pixels_that_were_given(tmp_path, project):
    root = builders.write_folder(tmp_path / "src", n_images=1)
    run_ingest(root, project, "folder")
    mask = ObjectMask.objects.filter(image__project=project).order_by("id").first()
    decoded = mask_codec.decode(mask.rle_counts, 48, 64)
    assert np.array_equal(decoded, builders.box_mask())
    assert mask.area == 20 * 15 and mask.bbox == [10.0, 10.0, 20.0, 15.0]


def test_coco_polygons_and_both_rle_forms(tmp_path, project):
    path = builders.write_coco(tmp_path / "coco")
    out = run_ingest(path, project, "coco")
    assert "imported 2 images (6 masks)" in out
    polygon = ObjectMask.objects.get(provenance__annotation_id=1)
    assert polygon.label == "cup" and polygon.area > 250
    uncompressed = ObjectMask.objects.get(provenance__annotation_id=3)
    assert uncompressed.label == "saucer" and uncompressed.area == 8 * 18


def test_sa1b_keeps_sam_provenance(tmp_path, project):
    root = builders.write_sa1b(tmp_path / "sa1b")
    out = run_ingest(root, project, "sa1b")
    assert "imported 2 images (4 masks)" in out
    mask = ObjectMask.objects.filter(image__project=project, provenance__annotation_id=1).first()
    assert mask.provenance["predicted_iou"] == 0.93
    assert mask.provenance["stability_score"] == 0.97


def test_one_bad_item_does_not_stop_the_import(tmp_path, project):
    root = builders.write_folder(tmp_path / "src", n_images=3)
    (root / "images" / "photo1.png").write_bytes(b"this is not an image")
    out = run_ingest(root, project, "folder")
    assert "imported 2 images" in out and "rejected 1" in out
    assert "images/photo1.png: not an image" in out


def test_unknown_project_and_wrong_format_are_command_errors(tmp_path, project):
    with pytest.raises(CommandError, match="No project 'nope'"):
        call_command("ingest", str(tmp_path), "--project", "nope", "--format", "folder")
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(CommandError, match="not COCO instances JSON"):
        run_ingest(tmp_path / "x.json", project, "coco")


# ---------------------------------------------------------------- bad input, one case each
def item(image_bytes=None, masks=None, **kwargs) -> ItemInput:
    return ItemInput(
        name="photo.png",
        image_bytes=builders.photo_bytes() if image_bytes is None else image_bytes,
        masks=[MaskInput(source_name="m.png", png_bytes=builders.mask_png(builders.box_mask()))]
        if masks is None else masks,
        **kwargs,
    )


def truncated_png() -> bytes:
    data = builders.photo_bytes(200, 200)
    return data[: len(data) // 2]


def truncated_jpeg() -> bytes:
    data = builders.photo_bytes(1200, 800, fmt="JPEG")  # decoded at a reduced scale: every byte still read
    return data[: len(data) - 2000]


def grey_values_png() -> bytes:
    arr = np.zeros((48, 64), np.uint8)
    arr[5:20, 5:20] = 128
    arr[25:40, 25:40] = 255
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


BAD_ITEMS = {
    "truncated image": (lambda: item(image_bytes=truncated_png()), "truncated or corrupt"),
    "truncated jpeg": (lambda: item(image_bytes=truncated_jpeg()), "truncated or corrupt"),
    "not an image": (lambda: item(image_bytes=b"%PDF-1.4 not a picture"), "not an image"),
    "empty file": (lambda: item(image_bytes=b""), "empty"),
    "gif": (lambda: item(image_bytes=builders.photo_bytes(fmt="GIF")), "format GIF is not accepted"),
    "mask size differs": (
        lambda: item(masks=[MaskInput(source_name="m.png", png_bytes=builders.mask_png(np.ones((10, 10), bool)))]),
        "mask is 10x10 but the image is 64x48",
    ),
    "empty mask": (
        lambda: item(masks=[MaskInput(source_name="m.png", png_bytes=builders.mask_png(np.zeros((48, 64), bool)))]),
        "mask is empty",
    ),
    "non-binary mask": (
        lambda: item(masks=[MaskInput(source_name="m.png", png_bytes=grey_values_png())]),
        "not binary",
    ),
    "mask is a jpeg": (
        lambda: item(masks=[MaskInput(source_name="m.jpg", png_bytes=builders.photo_bytes(fmt="JPEG"))]),
        "masks must be PNG",
    ),
    "malformed rle": (
        lambda: item(masks=[MaskInput(source_name="a1", segmentation={"size": [48, 64], "counts": "0\x7f"})]),
        "alphabet",
    ),
    "rle of another size": (
        lambda: item(masks=[MaskInput(source_name="a1", segmentation={"size": [10, 10], "counts": "0"})]),
        "differs from the image",
    ),
    "rle counts do not add up": (
        lambda: item(masks=[MaskInput(source_name="a1", segmentation={"size": [48, 64], "counts": [5, 10]})]),
        "add up to",
    ),
    "malformed polygon": (
        lambda: item(masks=[MaskInput(source_name="a1", segmentation=[[1, 2, 3]])]),
        "at least 3",
    ),
    "no masks": (lambda: item(masks=[]), "no object masks"),
    "bad depth": (lambda: item(depth_bytes=b"garbage", depth_name="d.npy"), "depth map"),
    "bad intrinsics": (lambda: item(intrinsics=[[1, 2], [3, 4]]), "3x3"),
}


@pytest.mark.parametrize("case", BAD_ITEMS)
def test_bad_item_is_rejected_with_its_reason_and_nothing_is_kept(project, case):
    make, reason = BAD_ITEMS[case]
    with pytest.raises(IngestRejected, match=reason):
        ingest_item(project=project, item=make())
    assert not Image.objects.filter(project=project).exists()
    assert not ObjectMask.objects.exists()


def test_a_large_jpeg_keeps_its_size_and_gets_a_thumbnail(project, settings):
    """A JPEG is decoded at the scale its thumbnail needs; the row still has the photo's own size."""
    from django.core.files.storage import default_storage

    photo = builders.photo_bytes(1200, 800, fmt="JPEG")
    mask = np.zeros((800, 1200), bool)
    mask[100:300, 200:500] = True
    outcome = ingest_item(project=project, item=item(image_bytes=photo, masks=[
        MaskInput(source_name="a1", segmentation={"size": [800, 1200], "counts": mask_codec.encode(mask)})]))
    row = outcome.image
    assert (row.width, row.height, row.format) == (1200, 800, "jpg")
    with default_storage.open(row.thumbnail.name) as f:
        thumb = PILImage.open(f)
        assert thumb.size == (settings.THUMBNAIL_SIZE, round(settings.THUMBNAIL_SIZE * 2 / 3))
    stored = row.masks.get()
    assert (stored.area, stored.bbox) == (200 * 300, [200.0, 100.0, 300.0, 200.0])


def test_decompression_bomb_is_refused_before_decoding(project, settings):
    settings.INGEST_MAX_PIXELS = 1000
    with pytest.raises(IngestRejected, match="above the limit"):
        ingest_item(project=project, item=item(image_bytes=builders.photo_bytes(64, 48)))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height (1-bit grey) and holds no pixels: a bomb's header."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    iend = b"IEND"
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
            + struct.pack(">I", 0) + iend + struct.pack(">I", zlib.crc32(iend)))


@pytest.mark.parametrize("side", [3000, 100_000])  # above INGEST_MAX_PIXELS; above PIL's own bomb guard too
def test_a_mask_whose_header_declares_a_bomb_is_refused_like_a_photo(project, settings, side):
    settings.INGEST_MAX_PIXELS = 4_000_000
    bomb = MaskInput(source_name="bomb.png", png_bytes=png_header_only(side, side))
    with pytest.raises(IngestRejected, match="bomb.png: .*(above the limit|decompression bomb)"):
        ingest_item(project=project, item=item(masks=[bomb]))
    assert not ObjectMask.objects.exists()


def test_one_bad_mask_rejects_the_whole_item(project):
    masks = [
        MaskInput(source_name="good.png", png_bytes=builders.mask_png(builders.box_mask())),
        MaskInput(source_name="bad.png", png_bytes=builders.mask_png(np.zeros((48, 64), bool))),
    ]
    with pytest.raises(IngestRejected, match="bad.png"):
        ingest_item(project=project, item=item(masks=masks))
    assert not Image.objects.exists()


def test_mask_png_rule_accepts_0_and_1_and_palette(project):
    mask = builders.box_mask()
    palette = PILImage.fromarray(mask.astype(np.uint8)).convert("P")
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    outcome = ingest_item(project=project, item=item(masks=[
        MaskInput(source_name="ones.png", png_bytes=builders.mask_png(mask, value=1)),
        MaskInput(source_name="palette.png", png_bytes=buf.getvalue()),
    ]))
    assert outcome.masks_created == 1 and outcome.masks_duplicate == 1  # same pixels twice


def test_depth_npy_is_stored_in_metres(project):
    depth = np.full((48, 64), 1.5, np.float32)
    buf = io.BytesIO()
    np.save(buf, depth)
    outcome = ingest_item(project=project, item=item(depth_bytes=buf.getvalue(), depth_name="d.npy"))
    from django.core.files.storage import default_storage

    stored = np.load(default_storage.open(outcome.image.depth.name, "rb"))
    assert stored.shape == (48, 64) and float(stored[0, 0]) == 1.5


# ---------------------------------------------------------------- source-level bad input
def test_paths_escaping_the_import_folder_are_refused(tmp_path, project):
    data = builders.coco_dict()
    data["images"][0]["file_name"] = "../../etc/passwd"
    path = builders.write_coco(tmp_path / "coco", data)
    out = run_ingest(path, project, "coco")
    assert "escapes the import folder" in out and "imported 1 images" in out


def test_duplicate_ids_are_rejected(tmp_path, project):
    data = builders.coco_dict(n_images=3)
    data["images"][2]["id"] = data["images"][1]["id"]
    data["annotations"][1]["id"] = data["annotations"][0]["id"]
    path = builders.write_coco(tmp_path / "coco", data)
    out = run_ingest(path, project, "coco")
    assert "appears more than once" in out
    assert "annotation ids 1 appear more than once" in out
    assert Image.objects.filter(project=project).count() == 0


def test_annotation_for_a_missing_image_is_listed(tmp_path, project):
    data = builders.coco_dict(n_images=1)
    data["annotations"].append({"id": 99, "image_id": 1234, "segmentation": [[1, 1, 5, 1, 5, 5]]})
    out = run_ingest(builders.write_coco(tmp_path / "coco", data), project, "coco")
    assert "image_id 1234 is not in 'images'" in out and "imported 1 images" in out


def test_json_that_is_not_sa1b_is_rejected(tmp_path, project):
    root = builders.write_sa1b(tmp_path / "sa1b", n_images=1)
    (root / "other.json").write_text(json.dumps({"what": "else"}))
    out = run_ingest(root, project, "sa1b")
    assert "other.json: not SA-1B JSON" in out and "imported 1 images" in out


def test_folder_masks_without_image_are_listed(tmp_path, project):
    root = builders.write_folder(tmp_path / "src", n_images=1)
    (root / "masks" / "ghost").mkdir()
    out = run_ingest(root, project, "folder")
    assert "masks/ghost: masks without an image" in out


# ---------------------------------------------------------------- documents with the wrong shape, through the API
def zip_import(api, lead, project, files: dict[str, bytes], fmt: str = "auto") -> ImportResult:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    upload = SimpleUploadedFile("import.zip", buf.getvalue(), content_type="application/zip")
    client = api(lead)
    return ImportResult(client, project, client.post(f"/api/v1/projects/{project.slug}/imports/",
                                                     {"file": upload, "format": fmt}, format="multipart"))


def refusal(result: ImportResult) -> str:
    """The refusal's message, said whole (a 400) or by the job (the worker read the document)."""
    message = result.message
    assert "/tmp" not in message and "ingest-" not in message and "uploads/" not in message, message
    if result.job is None:
        assert result.response.json()["error"]["code"]
    return message


DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize("files, fmt", [
    ({"annotations.json": DEEP, "photo0.png": builders.photo_bytes()}, "auto"),
    ({"annotations.json": DEEP, "photo0.png": builders.photo_bytes()}, "coco"),
    ({"a.json": b'{"image": {}, "annotations": ' + DEEP + b"}", "a.png": builders.photo_bytes()}, "auto"),
    ({"a.json": b'{"image": {}, "annotations": ' + DEEP + b"}", "a.png": builders.photo_bytes()}, "sa1b"),
])
def test_a_document_nested_too_deep_is_refused_naming_it(api, member, project, files, fmt):
    message = refusal(zip_import(api, member(Role.LEAD), project, files, fmt))
    assert next(iter(files)) in message and "levels deep; at most 64" in message
    assert Image.objects.count() == 0


def coco_with(change) -> bytes:
    data = builders.coco_dict(n_images=1)
    data["categories"] = [{"id": 1, "name": "cup"}, {"id": 2, "name": "bowl"}]
    change(data)
    return json.dumps(data).encode()


@pytest.mark.parametrize("change, field", [
    (lambda d: d["images"][0].update(id=[1]), "images[0].id must be an integer (64-bit) or a string, not a list"),
    (lambda d: d["images"][0].update(id=2**64), "images[0].id must be an integer (64-bit)"),
    (lambda d: d["annotations"][0].update(id={"a": 1}), "annotations[0].id must be an integer (64-bit) or a "
                                                        "string, not an object"),
    (lambda d: d["annotations"][1].update(image_id=[1]), "annotations[1].image_id must be"),
    (lambda d: d["annotations"][0].update(category_id=[1]), "annotations[0].category_id must be"),
    (lambda d: d["annotations"][0].update(iscrowd="yes"), "annotations[0].iscrowd must be 0 or 1"),
    (lambda d: d["categories"][0].update(id=[1]), "categories[0].id must be"),
    (lambda d: d["categories"][0].update(name=["cup"]), "categories[0].name must be a string, not a list"),
    (lambda d: d.update(categories={"1": "cup"}), "'categories' must be a list, not an object"),
])
def test_a_coco_document_with_wrongly_typed_fields_is_refused_whole(api, member, project, change, field):
    files = {"annotations.json": coco_with(change), "photo0.png": builders.photo_bytes()}
    message = refusal(zip_import(api, member(Role.LEAD), project, files))
    assert message == f"annotations.json: {field}" or message.startswith(f"annotations.json: {field}"), message
    assert Image.objects.count() == 0 and ObjectMask.objects.count() == 0


def sa1b_with(change) -> bytes:
    rle = mask_codec.encode(builders.box_mask())
    data = {"image": {"image_id": 7, "file_name": "a.png"},
            "annotations": [{"id": 1, "label": "cup", "segmentation": {"size": [48, 64], "counts": rle}}]}
    change(data)
    return json.dumps(data).encode()


@pytest.mark.parametrize("change, reason", [
    (lambda d: d["annotations"][0].update(id=[1]), "a.json: annotations[0].id must be an integer (64-bit) or a "
                                                   "string, not a list."),
    (lambda d: d["annotations"][0].update(id={"a": 1}), "a.json: annotations[0].id must be"),
    (lambda d: d["annotations"][0].update(label=["cup"]), "a.json: annotations[0].label must be a string"),
    (lambda d: d["image"].update(file_name=["a.png"]), "a.json: image.file_name must be a string, not a list."),
    (lambda d: d["image"].update(image_id={"id": 7}), "a.json: image.image_id must be"),
    (lambda d: d["annotations"][0].update(segmentation={"size": [48, 64], "counts": [2**70, 1]}),
     "RLE counts must be integers from 0 to the image's 3072 pixels"),
])
def test_an_sa1b_document_with_wrongly_typed_fields_is_listed_as_rejected(api, member, project, change, reason):
    files = {"a.json": sa1b_with(change), "a.png": builders.photo_bytes()}
    result = zip_import(api, member(Role.LEAD), project, files)
    assert result.status == 202 and result.job["state"] == "done", result.job
    rejected = result.rejected
    assert len(rejected) == 1 and reason in rejected[0]["reason"], rejected
    assert Image.objects.count() == 0 and ObjectMask.objects.count() == 0


def test_a_wrong_format_names_no_server_folder(api, member, project):
    files = {"a.json": sa1b_with(lambda d: None), "a.png": builders.photo_bytes()}
    message = refusal(zip_import(api, member(Role.LEAD), project, files, "folder"))
    assert message.startswith("the zip: no images/ folder"), message


def test_rle_masks_are_checked_without_drawing_their_pixels(tmp_path, project, monkeypatch):
    """SA-1B and COCO RLE are validated and summarised from their runs: an import of them never
    decodes a mask to pixels (it did, twice over, and that was 80% of an SA-1B import's time)."""
    def no_pixels(*args, **kwargs):
        raise AssertionError("a mask was drawn")

    monkeypatch.setattr(mask_codec, "mask_from_rle_counts", no_pixels)
    monkeypatch.setattr(mask_codec, "decode", no_pixels)
    out = run_ingest(builders.write_sa1b(tmp_path / "sa1b"), project, "sa1b")
    assert "imported 2 images (4 masks)" in out and "rejected 0" in out
    stored = ObjectMask.objects.filter(image__project=project, provenance__annotation_id=2).first()
    assert (stored.area, stored.bbox) == (25 * 35, [35.0, 5.0, 25.0, 35.0])
