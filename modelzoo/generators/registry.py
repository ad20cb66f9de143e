"""Backend name -> Generator, and the per-process cache of loaded generators.

Plain Python, no Django, so `modelzoo.serve` can use it on a GPU machine. A checkpoint
record names its backend; `load_generator` builds the generator once per process and keeps
it in an LRU, so a Celery worker loads a checkpoint once, not per task (the Django side,
from a Checkpoint record to its generator, is `modelzoo.weights`).

A backend is a *loader*: ``loader(path, config) -> Generator`` where ``path`` is a local
file with the weights (or None) and ``config`` the checkpoint record's options, and may have a
*weights check*: ``check(data)`` raises GeneratorError when uploaded bytes are not weights it can
load, so the registry refuses them at registration instead of a worker failing on them later.
"""
from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable

from modelzoo.generators.base import Generator, GeneratorError
from modelzoo.generators.http import HttpGenerator

Loader = Callable[[str | None, dict], Generator]


def _builtin(path: str | None, config: dict) -> Generator:
    if not path:
        raise GeneratorError("The builtin backend needs a checkpoint file.")
    # Here, not at the top: torch is heavy, and a web process reads this registry without it.
    from modelzoo.builtin import BuiltinGenerator

    return BuiltinGenerator.from_checkpoint(path)


def _http(path: str | None, config: dict) -> Generator:
    if not config.get("url"):
        raise GeneratorError("The http backend needs config['url'], the inference server's address.")
    return HttpGenerator(url=config["url"], timeout_s=float(config.get("timeout_s", 120.0)),
                         connect_timeout_s=float(config.get("connect_timeout_s", 5.0)))


def _builtin_check(data: bytes) -> None:
    # Here, not at the top: torch is heavy, and web processes import this registry at start-up;
    # only a registration with weights pays for it. BuiltinModel.load is torch.load(weights_only=True):
    # a pickle naming any callable outside tensors and plain containers is refused, never run.
    from modelzoo.builtin.model import BuiltinModel

    if not data.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, or its legacy pickle
        raise GeneratorError("not a built-in model checkpoint: not a file torch.save writes")
    try:
        BuiltinModel.check(io.BytesIO(data))  # shapes against the config, on the meta device: nothing allocated
        BuiltinModel.load(io.BytesIO(data))  # then loaded for real, once
    except pickle.UnpicklingError as exc:  # weights_only's refusal; torch's text goes on about weights_only=False
        detail = " ".join(str(exc).partition("WeightsUnpickler error:")[2].split())
        detail = detail.split(" Check the doc")[0].split(". ")[0][:300]
        raise GeneratorError("not a built-in model checkpoint: torch.load(weights_only=True), which builds only "
                             "tensors and plain containers and runs nothing else, refused its pickle "
                             f"({detail or 'unreadable'})") from None
    except Exception as exc:  # torch.load and load_state_dict raise many kinds of errors on foreign bytes
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise GeneratorError(f"not a built-in model checkpoint: {reason}") from None


def _retrieval(path: str | None, config: dict) -> Generator:
    from modelzoo.generators.retrieval import load

    return load(path, config)


def _retrieval_check(data: bytes) -> None:
    from modelzoo.generators.retrieval import check_library

    check_library(data)


def _adapter(module: str) -> Loader:
    """The loader of an adapter module (modelzoo/generators/<module>.py), imported when first used:
    the real models' packages (torch, trellis2, hy3dshape...) are only on GPU workers."""
    def load(path: str | None, config: dict) -> Generator:
        return importlib.import_module(f"modelzoo.generators.{module}").load(path, config)

    return load


_BACKENDS: dict[str, Loader] = {
    "builtin": _builtin, "http": _http, "retrieval": _retrieval,
    "sam3d_objects": _adapter("sam3d_objects"), "trellis2": _adapter("trellis2"), "hunyuan3d": _adapter("hunyuan3d"),
}
_CHECKS: dict[str, Callable[[bytes], None]] = {"builtin": _builtin_check, "retrieval": _retrieval_check}
# Backends whose seed k is their k-th best answer (a retrieval's k-th nearest shape), not a random
# draw: the engine asks them for ranks 0, 1, 2... instead of hashed seeds.
_RANKED_SEEDS: set[str] = {"retrieval"}


def register_backend(name: str, loader: Loader, check: Callable[[bytes], None] | None = None,
                     ranked_seeds: bool = False) -> None:
    """Make a backend available under `name` (e.g. from a GPU worker's plugin module), with the
    check its uploaded weights must pass, if it has one; `ranked_seeds`: its seed k is its k-th
    best answer (as retrieval's), so the engine asks it for 0, 1, 2..."""
    _BACKENDS[name] = loader
    if check is not None:
        _CHECKS[name] = check
    if ranked_seeds:
        _RANKED_SEEDS.add(name)


def seeds_are_ranks(backend: str) -> bool:
    """True when `backend`'s seed k means its k-th best answer rather than a random draw."""
    return backend in _RANKED_SEEDS


def weights_check(backend: str, data: bytes) -> None:
    """GeneratorError saying why, when `data` are not weights `backend` can load (loaded once,
    in this process). Backends without a check (http, plugins registered without one) accept any bytes."""
    check = _CHECKS.get(backend)
    if check is not None:
        check(data)


def _load_plugins() -> None:
    """MODELZOO_BACKENDS="sam3d=mypkg.sam3d:load,trellis=..." registers operator-chosen loaders.

    Only the operator's environment can name import paths; checkpoint records only name backends.
    """
    for entry in filter(None, (e.strip() for e in os.environ.get("MODELZOO_BACKENDS", "").split(","))):
        name, _, target = entry.partition("=")
        if name.strip() not in _BACKENDS:
            _BACKENDS[name.strip()] = import_target(target.strip())


def import_target(target: str):
    """'package.module:attribute' -> the attribute."""
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise GeneratorError(f"'{target}' is not of the form package.module:attribute.")
    return getattr(importlib.import_module(module), attr)


def backend_names() -> list[str]:
    _load_plugins()
    return sorted(_BACKENDS)


def backend_loader(name: str) -> Loader:
    _load_plugins()
    try:
        return _BACKENDS[name]
    except KeyError:
        raise GeneratorError(f"Unknown generator backend '{name}'; known: {', '.join(sorted(_BACKENDS))}.") from None


class _LRU:
    """A small thread-safe LRU of loaded generators, keyed by (backend, weights, config)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple, Generator] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times a generator was built (tests and the bench read it)

    def get(self, key: tuple, build: Callable[[], Generator]) -> Generator:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            generator = build()
            self.loads += 1
            self._items[key] = generator
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return generator

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.loads = 0


loaded = _LRU(int(os.environ.get("MODELZOO_MAX_LOADED", "4")))


def _cache_key(backend: str, weights: str, config: dict) -> tuple:
    return (backend, weights, json.dumps(config, sort_keys=True))


def cached_generator(*, backend: str, weights_id: str, config: dict,
                     locate: Callable[[], str | None]) -> Generator:
    """The generator for the weights named `weights_id` (a path, a sha256), built once per
    process (LRU); `locate()` gives the local weights file and is called only on a miss."""
    loader = backend_loader(backend)
    return loaded.get(_cache_key(backend, weights_id, config), lambda: loader(locate(), config))


def load_generator(*, backend: str, path: str | None = None, config: dict | None = None) -> Generator:
    """The generator for these weights, built once per process (LRU)."""
    return cached_generator(backend=backend, weights_id=path or "", config=config or {}, locate=lambda: path)
