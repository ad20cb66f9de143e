"""bench/assisted.py small (the figures of docs/assisted.md come from its full run): it runs end to
end and ends with the issue's figures; its simulated annotators are the simulation's."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_annotators_of_the_bench_are_the_simulations():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import assisted
    finally:
        sys.path.remove(str(ROOT / "bench"))
    from engine.rounds import simulation

    assert assisted.SIM_SEED_BASE == simulation.SIM_SEED_BASE and assisted.RATING_EDGES == simulation.RATING_EDGES
    assert [assisted.rating_for(x) for x in (0.1, 0.5, 0.7, 0.9)] == [simulation.rating_for(x) for x in
                                                                      (0.1, 0.5, 0.7, 0.9)]


@pytest.mark.parametrize("retrieval", [[], ["--library", "12", "--assist-retrieval", "2", "--recover-retrieval", "2",
                                       "--train-retrieval", "1"]],
                         ids=["model-only", "with-retrieval"])
def test_the_assisted_bench_small(tmp_path, retrieval):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "assisted.py"), "--train-objects", "12", "--objects", "6",
         "--plain", "4", "--m", "10", "--shown", "3", "--random", "1", "--recover-m", "8", "--epochs", "2",
         "--gain-gold", "3", "--dpo-steps", "10", "--cache", str(tmp_path), *retrieval], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    for key in ("ranker_agreement", "annotator_agreement", "acceptance_gain_points", "hard_cases_recovered_share"):
        assert key in figures, key
    assert 0 <= figures["acceptance_plain"] <= 1 and 0 <= figures["acceptance_assisted"] <= 1
    assert figures["acceptance_gain_points"] == pytest.approx(  # from the unrounded shares
        100 * (figures["acceptance_assisted"] - figures["acceptance_plain"]), abs=0.011)
    assert figures["hard_cases_recovered"] <= figures["hard_cases"]
    assert figures["hard_cases_recoverable"] <= figures["hard_cases"]
    assert (figures["acceptance_plain_mix"] is None) == (not retrieval)
    # with --train-retrieval the ranker's first round held retrieved shapes: how often one won is reported
    assert (figures["first_round_retrieved_won"] is None) == (not retrieval)
    if retrieval:
        assert 0 <= figures["first_round_retrieved_won"] <= 1 and "retrieved shapes per object" in out.stdout
    assert "agreement with held-out annotator picks" in out.stdout
    gain = figures["next_checkpoint_gain"]  # each arm's pairs trained a checkpoint, scored on 3 gold scenes
    assert set(gain["arms"]) == {"plain", "assisted", "assisted_recovery"}
    assert gain["arms"]["plain"]["pairs"] > 0 and gain["arms"]["assisted"]["pairs"] > 0
    # the recovered hard cases' judgements add their pairs to the pre-ranked arm's
    assert gain["arms"]["assisted_recovery"]["pairs"] >= gain["arms"]["assisted"]["pairs"]
    for arm in gain["arms"].values():
        assert arm["viou_gain"] == pytest.approx(arm["viou"] - gain["parent_viou"], abs=2e-4)
    assert gain["assisted_minus_plain"]["viou"] == pytest.approx(
        gain["arms"]["assisted"]["viou"] - gain["arms"]["plain"]["viou"], abs=2e-4)
    assert "paired against the parent" in out.stdout
    # the second ranker: the plain arm's DPO checkpoint's implicit reward on the held-out pairs
    assert 0 <= figures["implicit_reward_agreement"] <= 1
    assert figures["implicit_reward_agreement"] == gain["arms"]["plain"]["implicit_reward_agreement"]


def test_several_draws_of_the_annotators_are_averaged(tmp_path):
    """--draws K: K draws of the annotators, each with its own first round and ranker; the figures
    are their means, with standard errors, and each draw's own figures are listed."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "assisted.py"), "--train-objects", "12", "--objects", "6",
         "--plain", "4", "--m", "10", "--shown", "3", "--random", "1", "--recover-m", "8", "--epochs", "2",
         "--gain-gold", "0", "--draws", "2", "--seed", "3", "--recover-first-pool", "--recover-avoid", "0.2",
         "--cache", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    draws = figures["draws"]
    assert [d["seed"] for d in draws] == [3, 103]
    for key in ("ranker_agreement", "acceptance_plain", "acceptance_assisted"):
        assert figures[key] == pytest.approx(sum(d[key] for d in draws) / 2, abs=1e-4), key
        assert f"{key}_se" in figures
    assert figures["acceptance_gain_points"] == pytest.approx(
        100 * (figures["acceptance_assisted"] - figures["acceptance_plain"]), abs=0.011)
    hard = sum(d["hard_cases"] for d in draws)  # the share recovered is of all draws' hard cases together
    assert figures["hard_cases_recovered_share"] == (
        None if not hard else pytest.approx(sum(d["hard_cases_recovered"] for d in draws) / hard, abs=1e-4))
    assert "2 draws of the annotators (seeds 3, 103)" in out.stdout
    assert figures["medians"]["acceptance_gain_points"] == pytest.approx(
        sum(d["acceptance_gain_points"] for d in draws) / 2, abs=0.011)  # the median of two is their mean
    assert figures["next_checkpoint_gain"] is None
    # recovery ranked the first pass's unshown candidates with the new ones, away from the rejected shapes
    assert "and the first pass not shown (scores minus 0.2 x the IoU with the rejected shapes)" in out.stdout
