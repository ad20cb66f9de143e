"""Backends by name, the per-process LRU of loaded generators, the bootstrap registration, and
weights checked when they are registered."""
import io
import pickle

import pytest
import torch
from django.core.management import call_command

from modelzoo import services
from engine.errors import ValidationFailed
from modelzoo.generators.base import GeneratorError
from modelzoo.generators.registry import _LRU, backend_names, load_generator
from modelzoo.models import Checkpoint, ProjectCheckpoint
from tests.modelzoo_engine.conftest import weights_variant


def test_known_backends_and_unknown_refused(db):
    assert {"builtin", "http", "retrieval"} <= set(backend_names())
    with pytest.raises(Exception, match="Unknown backend"):
        services.checkpoint_register(name="x", version="1", backend="nope")


def test_lru_evicts_the_least_recently_used():
    lru = _LRU(2)
    built = []
    for key in ["a", "b", "a", "c", "b"]:
        lru.get((key,), lambda k=key: built.append(k) or k)
    assert built == ["a", "b", "c", "b"]  # "b" was evicted by "c" ("a" had been used again)


def test_http_checkpoint_needs_a_url(db):
    with pytest.raises(Exception, match="url"):
        services.checkpoint_register(name="remote", version="1", backend="http")


def test_missing_weights_fail_with_a_clear_error(db, fresh_registry):
    with pytest.raises(GeneratorError, match="checkpoint file"):
        load_generator(backend="builtin", path=None)


@pytest.mark.skipif(not services.BOOTSTRAP_FILE.exists(), reason="bootstrap checkpoint not committed yet")
def test_register_bootstrap_is_idempotent_and_fills_projects_without_a_mix(project):
    call_command("register_bootstrap")
    call_command("register_bootstrap")
    boot = Checkpoint.objects.get()
    assert boot.backend == "builtin" and boot.file.name.endswith(f"{boot.sha256}.pt")
    assert list(ProjectCheckpoint.objects.filter(project=project).values_list("checkpoint", flat=True)) == [boot.pk]


class _WritesMarker:
    """Unpickled by a plain pickle.load, it calls open(path, "w"): it creates the marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _assert_refused(data: bytes, reason: str):
    with pytest.raises(ValidationFailed, match=reason) as refused:
        services.checkpoint_register(name="builtin", version="bad", backend="builtin", data=data)
    assert refused.value.code == "invalid_weights" and "Nothing was stored" in refused.value.message
    assert not Checkpoint.objects.filter(version="bad").exists()


def test_registration_refuses_bytes_the_backend_cannot_load(db, settings):
    _assert_refused(b"\x00not a checkpoint" * 100, "not a built-in model checkpoint")
    _assert_refused(pickle.dumps({"state_dict": {}}), "refused its pickle")  # protocol 5: torch.load reads 2
    buf = io.BytesIO()
    torch.save({"state_dict": {}}, buf)  # a torch file, not the built-in model's
    _assert_refused(buf.getvalue(), "modelzoo.builtin/1")
    assert not list(settings.MEDIA_ROOT.rglob("*.pt"))  # nothing stored


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_malicious_pickle_is_refused_without_running(db, tmp_path, writer):
    payload = {"format": "modelzoo.builtin/1", "config": {}, "state_dict": {}, "meta": _WritesMarker(tmp_path / "m")}
    if writer == "pickle":  # protocol 2, the one torch.load reads as a legacy pickle: it meets the call to open()
        data = pickle.dumps(payload, protocol=2)
        pickle.loads(pickle.dumps(_WritesMarker(tmp_path / "control")))  # the payload is live: plain pickle runs it
        assert (tmp_path / "control").exists()
    else:
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
    _assert_refused(data, r"weights_only=True.*refused its pickle \(Unsupported global: GLOBAL (io|builtins)\.open")
    assert not (tmp_path / "m").exists()  # weights_only refused the call to open() instead of making it


def test_valid_new_weights_are_registered(db):
    ckpt, created = services.checkpoint_register(name="builtin", version="v", backend="builtin",
                                                 data=weights_variant("v"))
    assert created and ckpt.file.name.endswith(f"{ckpt.sha256}.pt")


def test_a_config_naming_a_huge_network_is_refused_without_allocating_it(db):
    """1 TB of float32 were this network built for real: it is built on the meta device instead,
    and the file's tensors (the bootstrap's) do not fit it."""
    ckpt = torch.load(services.BOOTSTRAP_FILE, map_location="cpu", weights_only=True)
    for config, reason in [({**ckpt["config"], "hidden": 65536, "depth": 64}, "does not fit its config"),
                           ({**ckpt["config"], "hidden": 10**9}, "sizes from 0 to 65536")]:
        buf = io.BytesIO()
        torch.save({**ckpt, "config": config}, buf)
        _assert_refused(buf.getvalue(), reason)
