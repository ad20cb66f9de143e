"""From a Checkpoint record to its weights and its generator: the Django side of
`modelzoo.generators.registry`, which stays plain Python for `modelzoo.serve`.
"""
from __future__ import annotations

import os

from django.conf import settings
from django.core.files.storage import default_storage

from modelzoo.generators.base import Generator
from modelzoo.generators.registry import cached_generator
from modelzoo.models import Checkpoint


def checkpoint_local_path(checkpoint: Checkpoint) -> str | None:
    """A local file with the checkpoint's weights: the stored file itself on local storage,
    else a copy cached once under VAR_DIR/checkpoint-cache/<sha256> (S3)."""
    if not checkpoint.file:
        return None
    try:
        return default_storage.path(checkpoint.file.name)
    except NotImplementedError:  # remote storage
        pass
    cache = os.path.join(str(settings.VAR_DIR), "checkpoint-cache")
    os.makedirs(cache, exist_ok=True)
    target = os.path.join(cache, checkpoint.sha256 or os.path.basename(checkpoint.file.name))
    if not os.path.exists(target):
        tmp = f"{target}.{os.getpid()}.part"
        with default_storage.open(checkpoint.file.name, "rb") as src, open(tmp, "wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                dst.write(chunk)
        os.replace(tmp, target)
    return target


def generator_for_checkpoint(checkpoint: Checkpoint) -> Generator:
    """The loaded generator for a Checkpoint record (cached per process, keyed by the
    weights' sha256: the file is only located and read on a miss)."""
    return cached_generator(backend=checkpoint.backend,
                            weights_id=checkpoint.sha256 or f"checkpoint-{checkpoint.pk}",
                            config=checkpoint.config or {},
                            locate=lambda: checkpoint_local_path(checkpoint))


_RANKERS: dict[str, object] = {}  # sha256 -> loaded modelzoo.ranker.Ranker, per worker process


def ranker_for_checkpoint(checkpoint: Checkpoint):
    """The loaded ranker of a checkpoint of role "ranker" (`modelzoo.ranker.Ranker`), once per process."""
    from modelzoo.ranker import Ranker  # torch: only in processes that rank

    if checkpoint.sha256 not in _RANKERS:
        _RANKERS[checkpoint.sha256] = Ranker.from_file(checkpoint_local_path(checkpoint))
    return _RANKERS[checkpoint.sha256]
