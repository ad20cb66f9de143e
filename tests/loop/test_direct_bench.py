"""bench/direct.py small: checkpoints compared on the gold set as the simulated annotators compare
candidates (docs/loop.md quotes its full run)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modelzoo.builtin.model import BuiltinModel

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "modelzoo" / "checkpoints" / "bootstrap.pt"


@pytest.mark.slow
def test_a_checkpoint_ties_with_itself_and_a_damaged_one_loses(tmp_path):
    damaged = BuiltinModel.load(str(BOOTSTRAP))
    with torch.no_grad():  # the velocity network's weights scrambled: its candidates are noise
        generator = torch.Generator().manual_seed(0)
        for name, p in damaged.named_parameters():
            if name.startswith("velocity_net") and p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=generator) * p.std())
    damaged.save(str(tmp_path / "damaged.pt"))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "direct.py"), "--base", str(BOOTSTRAP),
                          str(BOOTSTRAP), str(tmp_path / "damaged.pt"), "--n", "3", "--seeds", "2", "--by-category"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    same = figures["checkpoints"][str(BOOTSTRAP)]
    assert same["win_rate"] == 0.5 and same["d_viou32"] == 0 and same["scenes_worse"] == same["scenes_better"] == 0
    worse = figures["checkpoints"][str(tmp_path / "damaged.pt")]
    assert worse["d_viou32"] < 0 and worse["win_rate"] < 0.5 and worse["scenes_worse"] > 0
    assert worse["viou32"] == pytest.approx(figures["base"]["viou32"] + worse["d_viou32"], abs=2e-4)
    assert "win rate" in out.stdout
    # By category: the first three household gold scenes are a carton, a ball and a mug.
    parts = worse["by_category"]
    assert sorted(parts) == ["ball", "carton", "mug"] and all(p["scenes"] == 1 for p in parts.values())
    assert sum(p["d_viou32"] for p in parts.values()) / 3 == pytest.approx(worse["d_viou32"], abs=2e-4)
    assert all(p["d_viou32"] == 0 for p in same["by_category"].values())


def test_by_category_refuses_a_domain_without_categories():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "direct.py"), "--base", str(BOOTSTRAP),
                          str(BOOTSTRAP), "--n", "2", "--domain", "primitives", "--by-category"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and "have no category" in out.stderr


def test_refuses_a_single_scene():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "direct.py"), "--base", str(BOOTSTRAP),
                          str(BOOTSTRAP), "--n", "1"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and "--n must be at least 2" in out.stderr
