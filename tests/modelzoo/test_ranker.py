"""The ranker (modelzoo.ranker): what it sees of a candidate, Bradley-Terry training with a split by
object, its file format, and the implicit reward of a DPO checkpoint."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from modelzoo.generators.base import Layout
from modelzoo.ranker import Ranker, RankerHyperParameters, RankerNet, agreement, fit
from modelzoo.ranker.features import candidate_input, object_input
from modelzoo.ranker.implicit import ImplicitReward
from modelzoo.ranker.features import stack
from modelzoo.ranker.model import PRIOR_SCALE
from modelzoo.ranker.train import PairData, held_out_object, mirrored, validation_fold
from modelzoo.synth import sample_scene
from modelzoo.synth.rotations import matrix_to_quat


def _turned(layout: Layout, axis: int, degrees: float) -> Layout:
    R = layout_matrix(layout)
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    i, j = [k for k in range(3) if k != axis]
    T = np.eye(3)
    T[i, i], T[i, j], T[j, i], T[j, j] = c, -s, s, c
    return Layout(rotation=tuple(matrix_to_quat(R @ T)), translation=layout.translation, scale=layout.scale)


def layout_matrix(layout: Layout) -> np.ndarray:
    from modelzoo.synth.rotations import quat_to_matrix

    return quat_to_matrix(np.asarray(layout.rotation))


@pytest.fixture(scope="module")
def objects():
    """Household scenes: the true mesh and pose, and three wrong ones (turned, squashed)."""
    out = []
    for seed in range(14):
        s = sample_scene(1000 + seed, domain="household")
        v, f = s.gt_mesh(32)
        obj = object_input(s.image, s.mask, s.intrinsics)
        right = candidate_input(obj, v, f, s.layout)
        wrong = [candidate_input(obj, v, f, _turned(s.layout, 0, 90)),
                 candidate_input(obj, v, f, _turned(s.layout, 2, 90)),
                 candidate_input(obj, v * np.array([1.0, 0.35, 1.0]), f, s.layout)]
        out.append((s, obj, right, wrong))
    return out


def test_the_true_shape_seen_from_the_camera_fills_the_mask(objects):
    ious = np.array([[right.scalars[0]] + [w.scalars[0] for w in wrong] for _, _, right, wrong in objects])
    assert ious[:, 0].mean() > 0.8  # the view lines up with the mask crop
    assert (ious[:, 0] > ious[:, 1:].max(axis=1)).mean() >= 0.8
    _, _, right, _ = objects[0]
    assert right.view.shape == (2, 32, 32) and right.occ.shape == (16, 16, 16) and right.occ.sum() > 0


def test_the_training_mirror_is_what_the_ranker_sees_of_the_mirrored_scene(objects):
    """`mirrored` (the augmentation of training) must show the ranker what it would compute from the
    photo flipped left-right and the candidate mirrored in the camera's x: else it teaches noise."""
    M = np.diag([-1.0, 1.0, 1.0])
    for s, obj, right, _ in objects[:4]:
        v, f = s.gt_mesh(32)
        R = layout_matrix(s.layout)
        mirror_layout = Layout(rotation=tuple(matrix_to_quat(M @ R @ M)),
                               translation=tuple(M @ np.asarray(s.layout.translation)), scale=s.layout.scale)
        mirror_obj = object_input(s.image[:, ::-1].copy(), s.mask[:, ::-1].copy(), s.intrinsics)
        seen = candidate_input(mirror_obj, v @ M, f[:, ::-1], mirror_layout)
        batch = mirrored(stack([obj], [right]), torch.tensor([True]))
        assert torch.allclose(batch["crop"][0], mirror_obj.crop, atol=0.05)  # the photo, up to one pixel's rounding
        for got, want in ((batch["view"][0, 0], seen.view[0]), (batch["occ"][0], seen.occ)):
            inter, union = float((got * want).sum()), float(((got + want) > 0).sum())
            assert inter / union > 0.85
        assert torch.allclose(right.scalars, seen.scalars, atol=0.05)  # a mirror keeps the silhouette's scores
        unflipped = mirrored(stack([obj], [right]), torch.tensor([False]))
        assert torch.equal(unflipped["view"], right.view[None]) and torch.equal(unflipped["occ"], right.occ[None])


def _data(objects) -> PairData:
    data = PairData()
    for k, (s, obj, right, wrong) in enumerate(objects):
        o = data.add_object(f"object-{k}", obj)
        r = data.add_candidate(o, right)
        for w in wrong:
            data.pairs.append((r, data.add_candidate(o, w)))
    return data


def test_bradley_terry_training_agrees_on_objects_it_never_saw(objects):
    data = _data(objects)
    # without the silhouette prior: what it agrees on, it learned from the pairs
    net, stats = fit(data, RankerHyperParameters(epochs=30, lr=2e-3, held_out=0.3, validation=0.0, prior=False),
                     log=lambda m: None)
    assert stats["held_out_pairs"] > 0 and stats["train_pairs"] + stats["held_out_pairs"] == len(data.pairs)
    assert stats["held_out_agreement"] >= 0.8
    # ... and more surely than the untrained network (whose order may already be right by chance):
    # the held-out pairs' Bradley-Terry probability rose
    torch.manual_seed(0)  # the seed `fit` starts its network from
    untrained = RankerNet()
    held = [p for p in data.pairs if held_out_object(data.object_keys[data.candidate_object[p[0]]], 0.3)]

    def held_out_probability(model):
        with torch.no_grad():
            s = model.eval()(data.batch(range(len(data.candidates))))
        return float(torch.sigmoid(torch.stack([s[a] - s[b] for a, b in held])).mean())

    assert held_out_probability(net) > held_out_probability(untrained) + 0.05
    # the split is by object: every pair of a held-out object is held out, and only those
    held = {k for k in data.object_keys if held_out_object(k, 0.3)}
    assert 0 < len(held) < len(data.object_keys)
    assert stats["held_out_pairs"] == sum(data.object_keys[data.candidate_object[a]] in held for a, _ in data.pairs)
    # a ranker that scores everything alike agrees half the time (ties count half)
    assert agreement(np.zeros(len(data.candidates)), data.pairs) == 0.5


def test_a_ranker_starts_from_the_silhouette_and_keeps_it_when_its_training_pairs_mislead(objects):
    """Training pairs that prefer the wrong candidates (the pairs of the held-out and validation
    objects are right): the prior beats every trained epoch on validation and is kept; without it
    the ranker learns the wrong order."""
    hp = dict(epochs=4, held_out=0.3, validation=0.3)
    data = PairData()
    for n, (_, obj, right, wrong) in enumerate(objects):
        key = f"object-{n}"
        misleading = not held_out_object(key, 0.3) and not held_out_object(key, 0.3, "validation")
        o = data.add_object(key, obj)
        r = data.add_candidate(o, right)
        for w in wrong:
            w = data.add_candidate(o, w)
            data.pairs.append((w, r) if misleading else (r, w))
    net, stats = fit(data, RankerHyperParameters(**hp), log=lambda m: None)
    assert stats["epoch"] == -1 and stats["held_out_agreement"] >= 0.8
    batch = data.batch(range(len(data.candidates)))
    with torch.no_grad():
        assert torch.allclose(net(batch), PRIOR_SCALE * batch["scalars"][:, 0])
    # without the prior (and without early stopping) it learns the order the pairs teach
    _, learned = fit(data, RankerHyperParameters(epochs=30, lr=5e-3, held_out=0.3, validation=0.0, prior=False),
                     log=lambda m: None)
    assert learned["held_out_agreement"] < 0.5


def test_an_ensemble_scores_the_mean_of_its_members_each_stopped_on_its_own_fold(objects, tmp_path):
    data = _data(objects)
    net, stats = fit(data, RankerHyperParameters(epochs=3, held_out=0.3, validation=0.5, members=3),
                     log=lambda m: None)
    assert stats["members"] == 3 and len(stats["epoch"]) == 3 and {h["member"] for h in stats["history"]} == {0, 1, 2}
    # every object not held out picks the epoch of exactly one member
    rest = {k for k in data.object_keys if not held_out_object(k, 0.3)}
    assert stats["validation_pairs"] == sum(data.object_keys[data.candidate_object[a]] in rest for a, _ in data.pairs)
    assert sorted({validation_fold(k, 3) for k in rest}) == [0, 1, 2]
    batch = data.batch(range(len(data.candidates)))
    with torch.no_grad():
        assert torch.allclose(net(batch), torch.stack([m(batch) for m in net.members]).mean(dim=0))
    path = tmp_path / "ensemble.pt"
    net.save(path)
    RankerNet.check(str(path))
    again = RankerNet.load(str(path))
    assert again.config == {"width": 16, "hidden": 64, "members": 3}
    with torch.no_grad():
        assert torch.allclose(again(batch), net(batch))
    # one object: each member's fold is everything or nothing, so each trains on it all (no crash)
    one = _data(objects[:1])
    _, few = fit(one, RankerHyperParameters(epochs=1, held_out=0.0, validation=0.5, members=3), log=lambda m: None)
    assert few["validation_pairs"] == 0 and few["train_agreement"] is not None
    with pytest.raises(ValueError, match="members must be 1 to 16"):
        fit(data, RankerHyperParameters(members=0), log=lambda m: None)
    with pytest.raises(ValueError, match="epochs must be at least 1, not 0"):  # was a TypeError from torch
        fit(data, RankerHyperParameters(epochs=0, validation=0.0), log=lambda m: None)


def test_a_ranker_file_loads_as_it_was_saved_and_other_files_are_refused(objects, tmp_path):
    from modelzoo.services import BOOTSTRAP_FILE

    s, obj, _, _ = objects[0]
    net = RankerNet(width=8, hidden=16)
    net.eval()
    path = tmp_path / "r.pt"
    net.save(path, meta={"held_out_agreement": 0.7})
    RankerNet.check(str(path))
    v, f = s.gt_mesh(32)
    cands = [(v, f, s.layout), (v, f, _turned(s.layout, 0, 90))]
    a = Ranker(net).score(s.image, s.mask, s.intrinsics, cands)
    b = Ranker.from_file(path.read_bytes()).score(s.image, s.mask, s.intrinsics, cands)
    assert np.allclose(a, b) and a.shape == (2,)
    assert RankerNet.load(str(path)).meta["held_out_agreement"] == 0.7
    with pytest.raises(ValueError, match="not a ranker"):
        RankerNet.check(str(BOOTSTRAP_FILE))
    state = torch.load(path, weights_only=True)
    state["config"]["width"] = 12
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    with pytest.raises(ValueError, match="does not fit"):
        RankerNet.check(buf)


def test_implicit_reward_is_zero_against_itself_and_follows_the_policy(objects):
    from modelzoo.builtin.model import BuiltinModel
    from modelzoo.services import BOOTSTRAP_FILE

    s, _, _, _ = objects[1]
    v, f = s.gt_mesh(32)
    cands = [(v, f, s.layout), (v, f, _turned(s.layout, 0, 90)), (v, f, s.layout.as_dict())]
    ref = BuiltinModel.load(str(BOOTSTRAP_FILE))
    same = ImplicitReward(ref, BuiltinModel.load(str(BOOTSTRAP_FILE)), draws=4).score(s.image, s.mask,
                                                                                      s.intrinsics, cands)
    assert np.allclose(same, 0.0)
    # a policy whose velocity is the reference's plus a push towards the first candidate's flow vector
    policy = BuiltinModel.load(str(BOOTSTRAP_FILE))
    with torch.no_grad():
        from modelzoo.builtin.data import mask_box

        target = policy.encode_candidate(v, f, s.layout, mask_box(s.mask), s.intrinsics)[0]
        velocity = policy.velocity

        def towards(x_t, t, cond):
            return velocity(x_t, t, cond) + 0.3 * (target - x_t)
        policy.velocity = towards
    r = ImplicitReward(policy, ref, beta=100.0, draws=8).score(s.image, s.mask, s.intrinsics, cands)
    assert r[0] > r[1] and r[0] == pytest.approx(r[2], abs=1e-4)
