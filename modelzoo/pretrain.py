"""Synthetic pretraining of the built-in model's bootstrap checkpoint.

    python -m modelzoo.pretrain --seed 0 --out modelzoo/checkpoints/bootstrap.pt

Stages (about 12 minutes on 2 CPU cores with the defaults):
1. render the synthetic training set (seeds disjoint from the gold set);
2. train the shape autoencoder on its 32^3 occupancies;
3. freeze it, then train the image encoder and the velocity network by conditional flow
   matching on [shape latent, layout] (plus an auxiliary mean-prediction loss);
4. evaluate on the synthetic gold set against a trivial baseline and write
   ``<out>.json`` next to the checkpoint: how it was made and the figures.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time

import numpy as np

TRAIN_SEED_BASE = 10_000_000  # training scenes: seed * TRAIN_SEED_BASE + i (gold set: 900_000_000 + i)


def log(msg: str) -> None:
    print(f"[pretrain {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _progress(step: int, steps: int, t0: float, budget_s: float) -> float:
    """Training progress in [0, 1]: by steps, or by wall clock if the machine is slower
    than planned (shared CPUs), so the learning-rate schedule always completes in time."""
    return max(step / steps, (time.time() - t0) / budget_s)


def train_autoencoder(model, occ, steps: int, batch: int, lr: float, seed: int, budget_s: float = 1e9):
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    params = list(model.shape_encoder.parameters()) + list(model.shape_decoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-5)
    n = len(occ)
    t0 = time.time()
    hist = []
    for step in range(steps):
        prog = _progress(step, steps, t0, budget_s)
        if prog >= 1.0:
            log(f"AE stopped by the time budget at step {step}")
            break
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * prog)) + 1e-5
        idx = torch.randint(n, (batch,), generator=g)
        x = torch.from_numpy(occ[idx.numpy()]).float()
        z = model.shape_encoder(x)
        # Noise on the latent makes the decoder tolerant of the flow's sampling error.
        z_noisy = z + 0.05 * torch.randn(z.shape, generator=g) * z.detach().std()
        logits = model.shape_decoder(z_noisy)
        bce = F.binary_cross_entropy_with_logits(logits, x)
        p = torch.sigmoid(logits)
        soft_iou = (p * x).sum(dim=(1, 2, 3)) / (p + x - p * x).sum(dim=(1, 2, 3)).clamp_min(1e-6)
        loss = bce + 0.5 * (1 - soft_iou).mean() + 1e-4 * (z ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1 or _progress(step + 1, steps, t0, budget_s) >= 1.0:
            with torch.no_grad():
                iou = (((logits > 0) & (x > 0.5)).sum() / ((logits > 0) | (x > 0.5)).sum()).item()
            hist.append({"step": step, "loss": float(loss.detach()), "iou": iou, "seconds": round(time.time() - t0, 1)})
            log(f"AE step {step}/{steps} loss {loss.item():.4f} bce {bce.item():.4f} IoU {iou:.3f} "
                f"({time.time() - t0:.0f}s)")
    return hist


def encode_all(model, occ, batch: int = 256):
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(occ), batch):
            out.append(model.shape_encoder(torch.from_numpy(occ[i:i + batch]).float()))
    return torch.cat(out)


def jitter_boxes(boxes: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Random shifts (+-amount of the box) and zooms of the crop boxes (augmentation)."""
    b = boxes.copy()
    b[:, :2] += rng.uniform(-amount, amount, size=(len(b), 2)) * b[:, 2:3]
    b[:, 2] *= np.exp(rng.uniform(-amount, amount, size=len(b)))
    return b


def train_flow(model, data, latents, steps: int, batch: int, lr: float, seed: int, repeats: int = 4,
               aux_weight: float = 0.5, ema_decay: float = 0.998, budget_s: float = 1e9):
    import torch
    import torch.nn.functional as F

    from modelzoo.builtin.data import crop_batch, to_input
    from modelzoo.builtin.layout import box_features, encode_layout
    from modelzoo.builtin.losses import flow_matching_loss

    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    params = list(model.image_encoder.parameters()) + list(model.velocity_net.parameters()) + \
        list(model.mean_head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2)  # uint8 (N, 3, H, W), no copy
    masks = torch.from_numpy(data["masks"])
    n = len(images)
    t0 = time.time()
    hist = []
    warm = max(1, steps // 50)
    for step in range(steps):
        prog = _progress(step, steps, t0, budget_s)
        if prog >= 1.0:
            log(f"flow stopped by the time budget at step {step}")
            break
        lr_now = lr * min(1.0, (step + 1) / warm) * (0.5 * (1 + math.cos(math.pi * prog))) + 1e-6
        for group in opt.param_groups:
            group["lr"] = lr_now
        idx = rng.integers(n, size=batch)
        boxes = jitter_boxes(data["boxes"][idx], rng, 0.08)
        K = data["K"][idx]
        x = torch.cat([images[idx].float(), masks[idx, None].float()], dim=1)
        # Photometric jitter: brightness/contrast per sample.
        gain = torch.from_numpy(rng.uniform(0.75, 1.25, size=(batch, 1, 1, 1))).float()
        bias = torch.from_numpy(rng.uniform(-20, 20, size=(batch, 1, 1, 1))).float()
        x[:, :3] = (x[:, :3] * gain + bias).clamp(0, 255)
        crops = to_input(crop_batch(x, torch.from_numpy(boxes).float()))
        feats = torch.from_numpy(box_features(boxes, K))
        lay = encode_layout(data["R"][idx], data["t"][idx], data["s"][idx], boxes, K)
        raw = torch.cat([latents[idx], torch.from_numpy(lay).float()], dim=1)
        x1 = model.normalise(raw)
        cond = model.encode_condition(crops, feats)
        fm = flow_matching_loss(model, cond.repeat(repeats, 1), x1.repeat(repeats, 1), generator=g)
        aux = F.mse_loss(model.mean_head(cond), x1)
        loss = fm + aux_weight * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            d = min(ema_decay, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(d).add_(pm.detach(), alpha=1 - d)
        if step % 100 == 0 or step == steps - 1 or _progress(step + 1, steps, t0, budget_s) >= 1.0:
            hist.append({"step": step, "flow": float(fm.detach()), "aux": float(aux.detach()),
                         "seconds": round(time.time() - t0, 1)})
            log(f"flow step {step}/{steps} flow {fm.item():.4f} aux {aux.item():.4f} lr {lr_now:.2e} "
                f"({time.time() - t0:.0f}s)")
    model.load_state_dict(ema.state_dict())
    return hist


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="modelzoo/checkpoints/bootstrap.pt")
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--ae-steps", type=int, default=1000)
    ap.add_argument("--flow-steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--gold-size", type=int, default=200)
    ap.add_argument("--ae-minutes", type=float, default=4.0, help="wall-clock cap of the autoencoder stage")
    ap.add_argument("--flow-minutes", type=float, default=7.0, help="wall-clock cap of the flow stage")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default="/tmp")
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)

    started = time.time()
    from modelzoo.builtin.data import build_dataset, mask_box

    # Render before torch starts its thread pool (the pool forks).
    data = build_dataset(args.seed * TRAIN_SEED_BASE, args.train_size, workers=args.threads,
                         cache_dir=args.cache_dir, log=log)
    data["images"], data["masks"] = data.pop("image"), data.pop("mask")
    data["boxes"] = np.stack([mask_box(m) for m in data["masks"]])
    t_data = time.time() - started
    log(f"training set: {len(data['images'])} scenes ({t_data:.0f}s)")

    import torch

    from modelzoo.builtin.layout import encode_layout
    from modelzoo.builtin.model import BuiltinModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = BuiltinModel()
    t1 = time.time()
    ae_hist = train_autoencoder(model, data["occ"], args.ae_steps, 32, 2e-3, args.seed, budget_s=60 * args.ae_minutes)
    t_ae = time.time() - t1
    for p in list(model.shape_encoder.parameters()) + list(model.shape_decoder.parameters()):
        p.requires_grad_(False)
    latents = encode_all(model, data["occ"])
    lay = encode_layout(data["R"], data["t"], data["s"], data["boxes"], data["K"])
    raw = torch.cat([latents, torch.from_numpy(lay).float()], dim=1)
    model.x_mean.copy_(raw.mean(dim=0))
    model.x_std.copy_(raw.std(dim=0).clamp_min(1e-3))
    t2 = time.time()
    flow_hist = train_flow(model, data, latents, args.flow_steps, args.batch, 1e-3, args.seed + 1,
                           budget_s=60 * args.flow_minutes)
    t_flow = time.time() - t2
    model.eval()

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    record = {
        "command": "python -m modelzoo.pretrain " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed,
        "train_scenes": args.train_size,
        "train_seed_range": [args.seed * TRAIN_SEED_BASE, args.seed * TRAIN_SEED_BASE + args.train_size],
        "autoencoder": {"steps_planned": args.ae_steps, "steps_done": ae_hist[-1]["step"] + 1, "batch": 32, "seconds": round(t_ae, 1), "history": ae_hist[-3:]},
        "flow": {"steps_planned": args.flow_steps, "steps_done": flow_hist[-1]["step"] + 1, "batch": args.batch, "noise_repeats": 4, "seconds": round(t_flow, 1),
                 "history": flow_hist[-3:]},
        "data_seconds": round(t_data, 1),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "config": model.config,
    }
    model.save(args.out, meta={k: record[k] for k in ("command", "seed", "train_scenes", "torch")})
    log(f"saved {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB)")
    if not args.no_eval:
        from modelzoo.evaluate import evaluate

        t3 = time.time()
        record["evaluation"] = evaluate(args.out, n=args.gold_size, log=log)
        record["evaluation_seconds"] = round(time.time() - t3, 1)
    record["duration_seconds"] = round(time.time() - started, 1)
    json_path = os.path.splitext(args.out)[0] + ".json"
    with open(json_path, "w") as fh:
        json.dump(record, fh, indent=2)
    log(f"wrote {json_path}; total {record['duration_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
