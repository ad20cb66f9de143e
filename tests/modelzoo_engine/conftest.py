"""Fixtures of the model-zoo engine tests: a real checkpoint, a project with photos and masks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.ingest.services import ingest_item
from engine.ingest.validation import ItemInput, MaskInput
from engine.rounds import generate
from modelzoo import services
from modelzoo.generators import registry
from tests.engine.builders import box_mask, photo_bytes

REAL_ENQUEUE = generate.job_items_enqueue
N = 4  # candidates per item in most tests: small keeps the module fast


@pytest.fixture(scope="session")
def checkpoint_file() -> Path:
    """The committed bootstrap checkpoint."""
    return services.BOOTSTRAP_FILE


@pytest.fixture
def checkpoint(db, checkpoint_file):
    ckpt, _ = services.checkpoint_register(name="builtin", version="test", backend="builtin",
                                           data=checkpoint_file.read_bytes())
    return ckpt


def weights_variant(tag: str) -> bytes:
    """Valid built-in weights that differ from the bootstrap's bytes (its meta says `tag`): a new
    version to register, since the registry loads every new file once and refuses what it cannot load."""
    import io

    import torch

    ckpt = torch.load(services.BOOTSTRAP_FILE, map_location="cpu", weights_only=True)
    ckpt["meta"] = {**ckpt.get("meta", {}), "variant": tag}
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


def photo_with_masks(project, *, seed: int, n_masks: int = 2):
    width, height = 96, 72
    boxes = [(8, 10, 44, 60), (50, 6, 90, 40), (52, 44, 88, 68)][:n_masks]
    return ingest_item(project=project, item=ItemInput(
        name=f"photo{seed}.png", image_bytes=photo_bytes(width, height, seed=seed),
        masks=[MaskInput(source_name=f"m{i}", label="thing", array=box_mask(width, height, box=b))
               for i, b in enumerate(boxes)],
    )).image


@pytest.fixture
def gen_project(project, checkpoint):
    """The shared `project` with 2 photos x 2 masks, N=4 and the test checkpoint current."""
    project.candidates_per_item = N
    project.save(update_fields=["candidates_per_item"])
    for seed in range(2):
        photo_with_masks(project, seed=seed)
    services.project_mix_set(project=project, mix=[(checkpoint, 1.0)])
    return project


@pytest.fixture
def fresh_registry():
    registry.loaded.clear()
    yield registry
    registry.loaded.clear()


class FailingGenerator:
    backend = "failing"

    def generate(self, request):
        from modelzoo.generators.base import GeneratorError

        raise GeneratorError("the test backend refuses every request")


@pytest.fixture
def failing_backend():
    registry.register_backend("failing", lambda path, config: FailingGenerator())
    yield
    registry._BACKENDS.pop("failing", None)


def rng_image(h=72, w=96, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Tasks are run as functions here; jobs started in tests send nothing to a broker
    (test_worker.py, which needs the broker, undoes this)."""
    sent = []
    monkeypatch.setattr(generate, "job_items_enqueue", lambda *, job_item_ids: sent.extend(job_item_ids))
    return sent
