"""The demo photos' candidates from one or more built-in checkpoints, side by side: a contact sheet.

    .venv/bin/python bench/demo_candidates.py --checkpoint before.pt --checkpoint after.pt \
        --out docs/images/demo-candidates.png [--seeds 4]

One row per demo object (`engine/demo/objects.json` on scikit-image's sample photos): the crop
around its mask, then for each checkpoint the previews (`modelzoo.mesh.preview`) of its
candidates for seeds 0..N-1 (4 steps, the default camera, as the demo project generates them).
Prints one JSON line: the sheet's path and the seconds per checkpoint.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import harness

CELL = 128


def demo_objects():
    import skimage.data
    from PIL import Image, ImageDraw

    # engine/demo/objects.json read as a file: engine.demo itself needs Django set up
    spec = json.loads((harness.ROOT / "engine" / "demo" / "objects.json").read_text())
    for photo in spec["photos"]:
        image = np.asarray(Image.fromarray(getattr(skimage.data, photo["name"])()).convert("RGB"))
        for obj in photo["objects"]:
            canvas = Image.new("L", (image.shape[1], image.shape[0]), 0)
            for poly in obj["polygons"]:
                ImageDraw.Draw(canvas).polygon(list(zip(poly[::2], poly[1::2])), fill=1)
            yield f"{photo['name']}/{obj['label']}", image, np.asarray(canvas).astype(bool)


def crop_cell(image, mask):
    from PIL import Image

    from modelzoo.builtin.data import mask_box

    u, v, side = mask_box(mask)
    box = (int(u - side / 2), int(v - side / 2), int(u + side / 2), int(v + side / 2))
    return np.asarray(Image.fromarray(image).crop(box).resize((CELL, CELL)).convert("RGBA"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", required=True)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import torch
    from PIL import Image

    from modelzoo.builtin import BuiltinGenerator
    from modelzoo.generators.base import GenerationRequest
    from modelzoo.mesh.preview import render_preview

    torch.set_num_threads(2)
    objects = list(demo_objects())
    gens = [BuiltinGenerator.from_checkpoint(p, cached=False) for p in args.checkpoint]
    rows, seconds = [], [0.0] * len(gens)
    for _name, image, mask in objects:
        cells = [crop_cell(image, mask)]
        for k, gen in enumerate(gens):
            t0 = time.time()
            cands = gen.generate(GenerationRequest(image=image, mask=mask, seeds=list(range(args.seeds)), steps=4))
            seconds[k] += time.time() - t0
            cells.append(np.full((CELL, 8, 4), 255, np.uint8))  # a white gap between checkpoints
            cells += [render_preview(c.vertices, c.faces, c.vertex_colors, size=CELL) for c in cands]
        rows.append(np.concatenate(cells, axis=1))
    sheet = np.concatenate(rows, axis=0)
    background = np.full(sheet.shape[:2] + (3,), 255, np.uint8)
    alpha = sheet[..., 3:4] / 255.0
    Image.fromarray((sheet[..., :3] * alpha + background * (1 - alpha)).astype(np.uint8)).save(args.out)
    harness.print_figures({"out": args.out, "objects": [n for n, _, _ in objects], "checkpoints": args.checkpoint,
                           "seconds": [round(s, 1) for s in seconds]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
