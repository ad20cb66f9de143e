"""Model-assisted annotation, measured with the simulation's annotators (issue 16). No engine.

    nice .venv/bin/python bench/assisted.py                       # the setting of docs/assisted.md
    nice .venv/bin/python bench/assisted.py --train-objects 40 --objects 30 --shown 4 --random 1   # small

The simulated annotators are `engine.rounds.simulation`'s: they score a candidate by voxel IoU at
32^3 against the ground truth (meshes as oriented in the camera), run king of the hill over the
candidates in a random order, say "equal" within 0.02, flip a strict preference with probability
`--noise`, rate the winner from the same IoU (moved by one with probability `--noise`); below
alpha (3) the item is a hard case.

1. **Ranker.** A first round (`--train-objects` objects of the target domain, best-of-8 from the
   checkpoint; with `--train-retrieval K`, K of the 8 are the retrieval backend's nearest shapes, as in
   a round whose mix has that backend, so the ranker has seen its kind of candidate) is annotated; its DPO pairs (the winner against every candidate it beat, as the
   round's snapshot holds them) train the ranker (`modelzoo.ranker.fit`, Bradley-Terry), with 20%
   of the objects held out. On the held-out pairs: the ranker's agreement with the annotators'
   picks, next to the annotators' agreement with each other (a second simulated annotator judges
   the same pairs; "equal" counts half, as a tie of the ranker's scores does).
2. **Pre-ranking.** On `--objects` new objects, the same annotators, one judgement per object in
   each arm (`--shown` + `--random` candidates, so the same number of comparisons):
   plain: seeds 0..7 (best-of-8); assisted: `--m` seeds (plus, with `--assist-retrieval K`, the K
   nearest shapes of the retrieval backend below), the ranker's top `--shown` plus `--random` drawn
   from the rest. Acceptance = the winner rated at least alpha.
3. **Hard-case recovery.** Every hard case of the assisted arm gets `--recover-m` new seeds (and,
   with `--library S --recover-retrieval K`, the K nearest shapes of a retrieval backend over S
   shapes of the domain that no measured object uses, after the `--assist-retrieval` ones its pool
   had, as the engine's recovery asks the backend), is ranked, and judged again on the top
   `--shown` + `--random`: recovered if that winner is rated at least alpha (one more judgement per
   hard case; counted), and recoverable if any of its new candidates would be (no noise). With
   `--recover-first-pool` the first pass's candidates that were not shown join the new ones; with
   `--recover-avoid L` a candidate's score loses L x its largest occupancy IoU with the 8 the
   annotator rejected.
4. **Active selection** (`--budget` judgements, a share of the objects): the objects where the
   ranker is least sure (smallest gap between its top two scores) against objects in order;
   the figure is the acceptance among the judged objects, and the score gap as a key.
5. **The next checkpoint** (`--gain-gold` scenes; 0 skips it): the checkpoint trained by DPO from
   each arm's pairs (the winner against every candidate it beat, as the round's snapshot holds
   them): plain best-of-N, pre-ranked, and pre-ranked with the recovered hard cases' pairs added;
   each scored on the domain's gold set (seed 0, 4 steps), paired against the checkpoint and
   pre-ranked against plain. Each one's implicit reward against the checkpoint it started from
   (`modelzoo.ranker.implicit`, the second ranker) is scored on step 1's held-out pairs.

`--draws K` repeats steps 1-4 with K draws of the simulated annotators (seeds `--seed`, `--seed` + 100,
...: each annotates its own first round, trains its own ranker and judges both arms): one draw's
acceptance over 600 objects moves by a point or two with the draw, so the figures are the means
over the draws, with their standard errors (`<figure>_se`), each draw's own under `draws`; the
hard cases recovered are one share of all draws' hard cases. Step 5 uses the first draw's pairs.

Prints a table, then one JSON line: `ranker_agreement`, `annotator_agreement`,
`acceptance_plain`, `acceptance_assisted`, `acceptance_gain_points`, `hard_cases`,
`hard_cases_recovered`, `hard_cases_recovered_share`, `next_checkpoint_gain`,
`implicit_reward_agreement` (the plain arm's checkpoint's), and the setting.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time

import numpy as np

import harness  # noqa: F401  (puts the repository on sys.path)
from modelzoo.metrics import camera_occupancy  # the annotators' voxels

SIM_OFFSET = 6_000_000  # within the simulation's seed range, away from `simulate` and bench/loop_recipes
LIBRARY_SEED_BASE = 9_000_000  # the retrieval library's shapes: scene seeds none of the measured objects uses
# engine.rounds.simulation's scene seeds and rating scale (that module needs Django; a test checks these match)
SIM_SEED_BASE = 700_000_000
RATING_EDGES = (0.3, 0.45, 0.6, 0.75)


def rating_for(iou: float) -> int:
    return 1 + sum(iou >= e for e in RATING_EDGES)


class Annotator:
    """The simulation's annotator (engine.rounds.simulation.SimulatedAnnotator) without HTTP."""

    def __init__(self, noise: float, equal_margin: float, seed: int):
        self.noise, self.equal_margin, self.rng = noise, equal_margin, random.Random(seed)

    def prefer(self, a: float, b: float) -> str:
        if abs(a - b) < self.equal_margin:
            return "equal"
        better = "a" if a > b else "b"
        if self.rng.random() < self.noise:
            better = "b" if better == "a" else "a"
        return better

    def king_of_the_hill(self, ious: dict[int, float]) -> tuple[int, list[tuple[int, int]]]:
        """(winner, winner_beat pairs) over the candidates in a random order."""
        order = list(ious)
        self.rng.shuffle(order)
        king, beat = order[0], []
        for challenger in order[1:]:
            verdict = self.prefer(ious[king], ious[challenger])
            if verdict == "b":
                beat.append((challenger, king))
                king = challenger
            elif verdict == "a":
                beat.append((king, challenger))
        return king, [(w, lo) for w, lo in beat if w == king]

    def rating(self, iou: float) -> int:
        r = rating_for(iou)
        if self.rng.random() < self.noise:
            r = min(5, max(1, r + self.rng.choice((-1, 1))))
        return r


class World:
    """Objects of the target domain, candidates of the checkpoint by seed, their IoU and ranker inputs.
    Kept per object under `cache` (a folder; None: in memory only), so that runs with other ranker
    settings do not generate and score again."""

    def __init__(self, checkpoint: str, domain: str, steps: int, cache: str | None, library: int = 0):
        from modelzoo.builtin import BuiltinGenerator
        from modelzoo.builtin.model import BuiltinModel
        from modelzoo.files import sha256_file

        self.gen = BuiltinGenerator(BuiltinModel.load(checkpoint))
        self.retrieval = None
        if library:  # a team's own shape library of the domain: shapes of other scene seeds than the measured ones
            from modelzoo.generators.retrieval import RetrievalGenerator, build_library, synthetic_meshes

            self.retrieval = RetrievalGenerator(build_library(synthetic_meshes(domain, library, LIBRARY_SEED_BASE),
                                                              log=lambda *_: None))
        self.domain, self.steps = domain, steps
        self.folder = None
        if cache:
            self.folder = os.path.join(cache, f"{sha256_file(checkpoint)[:12]}-{domain}-{steps}")
            os.makedirs(self.folder, exist_ok=True)
        self.cache: dict[int, dict] = {}

    def _path(self, index: int) -> str | None:
        return os.path.join(self.folder, f"{index}.pt") if self.folder else None

    def object(self, index: int) -> dict:
        import torch

        from modelzoo.ranker.features import object_input

        if index not in self.cache:
            path = self._path(index)
            if path and os.path.exists(path):
                self.cache[index] = {**torch.load(path, weights_only=False), "scene": None, "gt": None}
            else:
                s = self.scene(index)
                self.cache[index] = {"cands": {}, "input": object_input(s.image, s.mask, s.intrinsics),
                                     "scene": None, "gt": None}
        return self.cache[index]

    def scene(self, index: int):
        from modelzoo.synth import sample_scene

        return sample_scene(SIM_SEED_BASE + SIM_OFFSET + index, domain=self.domain)

    def candidates(self, index: int, seeds: list[int]) -> dict[int, dict]:
        """seed -> {iou, input} for the seeds asked for (generated once). A negative seed -1-k is the
        retrieval backend's k-th nearest shape of the library."""
        import torch

        from modelzoo.generators.base import Layout
        from modelzoo.mesh.meshing import occupancy_to_mesh
        from modelzoo.metrics import voxel_iou
        from modelzoo.ranker.features import candidate_input
        from modelzoo.synth.rotations import matrix_to_quat

        o = self.object(index)
        todo = [sd for sd in seeds if "x1" not in o["cands"].get(sd, {})]  # x1: caches of earlier versions lack it
        if todo:
            if o["scene"] is None:
                o["scene"] = s = self.scene(index)
                gv, gf = s.gt_mesh(64)
                o["gt"] = camera_occupancy(gv, gf, s.rotation_matrix)
            s = o["scene"]
            retrieved = sorted(sd for sd in todo if sd < 0)
            todo = [sd for sd in todo if sd >= 0]
            if retrieved:
                self._retrieve(o, retrieved)
            pred = self.gen.predict(s.image, s.mask, todo, self.steps, s.intrinsics) if todo else None
            for i, sd in enumerate(todo):
                v, f = occupancy_to_mesh(pred["logits"][i], logits=True)
                R = pred["R"][i]
                layout = {"rotation": [float(x) for x in matrix_to_quat(R)],
                          "translation": [float(x) for x in pred["t"][i]], "scale": [float(pred["s"][i])] * 3}
                iou = voxel_iou(camera_occupancy(v, f, R), o["gt"])
                o["cands"][sd] = {"iou": iou, "input": candidate_input(o["input"], v, f, layout),
                                  "x1": self._flow_target(s, v, f, Layout(**layout))}
            if self._path(index):
                model_only = {sd: c for sd, c in o["cands"].items() if sd >= 0}  # retrieved ones depend on --library
                # Written aside, then renamed: another run sharing the cache never reads half a file.
                part = f"{self._path(index)}.{os.getpid()}.part"
                torch.save({"cands": model_only, "input": o["input"]}, part)
                os.replace(part, self._path(index))
        return {sd: o["cands"][sd] for sd in seeds}

    def _retrieve(self, o: dict, seeds: list[int]) -> None:
        from modelzoo.generators.base import GenerationRequest
        from modelzoo.metrics import voxel_iou
        from modelzoo.ranker.features import candidate_input
        from modelzoo.synth.rotations import quat_to_matrix

        if self.retrieval is None:
            raise SystemExit("negative seeds are the retrieval backend's: give --library")
        s, ks = o["scene"], [-1 - sd for sd in seeds]
        outs = self.retrieval.generate(GenerationRequest(image=s.image, mask=s.mask, seeds=list(range(max(ks) + 1)),
                                                         steps=self.steps, intrinsics=s.intrinsics))
        for k in ks:
            out = outs[k]
            layout = {"rotation": [float(x) for x in out.layout.rotation],
                      "translation": [float(x) for x in out.layout.translation],
                      "scale": [float(x) for x in out.layout.scale]}
            R = quat_to_matrix(np.array(out.layout.rotation))
            o["cands"][-1 - k] = {"iou": voxel_iou(camera_occupancy(out.vertices, out.faces, R), o["gt"]),
                                  "input": candidate_input(o["input"], out.vertices, out.faces, layout),
                                  "x1": self._flow_target(s, out.vertices, out.faces, out.layout)}

    def _flow_target(self, scene, vertices, faces, layout):
        """The candidate as a training target: its mesh re-encoded, as the engine's trainer reads a snapshot."""
        import torch

        with torch.no_grad():
            return self.gen.model.encode_candidate(vertices, faces, layout, scene.mask, np.asarray(scene.intrinsics))[0]

    def condition(self, index: int):
        """(crop, box features) of an object: the image side of a training example."""
        import torch

        from modelzoo.builtin.data import crop_single, mask_box
        from modelzoo.builtin.layout import box_features

        o = self.object(index)
        if "crop" not in o:
            s = o["scene"] or self.scene(index)
            box, K = mask_box(s.mask), np.asarray(s.intrinsics)
            o["crop"] = crop_single(s.image, s.mask.astype(bool), box)[0]
            o["feat"] = torch.from_numpy(box_features(box[None], K))[0].float()
        return o["crop"], o["feat"]


def ranker_scores(net, world: World, index: int, seeds: list[int]) -> dict[int, float]:
    import torch

    from modelzoo.ranker.features import stack

    c = world.candidates(index, seeds)
    o = world.object(index)["input"]
    with torch.no_grad():
        s = net(stack([o] * len(seeds), [c[sd]["input"] for sd in seeds])).numpy()
    return dict(zip(seeds, s.tolist()))


def closest_shape_iou(world: World, index: int, seed: int, others: list[int]) -> float:
    """The largest occupancy IoU (the ranker's 16^3 grid, in the camera's orientation) of candidate
    `seed` with the candidates `others` of the same object."""
    c = world.candidates(index, [seed, *others])
    a = c[seed]["input"].occ > 0.5
    return max(float((a & b).sum()) / max(float((a | b).sum()), 1.0)
               for b in (c[sd]["input"].occ > 0.5 for sd in others))


def pre_rank(scores: dict[int, float], shown: int, extra: int, rng: random.Random) -> list[int]:
    """The ranker's top `shown` plus `extra` drawn at random from the rest."""
    order = sorted(scores, key=lambda sd: -scores[sd])
    rest = order[shown:]
    return order[:shown] + rng.sample(rest, min(extra, len(rest)))


def _paired(iou, chamfer, base_iou, base_chamfer) -> tuple[float, float, float, float]:
    """(mean vIoU difference, its standard error, mean Chamfer difference, its standard error), rounded."""
    d_iou, d_ch = iou - base_iou, chamfer - base_chamfer
    return (round(float(d_iou.mean()), 4), round(harness.standard_error(d_iou), 4),
            round(float(d_ch.mean()), 4), round(harness.standard_error(d_ch), 4))


def implicit_reward_agreement(policy, parent, world: World, held: list[tuple[int, int, int]]) -> float | None:
    """The second ranker: `policy`'s implicit reward against `parent` (`ImplicitReward`, the
    candidates' cached flow vectors) on the held-out (object, winner seed, loser seed) pairs."""
    import torch

    from modelzoo.ranker.implicit import ImplicitReward
    from modelzoo.ranker.train import agreement

    reward = ImplicitReward(policy, parent)
    seeds_of: dict[int, dict[int, None]] = {}  # object -> its held-out candidates' seeds, in order
    for i, w, lo in held:
        seeds_of.setdefault(i, {}).update(dict.fromkeys((w, lo)))
    score = {}
    for i, seeds in seeds_of.items():
        seeds = list(seeds)
        crop, feat = world.condition(i)
        cands = world.candidates(i, seeds)
        x1 = torch.stack([cands[sd]["x1"] for sd in seeds])
        score.update(zip(((i, sd) for sd in seeds), reward.score_encoded(crop[None], feat[None], x1)))
    keys = list(score)
    index = {k: n for n, k in enumerate(keys)}
    return agreement(np.array([score[k] for k in keys]), [(index[(i, w)], index[(i, lo)]) for i, w, lo in held])


def next_checkpoint_gain(world: World, arms: dict[str, list], gold: int, domain: str, hp,
                         held: list[tuple[int, int, int]] = ()) -> dict:
    """Trains the world's checkpoint by DPO (the engine's default stage; `hp`: the trainer's defaults
    but for --dpo-steps) on each arm's (object, winner, loser) pairs, the candidates re-encoded as the
    engine's trainer reads them, and scores each model's seed-0 candidate on the first `gold` scenes of
    the domain's gold set, paired against the parent and assisted against plain (mean difference and
    its standard error)."""
    import copy

    import torch

    from modelzoo.builtin import BuiltinGenerator
    from modelzoo.training.trainer import train_dpo

    parent = world.gen.model
    parent_iou, parent_ch = harness.gold_scores(BuiltinGenerator(parent), gold, domain)
    out = {"parent_viou": round(float(parent_iou.mean()), 4), "parent_chamfer": round(float(parent_ch.mean()), 4),
           "gold": gold, "arms": {}}
    scores = {}
    for arm, pairs in arms.items():
        t = time.time()
        crops, feats = zip(*(world.condition(i) for i, _, _ in pairs))
        data = {"crops": torch.stack(crops), "feats": torch.stack(feats),
                "x1_w": torch.stack([world.candidates(i, [w])[w]["x1"] for i, w, _ in pairs]),
                "x1_l": torch.stack([world.candidates(i, [lo])[lo]["x1"] for i, _, lo in pairs])}
        model = copy.deepcopy(parent)
        hist = train_dpo(model, copy.deepcopy(parent), data, hp, log=lambda *_: None)
        iou, ch = harness.gold_scores(BuiltinGenerator(model), gold, domain)
        scores[arm] = (iou, ch)
        d_iou, se_iou, d_ch, se_ch = _paired(iou, ch, parent_iou, parent_ch)
        implicit = implicit_reward_agreement(model, parent, world, held) if held else None
        out["arms"][arm] = {"pairs": len(pairs), "reward_accuracy": hist[-1]["reward_accuracy"],
                            "implicit_reward_agreement": None if implicit is None else round(implicit, 4),
                            "viou": round(float(iou.mean()), 4), "chamfer": round(float(ch.mean()), 4),
                            "viou_gain": d_iou, "viou_se": se_iou, "chamfer_gain": d_ch, "chamfer_se": se_ch,
                            "seconds": round(time.time() - t, 1)}
        print(f"next checkpoint from the {arm} arm: {out['arms'][arm]}", flush=True)
    d_iou, se_iou, d_ch, se_ch = _paired(*scores["assisted"], *scores["plain"])
    out["assisted_minus_plain"] = {"viou": d_iou, "viou_se": se_iou, "chamfer": d_ch, "chamfer_se": se_ch}
    return out


def run_draw(world: World, a, seed: int) -> dict:
    """Steps 1-4 with one draw of the simulated annotators (`seed`): the first round's annotations,
    the ranker trained on them, both arms of the measured round, recovery and active selection.
    Returns the draw's figures, and under "_step5" what the next checkpoint's step needs."""
    from modelzoo.ranker.train import PairData, RankerHyperParameters, agreement, fit, held_out_object

    t0 = time.time()
    ann = Annotator(a.noise, a.equal_margin, seed)
    second = Annotator(a.noise, a.equal_margin, seed + 1)

    # 1. the first round: best-of-N, its winner_beat pairs train the ranker
    data, index_of = PairData(), {}
    plain_seeds = list(range(a.plain))
    retrieved_won = 0
    first_round_seeds = list(range(a.plain - a.train_retrieval)) + [-1 - k for k in range(a.train_retrieval)]
    for i in range(a.train_objects):
        cands = world.candidates(i, first_round_seeds)
        winner, pairs = ann.king_of_the_hill({sd: c["iou"] for sd, c in cands.items()})
        retrieved_won += winner < 0
        o = data.add_object(f"object-{i}", world.object(i)["input"])
        for sd in first_round_seeds:
            index_of[(i, sd)] = data.add_candidate(o, cands[sd]["input"])
        data.pairs.extend((index_of[(i, w)], index_of[(i, lo)]) for w, lo in pairs)
    t_round1 = time.time() - t0
    hp = RankerHyperParameters(epochs=a.epochs, seed=seed, members=a.members, mirror=not a.no_mirror)
    net, stats = fit(data, hp, log=lambda m: print(m, flush=True))
    held = [pr for pr in data.pairs if held_out_object(data.object_keys[data.candidate_object[pr[0]]], hp.held_out)]
    key_of = {v: k for k, v in index_of.items()}
    votes = []
    for w, lo in held:  # a second annotator judges the held-out pairs
        (i, sw), (_, sl) = key_of[w], key_of[lo]
        c = world.candidates(i, [sw, sl])
        verdict = second.prefer(c[sw]["iou"], c[sl]["iou"])
        votes.append(1.0 if verdict == "a" else 0.5 if verdict == "equal" else 0.0)
    annotator_agreement = float(np.mean(votes)) if votes else None
    # the oracle's agreement: how often the noiseless IoU orders the held-out pairs as the annotator did
    iou = {idx: world.candidates(i, [sd])[sd]["iou"] for (i, sd), idx in index_of.items()}
    truth_agreement = agreement(np.array([iou[k] for k in range(len(data.candidates))]), held)

    # 2. pre-ranking against plain best-of-N, same annotators, one judgement per object each
    rng = random.Random(seed)
    base = a.train_objects
    rows, hard, first_shown = [], [], {}
    assisted_seeds = list(range(a.m)) + [-1 - k for k in range(a.assist_retrieval)]
    # The same annotators, each arm with its own draws, so that an arm's figure does not move with another's setting.
    ann_plain = Annotator(a.noise, a.equal_margin, seed + 10)
    ann_mix = Annotator(a.noise, a.equal_margin, seed + 11)
    # With retrieval in the pool, a second control: the same 8 from the same two sources, no ranker
    # (the first seeds and the library's `--random` nearest shapes).
    mix_seeds = list(range(a.plain - a.random)) + [-1 - k for k in range(a.random)] if a.assist_retrieval else []
    pairs_by_arm = {"plain": [], "assisted": []}  # (object, winner seed, loser seed): the DPO snapshot's pairs
    for j in range(a.objects):
        i = base + j
        cands = world.candidates(i, assisted_seeds + [sd for sd in mix_seeds if sd not in assisted_seeds])
        w_plain, beat = ann_plain.king_of_the_hill({sd: cands[sd]["iou"] for sd in plain_seeds})
        pairs_by_arm["plain"] += [(i, w, lo) for w, lo in beat]
        r_plain = ann_plain.rating(cands[w_plain]["iou"])
        r_mix = None
        if mix_seeds:
            w_mix, _ = ann_mix.king_of_the_hill({sd: cands[sd]["iou"] for sd in mix_seeds})
            r_mix = ann_mix.rating(cands[w_mix]["iou"])
        scores = ranker_scores(net, world, i, assisted_seeds)
        shown = pre_rank(scores, a.shown, a.random, rng)
        w_ass, beat = ann.king_of_the_hill({sd: cands[sd]["iou"] for sd in shown})
        pairs_by_arm["assisted"] += [(i, w, lo) for w, lo in beat]
        r_ass = ann.rating(cands[w_ass]["iou"])
        top = sorted(scores.values(), reverse=True)
        rows.append({"object": i, "plain": r_plain >= a.alpha, "assisted": r_ass >= a.alpha,
                     "plain_mix": None if r_mix is None else r_mix >= a.alpha,
                     "gap": top[0] - top[1], "best_iou_m": max(c["iou"] for c in cands.values()),
                     "best_iou_plain": max(cands[sd]["iou"] for sd in plain_seeds),
                     "winner_iou_plain": cands[w_plain]["iou"], "winner_iou_assisted": cands[w_ass]["iou"],
                     "random_won": w_ass in shown[a.shown:],
                     "oracle_plain": rating_for(max(cands[sd]["iou"] for sd in plain_seeds)) >= a.alpha,
                     "oracle_m": rating_for(max(c["iou"] for c in cands.values())) >= a.alpha})
        if r_ass < a.alpha:
            hard.append(i)
            first_shown[i] = shown

    # 3. hard-case recovery: more seeds, ranked, judged again
    recovered, recoverable, recovery_pairs = 0, 0, []
    # As the engine's recovery (engine.rounds.generate): the library's shapes after those the pool had.
    more = list(range(a.m, a.m + a.recover_m)) + [-1 - k for k in range(a.assist_retrieval,
                                                                        a.assist_retrieval + a.recover_retrieval)]
    for i in hard:
        # With --recover-first-pool the first pass's candidates that were not shown join the new ones.
        pool_seeds = more + ([sd for sd in assisted_seeds if sd not in first_shown[i]] if a.recover_first_pool else [])
        pool = world.candidates(i, pool_seeds)
        recoverable += rating_for(max(c["iou"] for c in pool.values())) >= a.alpha
        scores = ranker_scores(net, world, i, pool_seeds)
        if a.recover_avoid:  # away from what the annotator rejected: minus lambda x the closest shown shape's IoU
            scores = {sd: x - a.recover_avoid * closest_shape_iou(world, i, sd, first_shown[i])
                      for sd, x in scores.items()}
        shown = pre_rank(scores, a.shown, a.random, rng)
        cands = world.candidates(i, shown)
        w, beat = ann.king_of_the_hill({sd: cands[sd]["iou"] for sd in shown})
        recovered += ann.rating(cands[w]["iou"]) >= a.alpha
        recovery_pairs += [(i, w, lo) for w, lo in beat]

    # 4. active selection under a budget: least sure first, against the order of arrival
    n_budget = max(1, int(round(a.budget * len(rows))))
    by_gap = sorted(rows, key=lambda r: r["gap"])[:n_budget]

    def mean(key):
        return float(np.mean([r[key] for r in rows]))

    print(f"draw {seed}: ranker agreement {stats['held_out_agreement']}, acceptance plain {mean('plain'):.3f} "
          f"pre-ranked {mean('assisted'):.3f}, recovered {recovered} of {len(hard)} ({time.time() - t0:.0f}s)",
          flush=True)
    return {"seed": seed, "ranker_agreement": stats["held_out_agreement"], "annotator_agreement": annotator_agreement,
            "truth_agreement": truth_agreement, "ranker_train_agreement": stats["train_agreement"],
            "ranker_epoch": stats["epoch"],
            "first_round_retrieved_won": retrieved_won / a.train_objects if a.train_retrieval else None,
            "acceptance_plain": mean("plain"), "acceptance_assisted": mean("assisted"),
            "acceptance_gain_points": 100 * (mean("assisted") - mean("plain")),
            "acceptance_plain_mix": mean("plain_mix") if mix_seeds else None,
            "acceptance_ceiling_plain": mean("oracle_plain"), "acceptance_ceiling_m": mean("oracle_m"),
            "winner_iou_plain": mean("winner_iou_plain"), "winner_iou_assisted": mean("winner_iou_assisted"),
            "best_iou_plain": mean("best_iou_plain"), "best_iou_m": mean("best_iou_m"),
            "random_won": mean("random_won"),
            "hard_cases": len(hard), "hard_cases_recovered": recovered, "hard_cases_recoverable": recoverable,
            "active_budget": n_budget,
            "hard_share_in_order": float(np.mean([not r["assisted"] for r in rows[:n_budget]])),
            "hard_share_least_sure": float(np.mean([not r["assisted"] for r in by_gap])),
            "stats": stats, "round1_seconds": t_round1,
            "_step5": {"pairs": pairs_by_arm, "recovery_pairs": recovery_pairs,
                       "held": [(key_of[w][0], key_of[w][1], key_of[lo][1]) for w, lo in held]}}


def summarise(draws: list[dict]) -> dict:
    """Each figure's mean over the draws (None where a draw has none), its standard error (with two
    or more draws) as `<figure>_se`, and the hard cases recovered as one share of all draws' hard cases."""
    out = {}
    not_figures = ("seed", "stats", "round1_seconds")
    for key, value in draws[0].items():
        if key.startswith("_") or key in not_figures or not isinstance(value, (int, float)):
            continue  # None in the first draw: a figure this setting does not have
        xs = np.array([d[key] for d in draws if d[key] is not None], float)
        out[key] = float(xs.mean())
        if len(xs) > 1:
            out[f"{key}_se"] = harness.standard_error(xs)
    hard = sum(d["hard_cases"] for d in draws)
    out["hard_cases_recovered_share"] = sum(d["hard_cases_recovered"] for d in draws) / hard if hard else None
    for key in ("annotator_agreement", "first_round_retrieved_won", "acceptance_plain_mix"):
        out.setdefault(key, None)
    # The machines and the draws are noisy: the headline figures' medians over the draws too.
    shares = [d["hard_cases_recovered"] / d["hard_cases"] for d in draws if d["hard_cases"]]
    out["medians"] = {"ranker_agreement": float(np.median([d["ranker_agreement"] for d in draws])),
                      "acceptance_gain_points": float(np.median([d["acceptance_gain_points"] for d in draws])),
                      "hard_cases_recovered_share": float(np.median(shares)) if shares else None}
    return out


def main(argv=None) -> dict:
    from modelzoo.ranker.train import RankerHyperParameters
    from modelzoo.training import HyperParameters

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(harness.ROOT / "modelzoo/checkpoints/bootstrap.pt"))
    p.add_argument("--domain", default="household")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--train-objects", type=int, default=400, help="the first round's objects (ranker training)")
    p.add_argument("--objects", type=int, default=200, help="objects of the measured round")
    p.add_argument("--plain", type=int, default=8, help="best-of-N of the plain round")
    p.add_argument("--m", type=int, default=32, help="candidates generated per object with pre-ranking")
    p.add_argument("--shown", type=int, default=6)
    p.add_argument("--random", type=int, default=2)
    p.add_argument("--recover-m", type=int, default=64)
    p.add_argument("--recover-first-pool", action="store_true",
                   help="recovery: the first pass's candidates that were not shown join the new ones")
    p.add_argument("--recover-avoid", type=float, default=0.0,
                   help="recovery: each candidate's score minus this x its largest occupancy IoU with the shapes the "
                        "annotator rejected (the first pass's shown ones); in the ranker's units, where the silhouette "
                        "prior scores 10 x the silhouette's IoU")
    p.add_argument("--library", type=int, default=0,
                   help="a retrieval backend over a library of this many shapes of the domain (0: none)")
    p.add_argument("--assist-retrieval", type=int, default=0,
                   help="pre-ranking: this many of the library's nearest shapes join the M seeds (needs --library)")
    p.add_argument("--recover-retrieval", type=int, default=0,
                   help="recovery: this many of the library's nearest shapes join the new seeds (needs --library)")
    p.add_argument("--train-retrieval", type=int, default=0,
                   help="the first round: this many of the library's nearest shapes among its --plain candidates, "
                        "as a round whose mix has the retrieval backend (needs --library)")
    p.add_argument("--budget", type=float, default=0.5, help="active selection: share of objects judged")
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--equal-margin", type=float, default=0.02)
    p.add_argument("--alpha", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--members", type=int, default=RankerHyperParameters.members,
                   help="networks in the ranker's ensemble (1: one network)")
    p.add_argument("--no-mirror", action="store_true", help="train the ranker without mirrored pairs")
    p.add_argument("--gain-gold", type=int, default=100,
                   help="gold scenes for the next checkpoint's gain (DPO on each arm's pairs); 0 skips it")
    p.add_argument("--dpo-steps", type=int, default=600, help="DPO steps of the next checkpoint (the trainer's default)")
    p.add_argument("--seed", type=int, default=0, help="the (first) draw of the simulated annotators")
    p.add_argument("--draws", type=int, default=1,
                   help="draws of the simulated annotators (seeds --seed, --seed + 100, ...): each annotates the first "
                        "round, trains its ranker and judges both arms; the figures are the means over the draws")
    p.add_argument("--cache", default=os.path.join(os.environ.get("VAR_DIR", "/tmp"), "assisted-cache"),
                   help="folder of generated and scored candidates ('' keeps them in memory only)")
    a = p.parse_args(argv)
    if a.shown + a.random != a.plain:
        p.error(f"--shown + --random ({a.shown + a.random}) must equal --plain ({a.plain}): the same annotation cost")
    if a.draws < 1:
        p.error("--draws must be at least 1")
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    if (a.recover_retrieval or a.assist_retrieval or a.train_retrieval) and not a.library:
        p.error("--recover-retrieval, --assist-retrieval and --train-retrieval need --library")
    if not 0 <= a.train_retrieval < a.plain:
        p.error(f"--train-retrieval must be from 0 to --plain - 1 ({a.plain - 1})")
    world = World(a.checkpoint, a.domain, a.steps, a.cache or None, library=a.library)
    # Draws 100 apart: a draw's annotators use its seed + 0, 1, 10 and 11, so no two draws share one.
    draws = [run_draw(world, a, a.seed + 100 * k) for k in range(a.draws)]
    fig = summarise(draws)

    # 5. the next checkpoint (the first draw's pairs): the parent trained by DPO on each arm's pairs, on the gold set
    gain = None
    if a.gain_gold:
        step5 = draws[0]["_step5"]
        arms = {"plain": step5["pairs"]["plain"], "assisted": step5["pairs"]["assisted"],
                "assisted_recovery": step5["pairs"]["assisted"] + step5["recovery_pairs"]}
        gain = next_checkpoint_gain(world, arms, a.gain_gold, a.domain,
                                    HyperParameters(dpo_steps=a.dpo_steps, seed=a.seed), held=step5["held"])

    seconds = time.time() - t0
    stats, many = draws[0]["stats"], len(draws) > 1

    def fmt(key, width=8):
        x = fig.get(key)
        if x is None:
            return f"{'-':>{width}}"
        se = fig.get(f"{key}_se")
        return f"{x:>{width}.3f}" + (f" +- {se:.3f}" if se is not None else "")

    print()
    print(f"ranker ({stats['members']} member(s), mirrored pairs: {not a.no_mirror}): {stats['train_pairs']} training "
          f"pairs, {stats['validation_pairs']} for early stopping (epoch {stats['epoch']}), {stats['held_out_pairs']} "
          f"held out ({stats['objects']} objects; round 1 generated and annotated in {draws[0]['round1_seconds']:.0f}s, "
          f"trained in {stats['seconds']:.0f}s){' - the first draw' if many else ''}")
    if many:
        print(f"{len(draws)} draws of the annotators (seeds {', '.join(str(d['seed']) for d in draws)}), each with its "
              f"own first round and ranker: means +- their standard errors")
    if a.train_retrieval:
        print(f"first round: {a.plain - a.train_retrieval} seeds + {a.train_retrieval} retrieved shapes per object; "
              f"a retrieved shape won {fig['first_round_retrieved_won']:.3f} of the time")
    print(f"{'agreement with held-out annotator picks':<48}")
    print(f"  {'ranker':<46} {fmt('ranker_agreement')}")
    implicit = gain["arms"]["plain"]["implicit_reward_agreement"] if gain else None
    if implicit is not None:
        print(f"  {'implicit reward of the next checkpoint (plain)':<46} {implicit:>8.3f}")
    print(f"  {'a second annotator':<46} {fmt('annotator_agreement')}")
    print(f"  {'the ground truth (noiseless IoU)':<46} {fmt('truth_agreement')}")
    print(f"{'measured round':<48} {'plain':>8} {'assisted':>8}")
    print(f"  {'acceptance (winner rated >= alpha)':<46} {fmt('acceptance_plain')} {fmt('acceptance_assisted')}")
    print(f"  {'acceptance gain, points':<46} {'':>8} {fmt('acceptance_gain_points')}")
    print(f"  {'mean winner IoU':<46} {fmt('winner_iou_plain')} {fmt('winner_iou_assisted')}")
    print(f"  {'best IoU among the candidates (8 / M)':<46} {fmt('best_iou_plain')} {fmt('best_iou_m')}")
    print(f"  {'acceptance of the best candidate (no noise)':<46} {fmt('acceptance_ceiling_plain')} "
          f"{fmt('acceptance_ceiling_m')}")
    print(f"  {'winner among the random extras':<46} {'':>8} {fmt('random_won')}")
    if a.assist_retrieval:
        print(f"  {f'acceptance of {a.plain - a.random} seeds + {a.random} retrieved, no ranker':<46} "
              f"{fmt('acceptance_plain_mix')}")
    share = fig["hard_cases_recovered_share"]
    print(f"hard cases of the assisted arm {fig['hard_cases']:.1f} a draw, recovered {fig['hard_cases_recovered']:.1f} "
          f"({'-' if share is None else f'{share:.3f}'}) with {a.recover_m} more seeds"
          f"{f' and {a.recover_retrieval} retrieved shapes' if a.recover_retrieval else ''}"
          f"{' and the first pass not shown' if a.recover_first_pool else ''}"
          f"{f' (scores minus {a.recover_avoid} x the IoU with the rejected shapes)' if a.recover_avoid else ''}, as many more "
          f"judgements; {fig['hard_cases_recoverable']:.1f} had an acceptable candidate among them (no noise)")
    if many:
        m = fig["medians"]
        recovered = "-" if m["hard_cases_recovered_share"] is None else f"{m['hard_cases_recovered_share']:.3f}"
        print(f"medians over the draws: ranker agreement {m['ranker_agreement']:.3f}, acceptance gain "
              f"{m['acceptance_gain_points']:.1f} points, hard cases recovered {recovered}")
    print(f"active selection, {draws[0]['active_budget']} of {a.objects} judged: hard-case share in order "
          f"{fmt('hard_share_in_order', 0)}, least sure first {fmt('hard_share_least_sure', 0)}")
    if gain:
        print(f"next checkpoint (DPO from the parent on each arm's pairs{', the first draw' if many else ''}), "
              f"{a.gain_gold} gold scenes, paired against the parent ({gain['parent_viou']:.4f} vIoU, "
              f"{gain['parent_chamfer']:.4f} Chamfer):")
        for arm, g in gain["arms"].items():
            print(f"  {arm:<20} {g['pairs']:>6} pairs  vIoU {g['viou_gain']:+.4f} +- {g['viou_se']:.4f}  "
                  f"Chamfer {g['chamfer_gain']:+.4f} +- {g['chamfer_se']:.4f}")
        d = gain["assisted_minus_plain"]
        print(f"  {'assisted - plain':<20} {'':>6}        vIoU {d['viou']:+.4f} +- {d['viou_se']:.4f}  "
              f"Chamfer {d['chamfer']:+.4f} +- {d['chamfer_se']:.4f}")
    print(f"{seconds:.0f}s in all")

    def rounded(x, digits=4):
        return None if x is None else round(x, digits)

    out = {key: rounded(value, 2 if key.startswith("acceptance_gain_points") else 4) for key, value in fig.items()
           if not key.startswith(("hard_cases", "active_", "hard_share", "ranker_epoch", "medians"))}
    out["medians"] = {k: rounded(v) for k, v in fig["medians"].items()}
    out.update({
        # the second ranker: the implicit reward of the DPO checkpoint of the plain arm's pairs (the first draw)
        "implicit_reward_agreement": implicit, "ranker_epoch": draws[0]["ranker_epoch"],
        "hard_cases": rounded(fig["hard_cases"], 2), "hard_cases_recovered": rounded(fig["hard_cases_recovered"], 2),
        "hard_cases_recovered_share": rounded(share), "hard_cases_recoverable": rounded(fig["hard_cases_recoverable"], 2),
        "next_checkpoint_gain": gain,
        "active": {"budget": draws[0]["active_budget"], "hard_share_in_order": rounded(fig["hard_share_in_order"]),
                   "hard_share_least_sure": rounded(fig["hard_share_least_sure"])},
        "ranker_pairs": stats["pairs"], "seconds": round(seconds, 1),
        "draws": [{k: rounded(v) if isinstance(v, float) else v for k, v in d.items()
                   if k in ("seed", "ranker_agreement", "annotator_agreement", "acceptance_plain",
                            "acceptance_assisted", "acceptance_gain_points", "hard_cases", "hard_cases_recovered")}
                  for d in draws],
        "setting": {k: v for k, v in vars(a).items() if k != "checkpoint"},
        "checkpoint": os.path.basename(a.checkpoint)})
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
