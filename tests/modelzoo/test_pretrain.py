"""Pretraining until the validation loss flattens, and resuming from the saved state."""
import json

import pytest
import torch

from modelzoo import pretrain
from modelzoo.builtin.model import BuiltinModel

pytestmark = pytest.mark.slow


def _args(tmp_path, *extra):
    return ["--train-size", "48", "--val-size", "16", "--ae-steps", "4", "--flow-steps", "400",
            "--batch", "8", "--eval-every", "2", "--threads", "1", "--no-eval", "--cache-dir", str(tmp_path),
            "--state-dir", str(tmp_path / "state"), "--out", str(tmp_path / "out.pt"), *extra]


def test_plateau_drops_the_rate_then_stops():
    p = pretrain.Plateau(patience=2, min_delta=0.01, drop=0.5, max_drops=1)
    for step, value in enumerate([1.0, 0.9, 0.899, 0.898]):  # two evaluations under 1% better
        p.update(step, value)
    assert p.scale == 0.5 and not p.stopped and p.best == 0.898  # the best is still kept
    p.update(4, 0.95)
    p.update(5, 0.95)
    assert p.stopped


def test_stops_when_flat_records_the_curve_and_resumes(tmp_path):
    # A deadline already past: the flow stage stops at once, leaving a resumable state.
    assert pretrain.main(_args(tmp_path, "--deadline", "2000-01-01T00:00")) == 0
    state = torch.load(tmp_path / "state" / "state.pt", weights_only=False)
    assert state["stage"] == "flow" and state["step"] == 0
    rec = json.loads((tmp_path / "out.json").read_text())
    assert rec["converged"] is False and rec["flow"]["stopped_by"] == "wall clock"
    assert rec["resume_command"].endswith("--resume")

    # Resumed: the flow goes on from the saved state until its validation loss is flat.
    assert pretrain.main(_args(tmp_path, "--resume", "--patience", "1", "--max-drops", "0",
                               "--min-delta", "0.5")) == 0
    rec = json.loads((tmp_path / "out.json").read_text())
    flow = rec["flow"]
    assert flow["stopped_by"] == "validation loss flat"
    assert 2 <= flow["steps_done"] < 400
    assert [c["step"] for c in flow["curve"]] == list(range(2, flow["steps_done"] + 1, 2))
    assert all(c["val_flow"] > 0 for c in flow["curve"])
    assert torch.load(tmp_path / "state" / "state.pt", weights_only=False)["stage"] == "done"
    BuiltinModel.load(str(tmp_path / "out.pt"))  # a checkpoint the generator can load


def test_a_signal_saves_the_state_and_stops(tmp_path, monkeypatch):
    monkeypatch.setitem(pretrain.STOP, "requested", True)  # as SIGTERM's handler does
    assert pretrain.main(_args(tmp_path, "--deadline", "23:59")) == 0
    assert not (tmp_path / "out.pt").exists()  # nothing half-made
    state = torch.load(tmp_path / "state" / "state.pt", weights_only=False)
    assert state["stage"] == "ae" and state["step"] == 0
    cmd = pretrain._resume_command(_args(tmp_path, "--deadline", "23:59"))
    assert cmd.endswith("--resume") and "--deadline" not in cmd


def test_training_on_another_device_keeps_every_tensor_there(tmp_path, monkeypatch):
    """`--device cuda` (the converged bootstrap was trained so) cannot run on this CPU machine; the
    meta device stands in: a tensor left on the CPU beside the model's raises, as it would on a GPU.
    Meta tensors hold no values, so the losses read as 0.5 and the run stops before the checkpoint."""
    real_float, real_item = torch.Tensor.__float__, torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "__float__", lambda t: 0.5 if t.is_meta else real_float(t))
    monkeypatch.setattr(torch.Tensor, "item", lambda t: 0.5 if t.is_meta else real_item(t))
    args = ["--train-size", "48", "--val-size", "16", "--ae-steps", "3", "--flow-steps", "3", "--batch", "8",
            "--eval-every", "2", "--patience", "2", "--threads", "1", "--no-eval", "--cache-dir", str(tmp_path),
            "--device", "meta", "--out", str(tmp_path / "out.pt")]
    with pytest.raises(NotImplementedError, match="meta tensor"):  # the trained weights' copy back to the CPU
        pretrain.main(args)
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("device, message", [("cuda", "sees no CUDA device"), ("gpu0", "--device 'gpu0'")])
def test_a_device_this_machine_lacks_is_refused_before_anything_is_rendered(tmp_path, capsys, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(SystemExit) as exit_:
        pretrain.main(["--device", device, "--cache-dir", str(tmp_path), "--out", str(tmp_path / "out.pt")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no scene rendered, no checkpoint
