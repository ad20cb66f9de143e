"""Backends by name, the per-process LRU of loaded generators, and the bootstrap registration."""
import pytest
from django.core.management import call_command

from modelzoo import services
from modelzoo.generators.base import GeneratorError
from modelzoo.generators.registry import _LRU, backend_names, load_generator
from modelzoo.models import Checkpoint, ProjectCheckpoint


def test_known_backends_and_unknown_refused(db):
    assert {"builtin", "http"} <= set(backend_names())
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
