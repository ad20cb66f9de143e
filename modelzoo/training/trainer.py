"""The reference trainer of the built-in model: SFT, then flow-matching DPO (SAM 3D, sec. 4).

    python -m modelzoo.training --checkpoint parent.pt --sft SFT_DIR --dpo DPO_DIR --out new.pt

* SFT: the conditional flow-matching loss on the annotators' chosen candidates. A chosen
  candidate's GLB + layout becomes its flow target x_1 with `BuiltinModel.encode_candidate`
  (the mesh voxelised to the model's 32^3 occupancy grid, then the frozen shape encoder).
* DPO: the SFT model, frozen, is the reference; the paper's loss
  ``-log sigmoid(-beta * [(e_w - e_w,ref) - (e_l - e_l,ref)])`` with the same noise and time
  step for winner and loser (`modelzoo.builtin.losses.flow_dpo_loss`).

* Decoder (with SFT, `decoder_steps` > 0): the shape decoder learns to give back the real
  shapes among the SFT rows (artists' meshes, retrieval picks) from their latents, with
  pretraining shapes replayed beside them.

The velocity network trains (and the image encoder with `train_image_encoder`); the shape
encoder stays frozen (the flow targets live in its latent space), and so does the decoder
unless `decoder_steps` says otherwise. The new checkpoint's `meta` holds its lineage:
parent, snapshots, hyper-parameters, and the loss history. Plain torch: no Django.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

from modelzoo.builtin.losses import autoencoder_loss, flow_dpo_loss, flow_matching_loss
from modelzoo.builtin.model import OCC_RES, BuiltinModel
from modelzoo.files import sha256_file
from modelzoo.training.snapshot import (
    SFT_SOURCES,
    Encoder,
    TrainingError,
    dpo_tensors,
    open_snapshot,
    require_kind,
    sft_tensors,
    shape_occupancies,
)
from modelzoo.synth.shapes import DOMAINS, occupancy

STAGES = ("sft", "dpo", "both")


@dataclass
class HyperParameters:
    sft_steps: int = 300
    sft_lr: float = 1e-4
    sft_batch: int = 32
    noise_repeats: int = 4  # noise draws per example and step (variance reduction, as in pretraining)
    # From the parent (stage "dpo"), 600 steps at 5e-5 raised the target domain's gold voxel IoU
    # in every variant tried; 200 at 1e-5 moved it less, beta 2000 or lr 2e-4 lowered it (docs/loop.md).
    dpo_steps: int = 600
    dpo_lr: float = 5e-5
    dpo_batch: int = 32
    beta: float = 500.0  # errors are means over the flow vector's dimensions (see losses.py)
    weight_decay: float = 1e-4
    # Exponential moving average of the weights (as in pretraining): the saved model is the
    # average over the last ~1/(1-ema) steps, which damps the step-to-step noise of small data.
    ema: float = 0.99
    # False: only the velocity network learns and each image is encoded once (fast on a CPU,
    # and a few hundred examples cannot overfit the image encoder); True: both learn.
    train_image_encoder: bool = False
    seed: int = 0
    # Which SFT rows train: "all", or a comma list of "artist", "retrieval", "model" (snapshot.SFT_SOURCES).
    sft_sources: str = "all"
    # Which DPO pairs train, by their chosen side's source (the same names): "artist,model" leaves
    # out the pairs a retrieval shape won, which pull the flow toward a silhouette fit's layout.
    dpo_sources: str = "all"
    # New photos of each real shape among the SFT targets (artists' meshes, retrieval picks):
    # renders at poses drawn as the pretraining scenes' (`modelzoo.training.views`). 0: only the
    # item's own photo, as annotated.
    sft_views: int = 0
    # The shape decoder's fine-tuning on the real shapes among the SFT rows (with the SFT stage).
    # The bootstrap's autoencoder learned primitives: a household table came back from its own
    # latent at voxel IoU 0.37, the household gold set at 0.82; 150 steps on 75 such shapes
    # brought it to 0.95, and the loop's checkpoints gained twice as much (docs/loop.md, "The
    # decoder had never seen a table"). The encoder stays frozen, so the flow's targets keep
    # their meaning. 0: the decoder stays the parent's.
    decoder_steps: int = 150
    decoder_lr: float = 5e-4
    decoder_batch: int = 32
    decoder_sources: str = "artist,retrieval"  # the model's own picks are its decoder's output already
    # Share of each decoder batch drawn fresh from the pretraining shapes, so that the decoder
    # keeps them (without: the primitives' round trip fell from 0.94 to 0.90; with half: 0.93).
    decoder_replay: float = 0.5

    def check(self) -> None:
        """TrainingError naming the first value that cannot train, before any work is done."""
        for f in fields(self):
            value, kind = getattr(self, f.name), type(f.default)
            accepted = (int, float) if kind is float else kind  # 1 is a fine learning rate, True is not
            if not isinstance(value, accepted) or (isinstance(value, bool) and kind is not bool):
                raise TrainingError(f"{f.name} {value!r}: must be {_KIND_NAMES[kind]}.")
        self.sft_source_set(), self.dpo_source_set(), self.decoder_source_set()
        for name, least in _MINIMUMS.items():
            if getattr(self, name) < least:
                raise TrainingError(f"{name} {getattr(self, name)}: must be at least {least}.")
        for name in ("sft_lr", "dpo_lr", "decoder_lr", "beta"):
            if not getattr(self, name) > 0:
                raise TrainingError(f"{name} {getattr(self, name)}: must be positive.")
        if not 0 <= self.ema < 1:
            raise TrainingError(f"ema {self.ema}: must be at least 0 and below 1.")
        if not 0 <= self.decoder_replay < 1:
            raise TrainingError(f"decoder_replay {self.decoder_replay}: the share of a decoder batch drawn "
                                "from the pretraining shapes must be at least 0 and below 1.")

    def sft_source_set(self) -> tuple[str, ...] | None:
        return _source_set("sft_sources", self.sft_sources)

    def dpo_source_set(self) -> tuple[str, ...] | None:
        return _source_set("dpo_sources", self.dpo_sources)

    def decoder_source_set(self) -> tuple[str, ...] | None:
        return _source_set("decoder_sources", self.decoder_sources)


_KIND_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}
_MINIMUMS = {"sft_steps": 0, "sft_views": 0, "dpo_steps": 0, "decoder_steps": 0, "noise_repeats": 1,
             "sft_batch": 1, "dpo_batch": 1, "decoder_batch": 1}


def _source_set(name: str, value: str) -> tuple[str, ...] | None:
    if value == "all":
        return None
    names = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = [s for s in names if s not in SFT_SOURCES]
    if unknown or not names:
        raise TrainingError(f"{name} {value!r}: use 'all' or a comma list of {', '.join(SFT_SOURCES)}.")
    return names


def load_parent(path: str) -> BuiltinModel:
    """The checkpoint to start from, or TrainingError when it is not a built-in model."""
    if not path or not os.path.exists(path):
        raise TrainingError(f"Checkpoint file {path!r} does not exist.")
    try:
        model = BuiltinModel.load(path)
    except Exception as exc:  # torch.load of a foreign file raises many kinds of errors
        raise TrainingError(f"{path} is not a built-in model checkpoint ({exc}); the reference trainer only "
                            "trains the built-in model. Train other backends with their own code.") from None
    return model


def check_compatible(policy: BuiltinModel, reference: BuiltinModel) -> None:
    if policy.config != reference.config:
        raise TrainingError(f"The reference checkpoint's architecture {reference.config} differs from the "
                            f"policy's {policy.config}; DPO needs the SFT model of the same architecture.")


def _trainable(model: BuiltinModel, *modules: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters of `modules`, the only ones of `model` that will get gradients."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def _flow_modules(model: BuiltinModel, hp: "HyperParameters") -> list[torch.nn.Module]:
    return [model.velocity_net] + ([model.image_encoder] if hp.train_image_encoder else [])


class _Conditions:
    """cond for a batch: recomputed when the image encoder trains, else encoded once."""

    def __init__(self, model: BuiltinModel, data: dict, train_encoder: bool):
        self.model, self.data, self.train_encoder = model, data, train_encoder
        if not train_encoder:
            with torch.no_grad():
                self.cached = torch.cat([model.encode_condition(data["crops"][i:i + 256], data["feats"][i:i + 256])
                                         for i in range(0, len(data["crops"]), 256)])

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        if self.train_encoder:
            return self.model.encode_condition(self.data["crops"][idx], self.data["feats"][idx])
        return self.cached[idx]


@contextlib.contextmanager
def _threads_for(hp: HyperParameters):
    """One torch thread for the small MLP steps of a frozen-encoder run: on a shared 2-core
    machine two threads made a step 8x slower (0.9 s vs 0.11 s, measured), none faster."""
    before = torch.get_num_threads()
    if not hp.train_image_encoder:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _EMA:
    def __init__(self, params: list[torch.nn.Parameter], decay: float):
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self, step: int):
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    @torch.no_grad()
    def copy_to_params(self):
        if self.decay > 0:
            for s, p in zip(self.shadow, self.params):
                p.copy_(s)


def _lr(base: float, step: int, steps: int) -> float:
    warm = max(1, steps // 20)
    return base * min(1.0, (step + 1) / warm) * 0.5 * (1 + math.cos(math.pi * step / steps))


def _update(opt, params: list[torch.nn.Parameter], ema: _EMA, loss: torch.Tensor, step: int, lr: float) -> None:
    """One optimiser step at `lr` (gradients clipped to norm 1), then the weights' average."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    ema.update(step)


def train_sft(model: BuiltinModel, data: dict, hp: HyperParameters, log=print, progress=None) -> list[dict]:
    params = _trainable(model, *_flow_modules(model, hp))
    model.train()
    conds = _Conditions(model, data, hp.train_image_encoder)
    opt = torch.optim.AdamW(params, lr=hp.sft_lr, weight_decay=hp.weight_decay)
    ema = _EMA(params, hp.ema)
    g = torch.Generator().manual_seed(hp.seed)
    n, hist, t0 = len(data["x1"]), [], time.time()
    R = hp.noise_repeats
    for step in range(hp.sft_steps):
        idx = torch.randint(n, (min(hp.sft_batch, n),), generator=g)
        cond = conds(idx)
        loss = flow_matching_loss(model, cond.repeat(R, 1), data["x1"][idx].repeat(R, 1),
                                  weights=data["weights"][idx].repeat(R), generator=g)
        _update(opt, params, ema, loss, step, _lr(hp.sft_lr, step, hp.sft_steps))
        if step % 25 == 0 or step == hp.sft_steps - 1:
            hist.append({"step": step, "loss": round(float(loss.detach()), 5), "seconds": round(time.time() - t0, 1)})
            log(f"sft step {step + 1}/{hp.sft_steps} loss {float(loss.detach()):.4f}")
        if progress:
            progress(stage="sft", step=step + 1, steps=hp.sft_steps, history=hist)
    ema.copy_to_params()
    model.eval()
    return hist


def train_decoder(model: BuiltinModel, shapes: torch.Tensor, hp: HyperParameters, log=print,
                  progress=None) -> list[dict]:
    """Fine-tunes the shape decoder to give back `shapes` (N, 32, 32, 32) from their latents,
    the encoder frozen; `hp.decoder_replay` of each batch are fresh pretraining shapes."""
    params = _trainable(model, model.shape_decoder)
    model.train()
    opt = torch.optim.AdamW(params, lr=hp.decoder_lr, weight_decay=hp.weight_decay)
    ema = _EMA(params, hp.ema)
    g = torch.Generator().manual_seed(hp.seed + 2)
    rng = np.random.default_rng(hp.seed)
    pretraining_shape = DOMAINS["primitives"]
    n_replay = int(round(hp.decoder_batch * hp.decoder_replay))
    n, hist, t0 = len(shapes), [], time.time()
    for step in range(hp.decoder_steps):
        x = shapes[torch.randint(n, (hp.decoder_batch - n_replay,), generator=g)]
        if n_replay:
            replay = np.stack([occupancy(pretraining_shape(rng), OCC_RES) for _ in range(n_replay)])
            x = torch.cat([x, torch.from_numpy(replay).float()])
        loss, _, logits = autoencoder_loss(model, x, g)
        _update(opt, params, ema, loss, step, _lr(hp.decoder_lr, step, hp.decoder_steps))
        if step % 25 == 0 or step == hp.decoder_steps - 1:
            inside, target = logits.detach() > 0, x > 0.5
            iou = float((inside & target).sum() / (inside | target).sum().clamp_min(1))
            hist.append({"step": step, "loss": round(float(loss.detach()), 5), "voxel_iou": round(iou, 4),
                         "seconds": round(time.time() - t0, 1)})
            log(f"decoder step {step + 1}/{hp.decoder_steps} loss {float(loss.detach()):.4f} voxel IoU {iou:.3f}")
        if progress:
            progress(stage="decoder", step=step + 1, steps=hp.decoder_steps, history=hist)
    ema.copy_to_params()
    for p in params:
        p.requires_grad_(False)
    model.eval()
    return hist


def train_dpo(model: BuiltinModel, reference: BuiltinModel, data: dict, hp: HyperParameters, log=print,
              progress=None) -> list[dict]:
    check_compatible(model, reference)
    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    params = _trainable(model, *_flow_modules(model, hp))
    model.train()
    conds = _Conditions(model, data, hp.train_image_encoder)
    ref_conds = _Conditions(reference, data, False)
    opt = torch.optim.AdamW(params, lr=hp.dpo_lr, weight_decay=hp.weight_decay)
    ema = _EMA(params, hp.ema)
    g = torch.Generator().manual_seed(hp.seed + 1)
    n, hist, t0 = len(data["x1_w"]), [], time.time()
    R = hp.noise_repeats
    acc = []
    for step in range(hp.dpo_steps):
        idx = torch.randint(n, (min(hp.dpo_batch, n),), generator=g)
        cond, ref_cond = conds(idx), ref_conds(idx)
        # One noise and time per pair, shared by winner and loser (drawn inside flow_dpo_loss).
        loss, stats = flow_dpo_loss(model, reference, cond.repeat(R, 1), data["x1_w"][idx].repeat(R, 1),
                                    data["x1_l"][idx].repeat(R, 1), beta=hp.beta, ref_cond=ref_cond.repeat(R, 1),
                                    generator=g)
        _update(opt, params, ema, loss, step, _lr(hp.dpo_lr, step, hp.dpo_steps))
        acc.append(stats["reward_accuracy"])
        if step % 25 == 0 or step == hp.dpo_steps - 1:
            recent = sum(acc[-25:]) / len(acc[-25:])
            hist.append({"step": step, "loss": round(stats["loss"], 5), "reward_accuracy": round(recent, 4),
                         "err_w": round(stats["err_w"], 5), "err_l": round(stats["err_l"], 5),
                         "seconds": round(time.time() - t0, 1)})
            log(f"dpo step {step + 1}/{hp.dpo_steps} loss {stats['loss']:.4f} reward accuracy {recent:.3f} "
                f"err_w {stats['err_w']:.4f} (ref {stats['err_w_ref']:.4f}) err_l {stats['err_l']:.4f} "
                f"(ref {stats['err_l_ref']:.4f})")
        if progress:
            progress(stage="dpo", step=step + 1, steps=hp.dpo_steps, history=hist)
    ema.copy_to_params()
    model.eval()
    return hist


def train(*, checkpoint: str, out: str, stage: str = "both", sft_dir: str | None = None,
          dpo_dir: str | None = None, reference: str | None = None, hp: HyperParameters | None = None,
          lineage: dict | None = None, log=print, progress=None) -> dict:
    """Train from `checkpoint` on snapshot folders and write `out` (+ `out.json`); returns the record.

    stage "sft" needs `sft_dir`; "dpo" needs `dpo_dir` and uses `reference` (default: the
    parent itself, i.e. the parent is taken as the SFT model); "both" needs both folders.
    `lineage` (e.g. the registry's parent id and snapshot ids) is merged into the record.
    """
    hp = hp or HyperParameters()
    if stage not in STAGES:
        raise TrainingError(f"Unknown stage {stage!r}; use one of {', '.join(STAGES)}.")
    hp.check()
    torch.manual_seed(hp.seed)
    # Read and check everything before any training step.
    sft = dpo = None
    if stage in ("sft", "both"):
        if not sft_dir:
            raise TrainingError("The SFT stage needs an SFT snapshot folder.")
        sft = open_snapshot(sft_dir)
        require_kind(sft, "sft", "sft")
    if stage in ("dpo", "both"):
        if not dpo_dir:
            raise TrainingError("The DPO stage needs a DPO snapshot folder.")
        dpo = open_snapshot(dpo_dir)
        require_kind(dpo, "dpo", "dpo")
    model = load_parent(checkpoint)
    ref_model = None
    if stage == "dpo" and reference:
        ref_model = load_parent(reference)
        check_compatible(model, ref_model)
    t0 = time.time()
    encoder = Encoder(model)
    record: dict = {"format": "modelzoo.training/1", "stage": stage, "hyperparameters": asdict(hp),
                    "parent": {"path": os.path.abspath(checkpoint), "sha256": sha256_file(checkpoint)},
                    "snapshots": {}, "history": {}}
    if sft is not None:
        try:
            data = sft_tensors(sft, encoder, hp.sft_source_set(), views=hp.sft_views, seed=hp.seed)
        except TrainingError:
            if stage != "both" or hp.sft_source_set() is None:
                raise
            data = None  # a round without a target worth fitting (no hard case modelled): DPO only
        record["snapshots"]["sft"] = {"path": os.path.abspath(sft.path), "rows": len(sft.rows),
                                      "examples": len(data["x1"]) if data else 0, "sources": hp.sft_sources,
                                      **sft.provenance}
        if hp.decoder_steps > 0:
            shapes = shape_occupancies(sft, encoder, hp.decoder_source_set())
            record["snapshots"]["sft"]["decoder_shapes"] = len(shapes)
            if len(shapes):
                log(f"decoder: {len(shapes)} shapes ({hp.decoder_sources}) from {sft.path}")
                record["history"]["decoder"] = train_decoder(model, shapes, hp, log=log, progress=progress)
            else:
                log(f"decoder: no {hp.decoder_sources} mesh in {sft.path}; the decoder stays the parent's")
        if data is None:
            log(f"SFT: no {hp.sft_sources} target in {sft.path}; skipped")
        else:
            log(f"SFT: {len(data['x1'])} targets ({hp.sft_sources}) from {sft.path} "
                f"({time.time() - t0:.0f}s to encode)")
            with _threads_for(hp):
                record["history"]["sft"] = train_sft(model, data, hp, log=log, progress=progress)
    if dpo is not None:
        data = dpo_tensors(dpo, encoder, hp.dpo_source_set())
        record["snapshots"]["dpo"] = {"path": os.path.abspath(dpo.path), "rows": len(dpo.rows),
                                      "pairs": len(data["x1_w"]), **dpo.provenance}
        if ref_model is None:
            ref_model = copy.deepcopy(model)  # the SFT model (or the parent in a DPO-only run), frozen
        log(f"DPO: {len(data['x1_w'])} preference pairs from {dpo.path}, beta {hp.beta}")
        with _threads_for(hp):
            record["history"]["dpo"] = train_dpo(model, ref_model, data, hp, log=log, progress=progress)
        if record["history"]["dpo"]:
            record["dpo_reward_accuracy"] = record["history"]["dpo"][-1]["reward_accuracy"]
    record["seconds"] = round(time.time() - t0, 1)
    record.update(lineage or {})
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    meta = {k: record[k] for k in ("format", "stage", "hyperparameters", "parent", "snapshots")}
    model.save(out, meta=json.loads(json.dumps(meta)))
    record["sha256"] = sha256_file(out)
    with open(os.path.splitext(out)[0] + ".json", "w") as fh:
        json.dump(record, fh, indent=2)
    log(f"wrote {out} ({record['seconds']:.0f}s)")
    return record
