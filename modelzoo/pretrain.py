"""Synthetic pretraining of the built-in model's bootstrap checkpoint.

    python -m modelzoo.pretrain --seed 0 --out modelzoo/checkpoints/bootstrap.pt

Stages (about 12 minutes on 2 CPU cores with the defaults):
1. render the synthetic training set (seeds disjoint from the gold set);
2. train the shape autoencoder on its 32^3 occupancies;
3. freeze it, then train the image encoder and the velocity network by conditional flow
   matching on [shape latent, layout] (plus an auxiliary mean-prediction loss);
4. evaluate on the synthetic gold set against a trivial baseline and write
   ``<out>.json`` next to the checkpoint: how it was made and the figures.

Until the validation loss flattens (``--patience P``): a held-out split (``--val-size`` scenes
rendered after the training seeds) is scored every ``--eval-every`` steps; the learning rate
is constant after warm-up and drops by ``--lr-drop`` after P evaluations without a relative
improvement of ``--min-delta``; after ``--max-drops`` drops, P more such evaluations stop the
stage. The best weights by validation loss are kept, and the curve goes into the JSON record.

Resumable (``--state-dir DIR``): every ``--save-every-minutes`` (and when a stage ends or the
wall-clock cap is reached) DIR/state.pt gets the weights, the EMA, the optimiser, the step,
the RNG states, the histories and the plateau counters; rerun the same command with
``--resume`` to go on from there. ``--init-from CKPT`` starts from a built-in checkpoint's
weights (and its normalisation) instead of random ones; ``--ae-steps 0`` then keeps its
autoencoder as it is.
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


#: Set by SIGTERM / SIGINT: the stage saves its resumable state at the next step and the run ends.
STOP = {"requested": False}


def _request_stop(signum, frame) -> None:
    STOP["requested"] = True
    log(f"signal {signum}: saving the resumable state and stopping")


def log(msg: str) -> None:
    print(f"[pretrain {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Plateau:
    """"Until the validation loss flattens": constant learning rate, dropped by `drop` after
    `patience` evaluations without a relative improvement of `min_delta`; after `max_drops`
    drops, `patience` more such evaluations stop the stage. `patience` 0: never (the
    cosine schedule over the planned steps, as before)."""

    def __init__(self, patience: int = 0, min_delta: float = 0.002, drop: float = 0.3, max_drops: int = 2):
        self.patience, self.min_delta, self.drop, self.max_drops = patience, min_delta, drop, max_drops
        self.best = math.inf
        self.best_step = -1
        self.bad = 0
        self.drops = 0
        self.scale = 1.0
        self.stopped = False

    def update(self, step: int, value: float) -> bool:
        """Records one evaluation; True when it is the best so far (keep those weights)."""
        progress = self.best == math.inf or value < self.best * (1 - self.min_delta)
        is_best = value < self.best
        if is_best:
            self.best, self.best_step = value, step
        if progress:
            self.bad = 0
            return True
        self.bad += 1
        if self.patience and self.bad >= self.patience:
            if self.drops < self.max_drops:
                self.drops += 1
                self.scale *= self.drop
                self.bad = 0
                log(f"validation flat for {self.patience} evaluations: learning rate x{self.scale:.3g}")
            else:
                self.stopped = True
        return is_best

    def state(self) -> dict:
        return {k: getattr(self, k) for k in ("best", "best_step", "bad", "drops", "scale", "stopped")}

    def load(self, st: dict) -> None:
        for k, v in st.items():
            setattr(self, k, v)


class Checkpointer:
    """Saves the resumable state (state_dir/state.pt, written atomically) every `every_s` seconds."""

    def __init__(self, state_dir: str | None, every_s: float):
        self.dir, self.every_s, self.last = state_dir, every_s, time.time()
        if state_dir:
            os.makedirs(state_dir, exist_ok=True)

    @property
    def path(self) -> str | None:
        return os.path.join(self.dir, "state.pt") if self.dir else None

    def load(self) -> dict | None:
        import torch

        if not self.path or not os.path.exists(self.path):
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def due(self) -> bool:
        return bool(self.dir) and time.time() - self.last >= self.every_s

    def save(self, state: dict) -> None:
        import torch

        if not self.dir:
            return
        tmp = self.path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.path)
        self.last = time.time()
        log(f"saved the resumable state ({state['stage']} step {state['step']}) to {self.path}")


def _progress(step: int, steps: int, t0: float, budget_s: float) -> float:
    """Training progress in [0, 1]: by steps, or by wall clock if the machine is slower
    than planned (shared CPUs), so the learning-rate schedule always completes in time."""
    return max(step / steps, (time.time() - t0) / budget_s)


def _deadline_budget(stage_minutes: float, deadline: float | None) -> float:
    budget = 60 * stage_minutes
    if deadline:
        budget = min(budget, deadline - time.time())
    return budget


def _lr_factor(step: int, steps: int, warm: int, t0: float, budget_s: float, plateau: Plateau) -> float:
    if plateau.patience:
        return min(1.0, (step + 1) / warm) * plateau.scale
    return min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * _progress(step, steps, t0, budget_s)))


def _device(model):
    return next(model.parameters()).device


def _hard_iou(logits, x) -> float:
    return float((((logits > 0) & (x > 0.5)).sum() / ((logits > 0) | (x > 0.5)).sum().clamp_min(1)))


def validate_autoencoder(model, occ, batch: int = 250) -> dict:
    """Held-out loss (no latent noise) and voxel IoU of the autoencoder."""
    import torch

    from modelzoo.builtin.losses import autoencoder_loss

    losses, inter, union = [], 0.0, 0.0
    with torch.no_grad():
        for i in range(0, len(occ), batch):
            x = torch.from_numpy(occ[i:i + batch]).to(_device(model)).float()
            loss, _, logits = autoencoder_loss(model, x)
            losses.append(float(loss) * len(x))
            inter += float(((logits > 0) & (x > 0.5)).sum())
            union += float(((logits > 0) | (x > 0.5)).sum())
    return {"loss": sum(losses) / len(occ), "iou": inter / max(union, 1.0)}


def train_autoencoder(model, occ, steps: int, batch: int, lr: float, seed: int, budget_s: float = 1e9,
                      val_occ=None, eval_every: int = 200, plateau: Plateau | None = None,
                      checkpointer: Checkpointer | None = None, resume: dict | None = None) -> dict:
    """Trains the shape autoencoder; returns {"history", "curve", "stopped_by", "steps_done", "seconds"}."""
    import torch

    from modelzoo.builtin.losses import autoencoder_loss

    plateau = plateau or Plateau()
    g = torch.Generator().manual_seed(seed)
    params = list(model.shape_encoder.parameters()) + list(model.shape_decoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-5)
    n = len(occ)
    hist, curve, best, start, elapsed = [], [], None, 0, 0.0
    if resume:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["opt"])
        g.set_state(resume["torch_rng"])
        hist, curve, best, start, elapsed = (resume["hist"], resume["curve"], resume["best"], resume["step"],
                                             resume["elapsed"])
        plateau.load(resume["plateau"])
        log(f"AE resumed at step {start}")
    t0 = time.time() - elapsed
    t_budget = time.time()
    warm = 1 if not plateau.patience else max(1, min(100, steps // 50))
    stopped_by, step = "steps", start

    def snapshot(stage_step):
        return {"stage": "ae", "step": stage_step, "model": model.state_dict(), "opt": opt.state_dict(),
                "torch_rng": g.get_state(), "hist": hist, "curve": curve, "best": best,
                "elapsed": time.time() - t0, "plateau": plateau.state()}

    for step in range(start, steps):
        if STOP["requested"]:
            stopped_by = "signal"
            break
        if time.time() - t_budget >= budget_s:
            stopped_by = "wall clock"
            log(f"AE stopped by the time budget at step {step}")
            break
        if not plateau.patience and _progress(step, steps, t0, budget_s + elapsed) >= 1.0:
            stopped_by = "wall clock"
            break
        for group in opt.param_groups:
            group["lr"] = lr * _lr_factor(step, steps, warm, t0, budget_s + elapsed, plateau) + 1e-5
        idx = torch.randint(n, (batch,), generator=g)
        x = torch.from_numpy(occ[idx.numpy()]).to(_device(model)).float()
        loss, bce, logits = autoencoder_loss(model, x, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            hist.append({"step": step, "loss": float(loss.detach()), "iou": _hard_iou(logits.detach(), x),
                         "seconds": round(time.time() - t0, 1)})
            log(f"AE step {step}/{steps} loss {loss.item():.4f} bce {bce.item():.4f} IoU {hist[-1]['iou']:.3f} "
                f"({time.time() - t0:.0f}s)")
        if val_occ is not None and (step + 1) % eval_every == 0:
            v = validate_autoencoder(model, val_occ)
            is_best = plateau.update(step + 1, v["loss"])
            curve.append({"step": step + 1, "val_loss": v["loss"], "val_iou": v["iou"],
                          "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1)})
            log(f"AE validation at {step + 1}: loss {v['loss']:.4f} IoU {v['iou']:.4f}"
                f"{' (best)' if is_best else ''} [flat {plateau.bad}/{plateau.patience}, drops {plateau.drops}]")
            if is_best:
                best = {k: v.clone() for k, v in model.state_dict().items()}
            if plateau.stopped:
                stopped_by = "validation loss flat"
                step += 1
                break
        if checkpointer and checkpointer.due():
            checkpointer.save(snapshot(step + 1))
    else:
        step = steps
    if checkpointer:
        checkpointer.save(snapshot(step))
    if best is not None:
        model.load_state_dict(best)
    return {"history": hist, "curve": curve, "stopped_by": stopped_by, "steps_done": step,
            "seconds": round(time.time() - t0, 1), "best_step": plateau.best_step if curve else None}


def encode_all(model, occ, batch: int = 256):
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(occ), batch):
            out.append(model.shape_encoder(torch.from_numpy(occ[i:i + batch]).to(_device(model)).float()))
    return torch.cat(out)


def jitter_boxes(boxes: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Random shifts (+-amount of the box) and zooms of the crop boxes (augmentation)."""
    b = boxes.copy()
    b[:, :2] += rng.uniform(-amount, amount, size=(len(b), 2)) * b[:, 2:3]
    b[:, 2] *= np.exp(rng.uniform(-amount, amount, size=len(b)))
    return b


def _flow_inputs(model, data, latents, idx, boxes):
    import torch

    from modelzoo.builtin.layout import box_features, encode_layout

    dev = _device(model)
    images = torch.from_numpy(data["images"][idx]).to(dev).permute(0, 3, 1, 2).float()
    x = torch.cat([images, torch.from_numpy(data["masks"][idx]).to(dev)[:, None].float()], dim=1)
    layout = encode_layout(data["R"][idx], data["t"][idx], data["s"][idx], boxes, data["K"][idx])
    return x, boxes, torch.from_numpy(box_features(boxes, data["K"][idx])).to(dev), \
        model.normalise(torch.cat([latents[torch.from_numpy(idx).to(dev)],
                                   torch.from_numpy(layout).to(dev).float()], dim=1))


def validate_flow(model, val, val_latents, repeats: int = 4, aux_weight: float = 0.5, batch: int = 250,
                  seed: int = 12345) -> dict:
    """Held-out flow-matching loss (fixed noise and times, no augmentation) and auxiliary loss."""
    import torch
    import torch.nn.functional as F

    from modelzoo.builtin.data import crop_batch, to_input
    from modelzoo.builtin.losses import flow_matching_loss

    g = torch.Generator().manual_seed(seed)
    fm_sum, aux_sum, n = 0.0, 0.0, len(val["images"])
    with torch.no_grad():
        for i in range(0, n, batch):
            idx = np.arange(i, min(n, i + batch))
            x, boxes, feats, x1 = _flow_inputs(model, val, val_latents, idx, val["boxes"][idx])
            cond = model.encode_condition(to_input(crop_batch(x, torch.from_numpy(boxes).to(x.device).float())), feats)
            fm = flow_matching_loss(model, cond.repeat(repeats, 1), x1.repeat(repeats, 1), generator=g)
            fm_sum += float(fm) * len(idx)
            aux_sum += float(F.mse_loss(model.mean_head(cond), x1)) * len(idx)
    return {"flow": fm_sum / n, "aux": aux_sum / n, "loss": (fm_sum + aux_weight * aux_sum) / n}


def train_flow(model, data, latents, steps: int, batch: int, lr: float, seed: int, repeats: int = 4,
               aux_weight: float = 0.5, ema_decay: float = 0.998, budget_s: float = 1e9, val=None,
               val_latents=None, eval_every: int = 250, plateau: Plateau | None = None,
               checkpointer: Checkpointer | None = None, resume: dict | None = None) -> dict:
    """Trains the image encoder and velocity network; the model ends with the EMA weights (the
    best EMA by validation flow loss when there is a validation split).
    Returns {"history", "curve", "stopped_by", "steps_done", "seconds"}."""
    import torch
    import torch.nn.functional as F

    from modelzoo.builtin.data import crop_batch, to_input
    from modelzoo.builtin.losses import flow_matching_loss

    plateau = plateau or Plateau()
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    params = list(model.image_encoder.parameters()) + list(model.velocity_net.parameters()) + \
        list(model.mean_head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    ema_params, model_params = list(ema.parameters()), [p.detach() for p in model.parameters()]
    hist, curve, best, start, elapsed = [], [], None, 0, 0.0
    if resume:
        model.load_state_dict(resume["model"])
        ema.load_state_dict(resume["ema"])
        opt.load_state_dict(resume["opt"])
        g.set_state(resume["torch_rng"])
        rng.bit_generator.state = resume["np_rng"]
        hist, curve, best, start, elapsed = (resume["hist"], resume["curve"], resume["best"], resume["step"],
                                             resume["elapsed"])
        plateau.load(resume["plateau"])
        log(f"flow resumed at step {start}")
    dev = _device(model)
    # uint8 (N, 3, H, W): no copy on the CPU, the whole set in the GPU's memory on a GPU.
    images = torch.from_numpy(data["images"]).to(dev).permute(0, 3, 1, 2)
    masks = torch.from_numpy(data["masks"]).to(dev)
    n = len(images)
    t0 = time.time() - elapsed
    t_budget = time.time()
    warm = max(1, min(200, steps // 50))
    stopped_by, step = "steps", start
    from modelzoo.builtin.layout import box_features, encode_layout

    def snapshot(stage_step):
        return {"stage": "flow", "step": stage_step, "model": model.state_dict(), "ema": ema.state_dict(),
                "opt": opt.state_dict(), "torch_rng": g.get_state(), "np_rng": rng.bit_generator.state,
                "hist": hist, "curve": curve, "best": best, "elapsed": time.time() - t0,
                "plateau": plateau.state()}

    for step in range(start, steps):
        if STOP["requested"]:
            stopped_by = "signal"
            break
        if time.time() - t_budget >= budget_s:
            stopped_by = "wall clock"
            log(f"flow stopped by the time budget at step {step}")
            break
        if not plateau.patience and _progress(step, steps, t0, budget_s + elapsed) >= 1.0:
            stopped_by = "wall clock"
            break
        lr_now = lr * _lr_factor(step, steps, warm, t0, budget_s + elapsed, plateau) + 1e-6
        for group in opt.param_groups:
            group["lr"] = lr_now
        idx = rng.integers(n, size=batch)
        idx_dev = torch.from_numpy(idx).to(dev)
        boxes = jitter_boxes(data["boxes"][idx], rng, 0.08)
        K = data["K"][idx]
        x = torch.cat([images[idx_dev].float(), masks[idx_dev, None].float()], dim=1)
        # Photometric jitter: brightness/contrast per sample.
        gain = torch.from_numpy(rng.uniform(0.75, 1.25, size=(batch, 1, 1, 1))).to(dev).float()
        bias = torch.from_numpy(rng.uniform(-20, 20, size=(batch, 1, 1, 1))).to(dev).float()
        x[:, :3] = (x[:, :3] * gain + bias).clamp(0, 255)
        crops = to_input(crop_batch(x, torch.from_numpy(boxes).to(dev).float()))
        feats = torch.from_numpy(box_features(boxes, K)).to(dev)
        lay = encode_layout(data["R"][idx], data["t"][idx], data["s"][idx], boxes, K)
        raw = torch.cat([latents[idx_dev], torch.from_numpy(lay).to(dev).float()], dim=1)
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
            torch._foreach_lerp_(ema_params, model_params, 1 - d)
        if step % 100 == 0 or step == steps - 1:
            hist.append({"step": step, "flow": float(fm.detach()), "aux": float(aux.detach()),
                         "seconds": round(time.time() - t0, 1)})
            log(f"flow step {step}/{steps} flow {fm.item():.4f} aux {aux.item():.4f} lr {lr_now:.2e} "
                f"({time.time() - t0:.0f}s)")
        if val is not None and (step + 1) % eval_every == 0:
            v = validate_flow(ema, val, val_latents, aux_weight=aux_weight)
            is_best = plateau.update(step + 1, v["flow"])
            curve.append({"step": step + 1, "val_flow": v["flow"], "val_aux": v["aux"], "lr": lr_now,
                          "seconds": round(time.time() - t0, 1)})
            log(f"flow validation at {step + 1}: flow {v['flow']:.4f} aux {v['aux']:.4f}"
                f"{' (best)' if is_best else ''} [flat {plateau.bad}/{plateau.patience}, drops {plateau.drops}]")
            if is_best:
                best = {k: v.clone() for k, v in ema.state_dict().items()}
            if plateau.stopped:
                stopped_by = "validation loss flat"
                step += 1
                break
        if checkpointer and checkpointer.due():
            checkpointer.save(snapshot(step + 1))
    else:
        step = steps
    if checkpointer:
        checkpointer.save(snapshot(step))
    model.load_state_dict(best if best is not None else ema.state_dict())
    return {"history": hist, "curve": curve, "stopped_by": stopped_by, "steps_done": step,
            "seconds": round(time.time() - t0, 1), "best_step": plateau.best_step if curve else None}


def _parse_deadline(text: str | None) -> float | None:
    """'2026-11-26T18:40' (UTC) or '18:40' (today, UTC) -> epoch seconds."""
    if not text:
        return None
    import datetime as dt

    if "T" not in text:
        text = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT") + text
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()


def _check_device(ap, device: str) -> None:
    """Refuses, before hours of rendering, a device this machine does not have."""
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        ap.error(f"--device {device!r}: {exc}")
    if kind == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {device!r}: this torch ({torch.__version__}) sees no CUDA device")


def _split(data: dict) -> dict:
    data["images"], data["masks"] = data.pop("image"), data.pop("mask")
    from modelzoo.builtin.data import mask_box

    data["boxes"] = np.stack([mask_box(m) for m in data["masks"]])
    return data


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="modelzoo/checkpoints/bootstrap.pt")
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--ae-steps", type=int, default=1000, help="steps (the most, with --patience) of the autoencoder")
    ap.add_argument("--flow-steps", type=int, default=2400, help="steps (the most, with --patience) of the flow")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--flow-lr", type=float, default=1e-3)
    ap.add_argument("--ae-lr", type=float, default=2e-3)
    ap.add_argument("--gold-size", type=int, default=200)
    ap.add_argument("--ae-minutes", type=float, default=4.0, help="wall-clock cap of the autoencoder stage")
    ap.add_argument("--flow-minutes", type=float, default=7.0, help="wall-clock cap of the flow stage")
    ap.add_argument("--deadline", help="UTC time ('18:40' today, or '2026-11-26T18:40') by which training stops")
    ap.add_argument("--val-size", type=int, default=0, help="held-out scenes (seeds after the training ones)")
    ap.add_argument("--eval-every", type=int, default=250, help="steps between validations")
    ap.add_argument("--patience", type=int, default=0,
                    help="evaluations without improvement before a learning-rate drop / the stop (0: cosine schedule)")
    ap.add_argument("--min-delta", type=float, default=0.002, help="relative improvement that counts")
    ap.add_argument("--lr-drop", type=float, default=0.3)
    ap.add_argument("--max-drops", type=int, default=2)
    ap.add_argument("--init-from", help="built-in checkpoint to start from (weights and normalisation)")
    ap.add_argument("--state-dir", help="folder of the resumable state (state.pt)")
    ap.add_argument("--save-every-minutes", type=float, default=5.0)
    ap.add_argument("--resume", action="store_true", help="go on from --state-dir/state.pt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device of the training ('cuda' on a GPU)")
    ap.add_argument("--cache-dir", default="/tmp")
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)
    if args.patience and not args.val_size:
        ap.error("--patience needs a validation split (--val-size N)")
    if args.resume and not args.state_dir:
        ap.error("--resume needs --state-dir")
    _check_device(ap, args.device)
    deadline = _parse_deadline(args.deadline)
    if args.state_dir:
        import signal

        signal.signal(signal.SIGTERM, _request_stop)
        signal.signal(signal.SIGINT, _request_stop)

    started = time.time()
    from modelzoo.builtin.data import build_dataset

    # Render before torch starts its thread pool (the pool forks).
    base = args.seed * TRAIN_SEED_BASE
    data = _split(build_dataset(base, args.train_size, workers=args.threads, cache_dir=args.cache_dir, log=log))
    val = _split(build_dataset(base + args.train_size, args.val_size, workers=args.threads,
                               cache_dir=args.cache_dir, log=log)) if args.val_size else None
    t_data = time.time() - started
    log(f"training set: {len(data['images'])} scenes, validation {args.val_size} ({t_data:.0f}s)")

    import torch

    from modelzoo.builtin.layout import encode_layout
    from modelzoo.builtin.model import BuiltinModel

    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(args.seed)
    checkpointer = Checkpointer(args.state_dir, 60 * args.save_every_minutes)
    state = checkpointer.load() if args.resume else None
    if args.resume and state is None:
        log(f"no state in {args.state_dir}: starting afresh")
    model = BuiltinModel.load(args.init_from) if args.init_from else BuiltinModel()
    model.to(args.device)
    model.train()
    records = (state or {}).get("records", {})

    def plateau():
        return Plateau(args.patience, args.min_delta, args.lr_drop, args.max_drops)

    if state is None or state["stage"] == "ae":
        t1 = time.time()
        if args.ae_steps > 0:
            ae = train_autoencoder(model, data["occ"], args.ae_steps, 32, args.ae_lr, args.seed,
                                   budget_s=_deadline_budget(args.ae_minutes, deadline),
                                   val_occ=val["occ"] if val else None, eval_every=args.eval_every,
                                   plateau=plateau(), checkpointer=checkpointer, resume=state)
        else:
            ae = {"history": [], "curve": [], "stopped_by": "kept from --init-from", "steps_done": 0, "seconds": 0.0}
        if val is not None:
            ae["validation"] = validate_autoencoder(model, val["occ"])
        if ae["stopped_by"] == "signal":
            log(f"stopped; go on with: {_resume_command(argv)}")
            return 0
        records["autoencoder"] = dict(ae, steps_planned=args.ae_steps, batch=32)
        log(f"AE done in {time.time() - t1:.0f}s: {ae['stopped_by']}")
        state = None  # the flow stage starts afresh
    else:
        model.load_state_dict(state["model"])
    for p in list(model.shape_encoder.parameters()) + list(model.shape_decoder.parameters()):
        p.requires_grad_(False)
    latents = encode_all(model, data["occ"])
    if state is None and not (args.init_from and args.ae_steps == 0):
        lay = encode_layout(data["R"], data["t"], data["s"], data["boxes"], data["K"])
        raw = torch.cat([latents, torch.from_numpy(lay).to(latents.device).float()], dim=1)
        model.x_mean.copy_(raw.mean(dim=0))
        model.x_std.copy_(raw.std(dim=0).clamp_min(1e-3))
    val_latents = encode_all(model, val["occ"]) if val is not None else None
    if state is None or state["stage"] == "flow":
        if state is None:  # a resume from here skips the autoencoder stage
            checkpointer.save({"stage": "flow", "step": 0, "model": model.state_dict(), "records": records,
                               "fresh": True})
        resume = state if state is not None and not state.get("fresh") else None
        flow = train_flow(model, data, latents, args.flow_steps, args.batch, args.flow_lr, args.seed + 1,
                          budget_s=_deadline_budget(args.flow_minutes, deadline), val=val, val_latents=val_latents,
                          eval_every=args.eval_every, plateau=plateau(), checkpointer=_WithRecords(checkpointer, records),
                          resume=resume)
        if flow["stopped_by"] == "signal":
            log(f"stopped; go on with: {_resume_command(argv)}")
            return 0
        records["flow"] = dict(flow, steps_planned=args.flow_steps, batch=args.batch, noise_repeats=4, lr=args.flow_lr)
        if args.state_dir and flow["stopped_by"] != "wall clock":  # else --resume goes on training
            checkpointer.save({"stage": "done", "step": flow["steps_done"], "model": model.state_dict(),
                               "records": records})
    else:  # "done": only the checkpoint and the evaluation are left
        model.load_state_dict(state["model"])
    model.to("cpu")
    model.eval()

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    converged = all(records.get(k, {}).get("stopped_by") in ("validation loss flat", "kept from --init-from")
                    for k in ("autoencoder", "flow"))
    record = {
        "command": "python -m modelzoo.pretrain " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed,
        "init_from": args.init_from,
        "train_scenes": args.train_size,
        "train_seed_range": [base, base + args.train_size],
        "validation_seed_range": [base + args.train_size, base + args.train_size + args.val_size],
        "converged": converged,
        "autoencoder": records.get("autoencoder"),
        "flow": records.get("flow"),
        "data_seconds": round(t_data, 1),
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": args.threads,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "config": model.config,
    }
    if args.state_dir:
        record["resume_command"] = _resume_command(argv)
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


def _resume_command(argv) -> str:
    args = list(argv if argv is not None else sys.argv[1:])
    if "--deadline" in args:  # a new one is due
        i = args.index("--deadline")
        del args[i:i + 2]
    return "python -m modelzoo.pretrain " + " ".join(args + ([] if "--resume" in args else ["--resume"]))


class _WithRecords:
    """A Checkpointer whose saved states also carry the finished stages' records."""

    def __init__(self, inner: Checkpointer, records: dict):
        self.inner, self.records = inner, records

    def due(self) -> bool:
        return self.inner.due()

    def save(self, state: dict) -> None:
        self.inner.save(dict(state, records=self.records))


if __name__ == "__main__":
    raise SystemExit(main())
