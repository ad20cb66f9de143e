"""Small real files for ingest tests: photos, binary PNG masks, COCO and SA-1B JSON."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from engine import masks as mask_codec


def photo_bytes(width: int = 64, height: int = 48, seed: int = 0, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def box_mask(width: int = 64, height: int = 48, box=(10, 10, 30, 25)) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


def mask_png(mask: np.ndarray, value: int = 255) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(mask.astype(np.uint8) * value).save(buf, format="PNG")
    return buf.getvalue()


def write_folder(root: Path, n_images: int = 2, width: int = 64, height: int = 48) -> Path:
    (root / "images").mkdir(parents=True)
    for i in range(n_images):
        (root / "images" / f"photo{i}.png").write_bytes(photo_bytes(width, height, seed=i))
        (root / "masks" / f"photo{i}").mkdir(parents=True)
        (root / "masks" / f"photo{i}" / "cup_1.png").write_bytes(mask_png(box_mask(width, height)))
        (root / "masks" / f"photo{i}" / "cup_2.png").write_bytes(
            mask_png(box_mask(width, height, box=(35, 5, 60, 40)))
        )
    return root


def coco_dict(width: int = 64, height: int = 48, n_images: int = 2) -> dict:
    images, annotations = [], []
    for i in range(n_images):
        images.append({"id": i + 1, "file_name": f"photo{i}.png", "width": width, "height": height})
        annotations.append({  # polygon
            "id": 10 * i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
            "segmentation": [[10, 10, 30, 10, 30, 25, 10, 25]],
        })
        rle = mask_codec.encode(box_mask(width, height, box=(35, 5, 60, 40)))
        annotations.append({  # compressed RLE
            "id": 10 * i + 2, "image_id": i + 1, "category_id": 2, "iscrowd": 1,
            "segmentation": {"size": [height, width], "counts": rle},
        })
        annotations.append({  # uncompressed RLE
            "id": 10 * i + 3, "image_id": i + 1, "category_id": 2, "iscrowd": 1,
            "segmentation": {"size": [height, width],
                             "counts": mask_codec.rle_counts_from_mask(box_mask(width, height, box=(0, 30, 8, 48)))},
        })
    return {"images": images, "annotations": annotations,
            "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "saucer"}]}


def write_coco(root: Path, data: dict | None = None, width: int = 64, height: int = 48) -> Path:
    data = data or coco_dict(width, height)
    root.mkdir(parents=True, exist_ok=True)
    for info in data["images"]:
        if "/" not in info["file_name"]:
            (root / info["file_name"]).write_bytes(photo_bytes(width, height, seed=info["id"]))
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path


def sa1b_dict(stem: str, width: int = 64, height: int = 48) -> dict:
    return {
        "image": {"image_id": 1, "width": width, "height": height, "file_name": f"{stem}.jpg"},
        "annotations": [
            {"id": 1, "segmentation": {"size": [height, width], "counts": mask_codec.encode(box_mask(width, height))},
             "bbox": [10, 10, 20, 15], "area": 300, "predicted_iou": 0.93, "stability_score": 0.97,
             "point_coords": [[20.0, 17.0]], "crop_box": [0, 0, width, height]},
            {"id": 2, "segmentation": {"size": [height, width],
                                       "counts": mask_codec.encode(box_mask(width, height, box=(35, 5, 60, 40)))},
             "bbox": [35, 5, 25, 35], "area": 875, "predicted_iou": 0.88, "stability_score": 0.95,
             "point_coords": [[47.0, 22.0]], "crop_box": [0, 0, width, height]},
        ],
    }


def write_sa1b(root: Path, n_images: int = 2, width: int = 64, height: int = 48) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        stem = f"sa_{i}"
        (root / f"{stem}.jpg").write_bytes(photo_bytes(width, height, seed=100 + i, fmt="JPEG"))
        (root / f"{stem}.json").write_text(json.dumps(sa1b_dict(stem, width, height)))
    return root
